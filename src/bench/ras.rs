//! `ras bench ras`: the dense and the RAS sampling loop on the same
//! transformer, inputs and adapter in one run (SD3-medium widths, synthetic
//! weights). The speed-up is dense time / RAS time; the ideal is dense
//! image-token-steps / RAS image-token-steps.

use std::time::Instant;

use super::filler;
use super::sd3::TEXT_TOKENS;
use crate::error::Result;
use crate::gpu::{DType, Gpu, Tensor};
use crate::models::sd3::{Sd3Config, Sd3Transformer};
use crate::models::Conditioning;
use crate::pipeline::{sample, SampleRequest};
use crate::ras::RasConfig;
use crate::weights::Weights;

/// Shape of the benchmark run.
#[derive(Debug, Clone)]
pub struct RasBenchConfig {
    pub layers: usize,
    /// Image side in pixels (tokens = (size/16)²).
    pub size: usize,
    pub steps: usize,
    /// Classifier-free guidance (batch 2 through the transformer) or not.
    pub cfg: bool,
    pub ratios: Vec<f64>,
}

/// One sampling run's figures.
#[derive(Debug, Clone)]
pub struct RunFigure {
    pub ratio: f64,
    pub seconds: f64,
    /// Image tokens computed, summed over steps.
    pub token_steps: usize,
    pub kv_cache_bytes: u64,
}

/// Runs dense, then RAS at each ratio; the first entry is dense.
pub fn bench_ras(
    gpu: &Gpu,
    cfg: &RasBenchConfig,
    mut report: impl FnMut(&RunFigure),
) -> Result<Vec<RunFigure>> {
    let model = Sd3Transformer::load(
        gpu,
        &Weights::synthetic(DType::F16),
        Sd3Config::sd3_medium(cfg.layers),
    )?;
    let side = cfg.size / 8;
    let latents = gpu.upload_f32(&filler(16 * side * side, 11), &[1, 16, side, side])?;
    let ctx = gpu.upload_f32(&filler(TEXT_TOKENS * 4096, 12), &[1, TEXT_TOKENS, 4096])?;
    let pooled = gpu.upload_f32(&filler(2048, 13), &[1, 2048])?;
    let neg_ctx = gpu.upload_f32(&filler(TEXT_TOKENS * 4096, 14), &[1, TEXT_TOKENS, 4096])?;
    let neg_pooled = gpu.upload_f32(&filler(2048, 15), &[1, 2048])?;
    let text = |tokens: Tensor, pooled: Tensor| Conditioning {
        tokens,
        pooled: Some(pooled),
        mask: None,
        text_weights: None,
    };
    let (cond, uncond) = (text(ctx, pooled), text(neg_ctx, neg_pooled));
    let run = |ras: RasConfig, steps: usize| -> Result<RunFigure> {
        let request = SampleRequest {
            latents: &latents,
            cond: &cond,
            uncond: Some(&uncond),
            steps,
            guidance: if cfg.cfg { 7.0 } else { 1.0 },
            shift: 3.0,
            ras: ras.clone(),
        };
        let mut token_steps = 0;
        gpu.sync()?;
        let start = Instant::now();
        let out = sample(gpu, &model, &request, |s| {
            token_steps += s.active_tokens;
            std::ops::ControlFlow::Continue(())
        })?;
        gpu.read_f32(&out.latents)?;
        let seconds = start.elapsed().as_secs_f64();
        Ok(RunFigure {
            ratio: ras.sample_ratio,
            seconds,
            token_steps,
            kv_cache_bytes: out.kv_cache_bytes,
        })
    };
    // A three-step run with one dense and two RAS steps compiles every
    // pipeline first (seconds per kernel on software Vulkan).
    let warm_up = RasConfig {
        scheduler_start_step: 1,
        error_reset_steps: Vec::new(),
        ..RasConfig::sd3_example(3)
    };
    run(warm_up, 3)?;
    let mut figures = Vec::new();
    for ras in std::iter::once(RasConfig::dense(cfg.steps)).chain(cfg.ratios.iter().map(|&r| RasConfig {
        sample_ratio: r,
        ..RasConfig::sd3_example(cfg.steps)
    })) {
        let f = run(ras, cfg.steps)?;
        report(&f);
        figures.push(f);
    }
    Ok(figures)
}
