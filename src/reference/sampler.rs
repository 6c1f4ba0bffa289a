//! Reference for `shaders/sampler.wgsl`, in the order diffusers computes it.

/// Returns `(x_next, v_hat)` for `x [b, c, h, w]`; `dropped[b][token]`
/// selects `v_cache` (tokens are p×p patches, row-major).
#[allow(clippy::too_many_arguments)]
pub fn euler_step(
    x: &[f32],
    v: &[f32],
    guidance: Option<f32>,
    dsigma: f32,
    merge: Option<(&[f32], &[u32], usize)>,
    c: usize,
    h: usize,
    w: usize,
) -> (Vec<f32>, Vec<f32>) {
    let n = x.len();
    let mut v_hat: Vec<f32> = match guidance {
        Some(g) => (0..n).map(|i| v[i] + g * (v[n + i] - v[i])).collect(),
        None => v[..n].to_vec(),
    };
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
