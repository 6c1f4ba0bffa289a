//! Reference for `shaders/linear.wgsl`.

/// `x [m, k] · w [n, k]ᵀ + b [n]`, accumulated in f64.
pub fn linear(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = b.map_or(0.0, |b| b[j] as f64);
            for t in 0..k {
                s += x[i * k + t] as f64 * w[j * k + t] as f64;
            }
            out[i * n + j] = s as f32;
        }
    }
    out
}
