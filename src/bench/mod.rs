//! Benchmarks behind `ras bench`. Figures are wall-clock times of whole
//! launches (submit to completion) on the chosen adapter; FLOP counts come
//! from the shapes.

pub mod profile;
pub mod ras;
pub mod sd3;
#[cfg(feature = "serve")]
pub mod serve;

use std::time::Instant;

use crate::error::Result;
use crate::gpu::{Gpu, Tensor};
use crate::kernels::attention::{attention, attention_flops};
use crate::kernels::linear::{linear, linear_flops};

/// One benchmark figure.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub seconds: f64,
    pub flops: f64,
}

impl Figure {
    pub fn gflops(&self) -> f64 {
        self.flops / self.seconds / 1e9
    }
}

/// Best of `reps` timed runs after one warm-up (which also compiles the
/// pipelines and fills the buffer pool).
pub fn time(gpu: &Gpu, reps: usize, mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    drop(f()?);
    gpu.sync()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        let out = f()?;
        gpu.sync()?;
        best = best.min(start.elapsed().as_secs_f64());
        drop(out);
    }
    Ok(best)
}

pub use crate::reference::filler;

/// Linear `[m, k] × [n, k]ᵀ` with f32 weights.
pub fn bench_linear(gpu: &Gpu, m: usize, n: usize, k: usize, reps: usize) -> Result<Figure> {
    let x = gpu.upload_f32(&filler(m * k, 1), &[m, k])?;
    let w = gpu.upload_weight_f32(&filler(n * k, 2), &[n, k])?;
    let seconds = time(gpu, reps, || linear(gpu, &x, &w, None))?;
    Ok(Figure {
        name: format!("linear {m}x{n}x{k} f32"),
        seconds,
        flops: linear_flops(m, n, k),
    })
}

/// Attention with `lq` queries, `lk` keys, `heads` × `head_dim`, batch 1.
pub fn bench_attention(
    gpu: &Gpu,
    lq: usize,
    lk: usize,
    heads: usize,
    head_dim: usize,
    reps: usize,
) -> Result<Figure> {
    let q = gpu.upload_f32(&filler(lq * heads * head_dim, 6), &[1, lq, heads, head_dim])?;
    let k = gpu.upload_f32(&filler(lk * heads * head_dim, 7), &[1, lk, heads, head_dim])?;
    let v = gpu.upload_f32(&filler(lk * heads * head_dim, 8), &[1, lk, heads, head_dim])?;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let seconds = time(gpu, reps, || attention(gpu, &q, &k, &v, None, scale))?;
    Ok(Figure {
        name: format!("attention {lq}x{lk} {heads}x{head_dim}"),
        seconds,
        flops: attention_flops(1, lq, lk, heads, head_dim),
    })
}
