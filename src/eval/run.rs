//! One prompt generated twice from the same seed and noise, dense and with
//! RAS, timed over the denoising loop only (loading, encoding and decoding
//! are the same work in both).

use std::ops::ControlFlow;
use std::time::Instant;

use crate::error::Result;
use crate::pipeline::{Event, GenerateRequest, Generation, Pipeline};
use crate::ras::RasConfig;

use super::compare::{psnr, ssim};

pub struct Timed {
    pub generation: Generation,
    /// Seconds from the first denoising step's start to the last one's end.
    pub denoise_s: f64,
}

pub struct PromptComparison {
    pub dense: Timed,
    pub ras: Timed,
    /// Of image 0.
    pub psnr: f64,
    pub ssim: f64,
}

impl PromptComparison {
    pub fn speedup(&self) -> f64 {
        self.dense.denoise_s / self.ras.denoise_s
    }
}

/// Generates with the request's settings, timing the denoising loop.
pub fn timed(pipeline: &mut Pipeline, req: &GenerateRequest) -> Result<Timed> {
    let mut start = None;
    let mut end = None;
    let generation = pipeline.generate(req, |e| {
        match e {
            Event::Denoising => start = Some(Instant::now()),
            Event::Decoding { .. } => end = Some(Instant::now()),
            _ => {}
        }
        ControlFlow::Continue(())
    })?;
    let denoise_s = match (start, end) {
        (Some(s), Some(e)) => (e - s).as_secs_f64(),
        _ => 0.0,
    };
    Ok(Timed {
        generation,
        denoise_s,
    })
}

/// Compiles every pipeline both loops use (two steps: one dense, one RAS),
/// so the first timed run does not pay for shader compilation.
pub fn warm_up(pipeline: &mut Pipeline, req: &GenerateRequest, ras: &RasConfig) -> Result<()> {
    let ras = RasConfig {
        scheduler_start_step: 1,
        scheduler_end_step: 2,
        error_reset_steps: Vec::new(),
        skip_num_step: 0,
        skip_num_step_length: 0,
        ..ras.clone()
    };
    let req = GenerateRequest {
        steps: 2,
        ras,
        latents_init: None,
        ..req.clone()
    };
    pipeline.generate(&req, |_| ControlFlow::Continue(()))?;
    Ok(())
}

/// `req` with `ras` against the same request dense.
pub fn compare(pipeline: &mut Pipeline, req: &GenerateRequest, ras: &RasConfig) -> Result<PromptComparison> {
    let dense = timed(
        pipeline,
        &GenerateRequest {
            ras: RasConfig::dense(req.steps),
            ..req.clone()
        },
    )?;
    let ras = timed(
        pipeline,
        &GenerateRequest {
            ras: ras.clone(),
            ..req.clone()
        },
    )?;
    let (a, b) = (&dense.generation.images[0], &ras.generation.images[0]);
    Ok(PromptComparison {
        psnr: psnr(a, b)?,
        ssim: ssim(a, b)?,
        dense,
        ras,
    })
}
