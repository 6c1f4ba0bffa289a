//! Naive CPU versions of every kernel, accumulating in f64: the oracle the
//! GPU tests compare against. Clarity over speed; no wgpu here.

pub mod attention;
pub mod conv2d;
pub mod elementwise;
pub mod linear;
pub mod metric;
pub mod modulate;
pub mod norm;
pub mod patch;
pub mod rope;
pub mod rows;
pub mod sampler;
pub mod upsample;

/// Deterministic pseudo-random values in [-1, 1) (xorshift): inputs for
/// benchmarks and the kernels' start-up self-tests, which need no
/// statistics, only non-trivial data that is the same on every run.
pub fn filler(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// ‖out − ref‖ / ‖ref‖, with NaN or infinity anywhere in `out` giving
/// infinity so that it never passes a tolerance.
pub fn rel_err(out: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(out.len(), reference.len(), "rel_err: length mismatch");
    if out.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&o, &r) in out.iter().zip(reference) {
        num += (o as f64 - r as f64).powi(2);
        den += (r as f64).powi(2);
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}
