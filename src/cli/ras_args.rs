//! The RAS flags, with the original implementation's names accepted as
//! aliases (`--sample_ratio` as well as `--sample-ratio`, …).

use anyhow::Context;
use clap::{Args, ValueEnum};
use ras::kernels::metric::Metric;
use ras::models::Precision;
use ras::ras::{RasConfig, RasOverrides};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MetricArg {
    /// Standard deviation over latent channels.
    Std,
    /// L2 norm over latent channels.
    L2norm,
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum PrecisionArg {
    /// Everything in f32 (the reference).
    #[default]
    F32,
    /// f16 K/V cache (half its memory) and f16 activations between
    /// kernels; sums, norms, softmax and the sampler stay f32
    /// (needs an adapter with shader-f16).
    F16,
}

impl PrecisionArg {
    pub fn precision(self) -> Precision {
        match self {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::F16 => Precision::F16,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct RasArgs {
    /// Numeric precision: f32 (the reference), or f16 for the K/V cache and
    /// the activations.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
    /// Fraction of image tokens computed on RAS steps, in (0, 1]. 1 is plain
    /// dense sampling. Default: 0.5, or the model folder's
    /// ras_defaults.json.
    #[arg(long = "sample-ratio", alias = "sample_ratio")]
    sample_ratio: Option<f64>,
    /// Plain dense sampling (same as --sample-ratio 1).
    #[arg(long)]
    dense: bool,
    /// Dense steps that also refresh the K/V cache, comma-separated ("" for
    /// none). Default: the original's examples scaled proportionally to the
    /// step count: SD3 "12,20" at 28 steps (e.g. "4,7" at 10 steps), Lumina
    /// "12,22" at 30.
    #[arg(long = "error-reset-steps", alias = "error_reset_steps")]
    error_reset_steps: Option<String>,
    /// How each latent pixel is scored before averaging over its patch.
    /// Default: std, or the model folder's ras_defaults.json.
    #[arg(long, value_enum)]
    metric: Option<MetricArg>,
    /// Share of skipped tokens taken from the highest scores (the rest from
    /// the lowest), in [0, 1]. Default: 0.3 for SD3, 1 for Lumina (the
    /// original's examples), or the model folder's ras_defaults.json (the
    /// demo model's: 0).
    #[arg(long = "high-ratio", alias = "high_ratio")]
    high_ratio: Option<f64>,
    /// k in score · exp(k · times dropped): favours long-skipped tokens.
    /// Default: 0.1, or the model folder's ras_defaults.json.
    #[arg(long = "starvation-scale", alias = "starvation_scale")]
    starvation_scale: Option<f64>,
    /// First step that may skip tokens; earlier steps are dense warm-up and
    /// the step before it fills the K/V cache. At least 1.
    #[arg(
        long = "scheduler-start-step",
        alias = "scheduler_start_step",
        default_value_t = 4
    )]
    scheduler_start_step: usize,
    /// Last step that may skip tokens (inclusive). Default: the step count.
    #[arg(long = "scheduler-end-step", alias = "scheduler_end_step")]
    scheduler_end_step: Option<usize>,
    /// Dynamic schedule: tokens added to the skip count per step group
    /// (may be negative). Default: 0 for SD3 (static); for Lumina the
    /// original's 256 at 1024² (4096 tokens), scaled by tokens / 4096 at
    /// other sizes.
    #[arg(long = "skip-num-step", alias = "skip_num_step", allow_hyphen_values = true)]
    skip_num_step: Option<i64>,
    /// Dynamic schedule: steps per group (0 = static schedule). Default: 0
    /// for SD3, 4 for Lumina.
    #[arg(long = "skip-num-step-length", alias = "skip_num_step_length")]
    skip_num_step_length: Option<usize>,
}

impl RasArgs {
    /// The settings for a run of `steps` steps over `tokens` image tokens:
    /// these flags over `defaults` (the model family's example, see
    /// `ras::pipeline::ras_defaults`).
    pub fn config(&self, steps: usize, tokens: usize, defaults: RasConfig) -> anyhow::Result<RasConfig> {
        let error_reset_steps = match &self.error_reset_steps {
            None => None,
            Some(list) => Some(RasOverrides::parse_steps(list).context("--error-reset-steps")?),
        };
        let overrides = RasOverrides {
            sample_ratio: self.sample_ratio,
            dense: self.dense,
            metric: self.metric.map(|m| match m {
                MetricArg::Std => Metric::Std,
                MetricArg::L2norm => Metric::L2Norm,
            }),
            high_ratio: self.high_ratio,
            starvation_scale: self.starvation_scale,
            scheduler_start_step: Some(self.scheduler_start_step),
            scheduler_end_step: self.scheduler_end_step,
            error_reset_steps,
            skip_num_step: self.skip_num_step,
            skip_num_step_length: self.skip_num_step_length,
        };
        Ok(overrides.apply(steps, tokens, defaults)?)
    }
}
