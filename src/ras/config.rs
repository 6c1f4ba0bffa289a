//! RAS hyperparameters (ras-spec §2), with the original's names and its SD3
//! example as defaults.

use super::schedule::Schedule;
use crate::error::{Error, Result};
use crate::kernels::metric::Metric;

/// Every hyperparameter of the original RAS implementation.
#[derive(Debug, Clone, PartialEq)]
pub struct RasConfig {
    /// Nominal fraction of image tokens computed on a RAS step, in (0, 1];
    /// 1 is plain dense sampling.
    pub sample_ratio: f64,
    /// Per-pixel reduction over latent channels for the region score.
    pub metric: Metric,
    /// Share of the skipped tokens taken from the highest-score end; the
    /// rest come from the lowest-score end.
    pub high_ratio: f64,
    /// `k` in `score · exp(k · drop_count)`.
    pub starvation_scale: f64,
    /// Steps before this one are dense warm-up; the K/V cache is filled at
    /// the step before it. At least 1.
    pub scheduler_start_step: usize,
    /// Last step that may be a RAS step (inclusive).
    pub scheduler_end_step: usize,
    /// Dense steps that also refresh the K/V cache.
    pub error_reset_steps: Vec<usize>,
    /// Tokens added to the skip count per group of `skip_num_step_length`
    /// steps (dynamic schedule); may be negative.
    pub skip_num_step: i64,
    /// Steps per group of the dynamic schedule; 0 is the static schedule.
    pub skip_num_step_length: usize,
}

/// The original's SD3 example is tuned for 28 steps.
pub const SD3_EXAMPLE_STEPS: usize = 28;
/// The original's Lumina-Next example: 30 steps at 1024² (4096 tokens).
pub const LUMINA_EXAMPLE_STEPS: usize = 30;
pub const LUMINA_EXAMPLE_TOKENS: usize = 4096;

impl RasConfig {
    /// The original SD3 example (ras-spec §2.3) for `steps` steps: ratio 0.5,
    /// std metric, high_ratio 0.3, start 4, end = steps, static schedule,
    /// resets at 12 and 20 — scaled by `steps / 28` (rounded) when the step
    /// count differs from 28.
    pub fn sd3_example(steps: usize) -> RasConfig {
        let scale = |s: usize| ((s * steps) as f64 / SD3_EXAMPLE_STEPS as f64).round() as usize;
        RasConfig {
            sample_ratio: 0.5,
            metric: Metric::Std,
            high_ratio: 0.3,
            starvation_scale: 0.1,
            scheduler_start_step: 4.min(steps.saturating_sub(1)).max(1),
            scheduler_end_step: steps,
            error_reset_steps: [12, 20].into_iter().map(scale).filter(|&s| s < steps).collect(),
            skip_num_step: 0,
            skip_num_step_length: 0,
        }
    }

    /// The original Lumina-Next example (ras-spec §2.3) for `steps` steps
    /// over `tokens` image tokens: ratio 0.5, std metric, high_ratio 1,
    /// start 4, end = steps, resets at 12 and 22 (scaled by `steps / 30`),
    /// and the dynamic schedule adding 256 skipped tokens every 4 steps —
    /// 256 at 4096 tokens (1024²), scaled by `tokens / 4096` otherwise, so
    /// that the ramp keeps its shape (256 would ask a 512² image to skip a
    /// negative count).
    pub fn lumina_example(steps: usize, tokens: usize) -> RasConfig {
        let scale = |s: usize| ((s * steps) as f64 / LUMINA_EXAMPLE_STEPS as f64).round() as usize;
        let ramp = (256.0 * tokens as f64 / LUMINA_EXAMPLE_TOKENS as f64).round() as i64;
        RasConfig {
            high_ratio: 1.0,
            error_reset_steps: [12, 22].into_iter().map(scale).filter(|&s| s < steps).collect(),
            skip_num_step: ramp,
            skip_num_step_length: 4,
            ..RasConfig::sd3_example(steps)
        }
    }

    /// Shrinks a dynamic schedule's ramp (`skip_num_step`, toward 0) until
    /// every step skips fewer than all `tokens` (so each RAS step computes
    /// at least one): the original's Lumina ramp of 256 tokens per 4 steps
    /// asks for all 4096 tokens or more at ratios below about 0.19. No
    /// change when it fits, or for a static schedule. For defaults only;
    /// settings a user gave stay as given.
    pub fn fit_ramp(&mut self, steps: usize, tokens: usize) {
        let fits = |cfg: &RasConfig| {
            Schedule::new(cfg, steps, tokens).is_ok_and(|s| (0..steps).all(|i| s.skip(i) < tokens))
        };
        while self.skip_num_step != 0 && !fits(self) {
            self.skip_num_step -= self.skip_num_step.signum();
        }
    }

    /// Plain dense sampling.
    pub fn dense(steps: usize) -> RasConfig {
        RasConfig {
            sample_ratio: 1.0,
            ..RasConfig::sd3_example(steps)
        }
    }

    pub fn is_dense(&self) -> bool {
        self.sample_ratio >= 1.0
    }

    /// Rejects settings the original would crash on or silently misread,
    /// naming the flag.
    pub fn validate(&self, steps: usize) -> Result<()> {
        match self.problem(steps) {
            None => Ok(()),
            Some((field, message)) => Err(Error::Invalid(format!("--{} {message}", field.replace('_', "-")))),
        }
    }

    /// What [`validate`](Self::validate) rejects: the field, by its name
    /// in the original, and what is wrong with it.
    pub fn problem(&self, steps: usize) -> Option<(&'static str, String)> {
        if !(self.sample_ratio > 0.0 && self.sample_ratio <= 1.0) {
            return Some(("sample_ratio", format!("{} must be in (0, 1]", self.sample_ratio)));
        }
        if !(0.0..=1.0).contains(&self.high_ratio) {
            return Some(("high_ratio", format!("{} must be in [0, 1]", self.high_ratio)));
        }
        if !self.starvation_scale.is_finite() {
            return Some(("starvation_scale", "must be a finite number".into()));
        }
        if self.is_dense() {
            return None;
        }
        if self.scheduler_start_step == 0 {
            return Some((
                "scheduler_start_step",
                "must be at least 1: the K/V cache is filled on the dense step before it".into(),
            ));
        }
        if let Some(&r) = self.error_reset_steps.iter().find(|&&r| r >= steps) {
            return Some((
                "error_reset_steps",
                format!("reset step {r} is not below the step count {steps}"),
            ));
        }
        None
    }
}
