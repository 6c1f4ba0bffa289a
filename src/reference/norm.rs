//! Reference for `shaders/norm.wgsl`.

/// Normalises each row of `n` elements; `affine(row, col)` gives the
/// (weight, bias) index. `rms` skips the mean; `silu` applies SiLU after.
#[allow(clippy::too_many_arguments)]
fn rows(
    x: &[f32],
    n: usize,
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
    affine: impl Fn(usize, usize) -> usize,
    eps: f64,
    rms: bool,
    silu: bool,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for (r, row) in x.chunks(n).enumerate() {
        let mean = if rms {
            0.0
        } else {
            row.iter().map(|&v| v as f64).sum::<f64>() / n as f64
        };
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for (c, &v) in row.iter().enumerate() {
            let a = affine(r, c);
            let mut y = (v as f64 - mean) * inv;
            y *= weight.map_or(1.0, |w| w[a] as f64);
            y += bias.map_or(0.0, |b| b[a] as f64);
            if silu {
                y /= 1.0 + (-y).exp();
            }
            out.push(y as f32);
        }
    }
    out
}

pub fn layer_norm(x: &[f32], d: usize, weight: Option<&[f32]>, bias: Option<&[f32]>, eps: f64) -> Vec<f32> {
    rows(x, d, weight, bias, |_, c| c, eps, false, false)
}

pub fn rms_norm(x: &[f32], d: usize, weight: Option<&[f32]>, eps: f64) -> Vec<f32> {
    rows(x, d, weight, None, |_, c| c, eps, true, false)
}

/// GroupNorm of `x [B, C, hw]`.
#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    x: &[f32],
    c: usize,
    hw: usize,
    groups: usize,
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
    eps: f64,
    silu: bool,
) -> Vec<f32> {
    let cpg = c / groups;
    rows(
        x,
        cpg * hw,
        weight,
        bias,
        |r, col| (r % groups) * cpg + col / hw,
        eps,
        false,
        silu,
    )
}
