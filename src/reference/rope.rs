//! Reference for `shaders/rope.wgsl`.

use crate::kernels::rope::RopePairs;

/// Interleaved rotary embedding of `x [b, l, h, d]` with tables
/// `[table_rows, d/2]`: token row `b·l + t` uses table row
/// `(b·l + t) mod table_rows` (`table_rows = l`: shared by the batch;
/// `b·l`: one table per batch row).
pub fn rope(x: &[f32], cos: &[f32], sin: &[f32], table_rows: usize, h: usize, d: usize) -> Vec<f32> {
    rope_pairs(x, cos, sin, table_rows, h, d, RopePairs::Interleaved)
}

/// [`rope`] with the given pair layout.
pub fn rope_pairs(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    table_rows: usize,
    h: usize,
    d: usize,
    layout: RopePairs,
) -> Vec<f32> {
    let half = d / 2;
    let mut out = vec![0.0f32; x.len()];
    for (row, (xs, os)) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)).enumerate() {
        let t = (row / h) % table_rows;
        for j in 0..half {
            let (a, b) = match layout {
                RopePairs::Interleaved => (2 * j, 2 * j + 1),
                RopePairs::Halves => (j, j + half),
            };
            let (re, im) = (xs[a] as f64, xs[b] as f64);
            let (c, s) = (cos[t * half + j] as f64, sin[t * half + j] as f64);
            os[a] = (re * c - im * s) as f32;
            os[b] = (re * s + im * c) as f32;
        }
    }
    out
}
