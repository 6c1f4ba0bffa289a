//! The settings a user gives over a model's RAS defaults (the CLI's flags,
//! a server request's `ras_*` fields): what is given stays as given, the
//! rest comes from the model family's example.

use super::config::RasConfig;
use crate::error::{Error, Result};
use crate::kernels::metric::Metric;

/// Each field replaces the default's when set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RasOverrides {
    pub sample_ratio: Option<f64>,
    /// Plain dense sampling (ratio 1), whatever `sample_ratio` says.
    pub dense: bool,
    pub metric: Option<Metric>,
    pub high_ratio: Option<f64>,
    pub starvation_scale: Option<f64>,
    pub scheduler_start_step: Option<usize>,
    /// Default: the step count.
    pub scheduler_end_step: Option<usize>,
    pub error_reset_steps: Option<Vec<usize>>,
    pub skip_num_step: Option<i64>,
    pub skip_num_step_length: Option<usize>,
}

impl RasOverrides {
    /// The settings for a run of `steps` steps over `tokens` image tokens:
    /// these over `defaults` (see `ras::pipeline::ras_defaults`), a default
    /// dynamic ramp shrunk to fit the chosen ratio; checked.
    pub fn apply(&self, steps: usize, tokens: usize, defaults: RasConfig) -> Result<RasConfig> {
        let cfg = self.resolve(steps, tokens, defaults);
        cfg.validate(steps)?;
        Ok(cfg)
    }

    /// [`apply`](Self::apply) without the check (for callers that name
    /// the faulty field themselves, through [`RasConfig::problem`]).
    pub fn resolve(&self, steps: usize, tokens: usize, defaults: RasConfig) -> RasConfig {
        let mut cfg = RasConfig {
            sample_ratio: if self.dense {
                1.0
            } else {
                self.sample_ratio.unwrap_or(defaults.sample_ratio)
            },
            metric: self.metric.unwrap_or(defaults.metric),
            high_ratio: self.high_ratio.unwrap_or(defaults.high_ratio),
            starvation_scale: self.starvation_scale.unwrap_or(defaults.starvation_scale),
            scheduler_start_step: self.scheduler_start_step.unwrap_or(defaults.scheduler_start_step),
            scheduler_end_step: self.scheduler_end_step.unwrap_or(steps),
            error_reset_steps: self
                .error_reset_steps
                .clone()
                .unwrap_or(defaults.error_reset_steps),
            skip_num_step: self.skip_num_step.unwrap_or(defaults.skip_num_step),
            skip_num_step_length: self.skip_num_step_length.unwrap_or(defaults.skip_num_step_length),
        };
        if self.skip_num_step.is_none() {
            cfg.fit_ramp(steps, tokens);
        }
        cfg
    }

    /// Parses a comma-separated step list ("" for none), as `--error-reset-steps` takes it.
    pub fn parse_steps(list: &str) -> Result<Vec<usize>> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|_| Error::Invalid(format!("'{s}' is not a step number")))
            })
            .collect()
    }
}
