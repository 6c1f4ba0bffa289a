//! The per-step schedule (ras-spec §3.2–3.3): which steps are dense, which
//! refresh the K/V cache, how many tokens each RAS step skips, and after
//! which steps a new selection is made.

use super::config::RasConfig;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Every token computed; `refresh` when this step fills the K/V cache.
    Dense { refresh: bool },
    /// Only the selected tokens computed.
    Ras,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    steps: usize,
    tokens: usize,
    skip: Vec<usize>,
    start: usize,
    end: usize,
    resets: Vec<usize>,
    dense: bool,
}

impl Schedule {
    /// The schedule for `steps` steps over `tokens` image tokens.
    pub fn new(cfg: &RasConfig, steps: usize, tokens: usize) -> Result<Schedule> {
        cfg.validate(steps)?;
        let (s, resets) = (cfg.scheduler_start_step, &cfg.error_reset_steps);
        let avg_skip = ((1.0 - cfg.sample_ratio) * tokens as f64) as i64;
        let mut skip = Vec::with_capacity(steps);
        for i in 0..steps {
            let raw = if cfg.skip_num_step_length == 0 {
                avg_skip
            } else {
                // Linear ramp around the centre group, floored to a
                // multiple of 64 (floor division, as Python's `//`).
                let len = cfg.skip_num_step_length as i64;
                let centre = ((steps + s) as i64 / len) / 2;
                (avg_skip + cfg.skip_num_step * (i as i64 / len - centre)).div_euclid(64) * 64
            };
            let raw = if i < s || resets.contains(&i) { 0 } else { raw };
            if !(0..=tokens as i64).contains(&raw) {
                return Err(Error::Invalid(format!(
                    "the dynamic schedule asks step {i} to skip {raw} of {tokens} tokens; \
                     lower --skip-num-step or --skip-num-step-length"
                )));
            }
            skip.push(raw as usize);
        }
        Ok(Schedule {
            steps,
            tokens,
            skip,
            start: s,
            end: cfg.scheduler_end_step,
            resets: resets.clone(),
            dense: cfg.is_dense(),
        })
    }

    pub fn steps(&self) -> usize {
        self.steps
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Tokens skipped at step `i` (before the high/low split truncation).
    pub fn skip(&self, i: usize) -> usize {
        self.skip[i]
    }

    pub fn kind(&self, i: usize) -> StepKind {
        if !self.dense && (self.start..=self.end).contains(&i) && !self.resets.contains(&i) {
            StepKind::Ras
        } else {
            let refresh = !self.dense && (i + 1 == self.start || self.resets.contains(&i)) && i <= self.end;
            StepKind::Dense { refresh }
        }
    }

    /// Whether a selection for step `i + 1` is made after step `i`. The end
    /// test is strict here but inclusive in [`kind`](Self::kind), as in the
    /// original: step `end` reuses the previous selection.
    pub fn selects_after(&self, i: usize) -> bool {
        let next = i + 1;
        !self.dense
            && self.start <= next
            && next < self.end
            && !self.resets.contains(&next)
            && next < self.steps
    }

    /// Whether the K/V cache is needed after step `i` (freed after the last RAS step).
    pub fn cache_live_after(&self, i: usize) -> bool {
        !self.dense && ((i + 1)..self.steps).any(|j| self.kind(j) == StepKind::Ras)
    }
}
