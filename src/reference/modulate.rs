//! Reference for `shaders/modulate.wgsl`. `emb` is `[B, count·d]`; chunk
//! `i` of batch `b` is `emb[b][i·d .. (i+1)·d]`.

fn vector(emb: &[f32], count: usize, d: usize, b: usize, i: usize) -> &[f32] {
    let start = b * count * d + i * d;
    &emb[start..start + d]
}

/// `x [B, n, d] · (1 + scale) + shift`.
pub fn modulate(
    x: &[f32],
    emb: &[f32],
    b: usize,
    d: usize,
    count: usize,
    shift: usize,
    scale: usize,
) -> Vec<f32> {
    let per_batch = x.len() / b;
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let (bi, c) = (i / per_batch, i % d);
            let sh = vector(emb, count, d, bi, shift)[c] as f64;
            let sc = vector(emb, count, d, bi, scale)[c] as f64;
            (v as f64 * (1.0 + sc) + sh) as f32
        })
        .collect()
}

/// `x [B, n, d] · (1 + scale)`.
pub fn scale_only(x: &[f32], emb: &[f32], b: usize, d: usize, count: usize, scale: usize) -> Vec<f32> {
    let per_batch = x.len() / b;
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let sc = vector(emb, count, d, i / per_batch, scale)[i % d] as f64;
            (v as f64 * (1.0 + sc)) as f32
        })
        .collect()
}

/// `x + f(gate) · y`, with `f = tanh` when `tanh` is set, else the identity.
#[allow(clippy::too_many_arguments)]
pub fn gated_residual(
    x: &[f32],
    y: &[f32],
    emb: &[f32],
    b: usize,
    d: usize,
    count: usize,
    gate: usize,
    tanh: bool,
) -> Vec<f32> {
    let per_batch = x.len() / b;
    x.iter()
        .zip(y)
        .enumerate()
        .map(|(i, (&v, &w))| {
            let g = vector(emb, count, d, i / per_batch, gate)[i % d] as f64;
            let g = if tanh { g.tanh() } else { g };
            (v as f64 + g * w as f64) as f32
        })
        .collect()
}
