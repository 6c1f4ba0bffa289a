//! Reference for `shaders/elementwise.wgsl`.

pub fn gelu_tanh(x: f32) -> f32 {
    let x = x as f64;
    let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
    (0.5 * x * (1.0 + u.tanh())) as f32
}

pub fn gelu_erf(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))) as f32
}

pub fn silu(x: f32) -> f32 {
    let x = x as f64;
    (x / (1.0 + (-x).exp())) as f32
}

pub fn quick_gelu(x: f32) -> f32 {
    let x = x as f64;
    (x / (1.0 + (-1.702 * x).exp())) as f32
}

/// `a op b` where `b` repeats every `b.len()` elements along the last
/// dimension, optionally advancing one row of `b` every `period` elements.
pub fn broadcast(
    a: &[f32],
    b: &[f32],
    inner: usize,
    period: usize,
    stride: usize,
    f: impl Fn(f64, f64) -> f64,
) -> Vec<f32> {
    a.iter()
        .enumerate()
        .map(|(i, &x)| f(x as f64, b[(i / period) * stride + i % inner] as f64) as f32)
        .collect()
}
