//! `ras bench ras`: the dense and the RAS sampling loop on the same
//! transformer, inputs and adapter in one run (the real model's widths,
//! synthetic weights, fewer layers where needed). The speed-up is dense
//! time / RAS time; the ideal is dense image-token-steps / RAS
//! image-token-steps.

use std::time::Instant;

use super::filler;
use super::profile::summarize;
use super::sd3::TEXT_TOKENS;
use crate::error::Result;
use crate::gpu::{DType, Gpu, Profile};
use crate::models::lumina::{LuminaConfig, LuminaTransformer};
use crate::models::sd3::{Sd3Config, Sd3Transformer};
use crate::models::{Conditioning, Dit, Family, Precision};
use crate::pipeline::{defaults, ras_defaults, sample, SampleRequest};
use crate::ras::{RasConfig, StepKind};
use crate::weights::Weights;

/// Caption rows of the Lumina benchmark: a prompt of about 40 words (57
/// Gemma tokens + BOS) padded to a multiple of 8, as LuminaPipeline pads.
pub const LUMINA_CAPTION_TOKENS: usize = 64;
const LUMINA_REAL_TOKENS: usize = 58;

/// Shape of the benchmark run.
#[derive(Debug, Clone)]
pub struct RasBenchConfig {
    /// SD3-medium or Lumina-Next-SFT widths.
    pub family: Family,
    pub layers: usize,
    /// Image side in pixels (tokens = (size/16)²).
    pub size: usize,
    pub steps: usize,
    /// Classifier-free guidance (batch 2 through the transformer) or not.
    pub cfg: bool,
    pub ratios: Vec<f64>,
    /// Run each loop a second time under the kernel profiler.
    pub profile: bool,
    pub precision: Precision,
}

impl RasBenchConfig {
    /// Text rows the transformer sees per image.
    pub fn text_tokens(&self) -> usize {
        match self.family {
            Family::Sd3 => TEXT_TOKENS,
            Family::Lumina => LUMINA_CAPTION_TOKENS,
        }
    }
}

/// One sampling run's figures.
#[derive(Debug, Clone)]
pub struct RunFigure {
    pub ratio: f64,
    /// The dynamic schedule's ramp (tokens per step group; 0 = static).
    pub skip_num_step: i64,
    pub seconds: f64,
    /// Image tokens computed, summed over steps.
    pub token_steps: usize,
    /// Mean fraction of the image tokens computed at a RAS step (1 when
    /// there is none).
    pub ras_step_fraction: f64,
    pub kv_cache_bytes: u64,
    /// The profiled second run, when asked for.
    pub profile: Option<Profile>,
}

impl RunFigure {
    /// GPU time of a RAS step beyond its share of a dense step's (the
    /// fraction of image tokens it computes), from the profiles of this run
    /// and the dense run: `(overhead, RAS step, dense step)` seconds.
    pub fn ras_step_overhead(&self, dense: &RunFigure) -> Option<(f64, f64, f64)> {
        let step = |f: &RunFigure, kind: &str| {
            summarize(f.profile.as_ref()?)
                .into_iter()
                .find(|s| s.kind == kind)
                .map(|s| s.gpu_seconds)
        };
        let ras = step(self, "RAS step")?;
        let dense = step(dense, "dense step")?;
        Some((ras - dense * self.ras_step_fraction, ras, dense))
    }
}

/// A synthetic transformer at the family's widths and a prompt and a
/// negative prompt for it.
fn setup(gpu: &Gpu, cfg: &RasBenchConfig) -> Result<(Box<dyn Dit>, Conditioning, Conditioning)> {
    let weights = Weights::synthetic(DType::F16);
    let l = cfg.text_tokens();
    Ok(match cfg.family {
        Family::Sd3 => {
            let model = Sd3Transformer::load(gpu, &weights, Sd3Config::sd3_medium(cfg.layers))?;
            let text = |seed| -> Result<Conditioning> {
                Ok(Conditioning {
                    tokens: gpu.upload_f32(&filler(l * 4096, seed), &[1, l, 4096])?,
                    pooled: Some(gpu.upload_f32(&filler(2048, seed + 1), &[1, 2048])?),
                    mask: None,
                    text_weights: None,
                })
            };
            (Box::new(model), text(12)?, text(14)?)
        }
        Family::Lumina => {
            let model = LuminaTransformer::load(gpu, &weights, LuminaConfig::lumina_next_sft(cfg.layers))?;
            // Left padding, as Gemma's tokenizer pads.
            let mask: Vec<f32> = (0..l)
                .map(|j| u8::from(j >= l - LUMINA_REAL_TOKENS) as f32)
                .collect();
            let text = |seed| -> Result<Conditioning> {
                Ok(Conditioning {
                    tokens: gpu.upload_f32(&filler(l * 2048, seed), &[1, l, 2048])?,
                    pooled: None,
                    mask: Some(mask.clone()),
                    text_weights: None,
                })
            };
            (Box::new(model), text(12)?, text(14)?)
        }
    })
}

/// Runs dense, then RAS at each ratio (the family's example schedule); the
/// first entry is dense.
pub fn bench_ras(
    gpu: &Gpu,
    cfg: &RasBenchConfig,
    mut report: impl FnMut(&RunFigure),
) -> Result<Vec<RunFigure>> {
    let (model, cond, uncond) = setup(gpu, cfg)?;
    let c = model.latent_channels();
    let side = cfg.size / 8;
    let latents = gpu.upload_f32(&filler(c * side * side, 11), &[1, c, side, side])?;
    let family = defaults(cfg.family);
    let run = |ras: RasConfig, steps: usize, profile: bool| -> Result<RunFigure> {
        let request = SampleRequest {
            latents: &latents,
            cond: &cond,
            uncond: Some(&uncond),
            steps,
            guidance: if cfg.cfg { family.guidance } else { 1.0 },
            shift: family.shift,
            ras: ras.clone(),
            precision: cfg.precision,
        };
        let mut token_steps = 0;
        let (mut ras_steps, mut ras_fraction) = (0, 0.0);
        gpu.sync()?;
        let start = Instant::now();
        let out = sample(gpu, model.as_ref(), &request, |s| {
            token_steps += s.active_tokens;
            if s.kind == StepKind::Ras {
                ras_steps += 1;
                ras_fraction += s.active_tokens as f64 / s.total_tokens as f64;
            }
            std::ops::ControlFlow::Continue(())
        })?;
        gpu.read_f32(&out.latents)?;
        let seconds = start.elapsed().as_secs_f64();
        let profile = match profile {
            true => {
                gpu.start_profile()?;
                sample(gpu, model.as_ref(), &request, |_| {
                    std::ops::ControlFlow::Continue(())
                })?;
                Some(gpu.take_profile()?)
            }
            false => None,
        };
        Ok(RunFigure {
            ratio: ras.sample_ratio,
            skip_num_step: if ras.is_dense() { 0 } else { ras.skip_num_step },
            seconds,
            token_steps,
            ras_step_fraction: if ras_steps == 0 {
                1.0
            } else {
                ras_fraction / ras_steps as f64
            },
            kv_cache_bytes: out.kv_cache_bytes,
            profile,
        })
    };
    // A three-step run with one dense and two RAS steps compiles every
    // pipeline first (seconds per kernel on software Vulkan).
    let warm_up = RasConfig {
        scheduler_start_step: 1,
        error_reset_steps: Vec::new(),
        ..RasConfig::sd3_example(3)
    };
    run(warm_up, 3, false)?;
    let p = model.patch_size();
    let tokens = (side / p) * (side / p);
    let mut figures = Vec::new();
    let example = ras_defaults(cfg.family, cfg.steps, tokens);
    let at_ratio = |r: f64| {
        let mut ras = RasConfig {
            sample_ratio: r,
            ..example.clone()
        };
        ras.fit_ramp(cfg.steps, tokens);
        ras
    };
    for ras in std::iter::once(RasConfig::dense(cfg.steps)).chain(cfg.ratios.iter().map(|&r| at_ratio(r))) {
        let f = run(ras, cfg.steps, cfg.profile)?;
        report(&f);
        figures.push(f);
    }
    Ok(figures)
}
