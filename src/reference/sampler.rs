//! Reference for `shaders/sampler.wgsl`, in the order diffusers computes it.

use crate::kernels::sampler::Combine;

/// Returns `(x_next, v_hat)` for `x [b, c, h, w]` and model output `v`
/// (`[b or 2b, vc, h, w]`); `dropped[b][token]` selects `v_cache` (tokens
/// are p×p patches, row-major).
#[allow(clippy::too_many_arguments)]
pub fn euler_step(
    x: &[f32],
    v: &[f32],
    vc: usize,
    combine: Combine,
    dsigma: f32,
    merge: Option<(&[f32], &[u32], usize)>,
    c: usize,
    h: usize,
    w: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (n, plane) = (x.len(), h * w);
    let batch = n / (c * plane);
    let at = |row: usize, ch: usize, yx: usize| v[(row * vc + ch) * plane + yx];
    let mut v_hat: Vec<f32> = (0..n)
        .map(|i| {
            let (b, ch, yx) = (i / (c * plane), (i / plane) % c, i % plane);
            let (cond, uncond) = match (combine.guidance, combine.cond_first) {
                (None, _) => (b, b),
                (Some(_), true) => (b, batch + b),
                (Some(_), false) => (batch + b, b),
            };
            let mut vh = at(cond, ch, yx);
            if let Some(g) = combine.guidance.filter(|_| ch < combine.guided_channels) {
                let u = at(uncond, ch, yx);
                vh = u + g * (vh - u);
            }
            if combine.negate {
                -vh
            } else {
                vh
            }
        })
        .collect();
    if let Some((cache, dropped, p)) = merge {
        let tokens = (h / p) * (w / p);
        for (i, vh) in v_hat.iter_mut().enumerate() {
            let (b, y, xx) = (i / (c * h * w), (i / w) % h, i % w);
            if dropped[b * tokens + (y / p) * (w / p) + xx / p] != 0 {
                *vh = cache[i];
            }
        }
    }
    let x_next = x.iter().zip(&v_hat).map(|(&xi, &vi)| xi + dsigma * vi).collect();
    (x_next, v_hat)
}
