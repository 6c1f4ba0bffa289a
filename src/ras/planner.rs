//! Token selection (ras-spec §4.3–4.4): scores with the starvation term,
//! the split into dropped and active tokens, and the per-image drop counts.
//! Pure host code; the scores come from the GPU metric kernel.

use super::config::RasConfig;
use super::schedule::Schedule;
use crate::error::{Error, Result};

/// The tokens computed at one RAS step, per image.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Active token indices of each image, ascending (row-major numbering).
    pub active: Vec<Vec<u32>>,
    /// `dropped[b * tokens + t]` is 1 when token `t` of image `b` reuses
    /// its cached velocity.
    pub dropped: Vec<u32>,
}

impl Selection {
    pub fn active_count(&self) -> usize {
        self.active.first().map_or(0, Vec::len)
    }
}

/// Selection state across the steps of one generation.
pub struct Planner {
    schedule: Schedule,
    high_ratio: f64,
    starvation_scale: f32,
    images: usize,
    /// Per image and token: how often it was dropped, offset by −(steps + 1)
    /// as in the original (a uniform offset, so ranking is unaffected).
    drop_count: Vec<i64>,
    current: Option<Selection>,
}

impl Planner {
    pub fn new(cfg: &RasConfig, schedule: Schedule, images: usize) -> Planner {
        let init = -(schedule.steps() as i64 + 1);
        Planner {
            drop_count: vec![init; images * schedule.tokens()],
            high_ratio: cfg.high_ratio,
            starvation_scale: cfg.starvation_scale as f32,
            images,
            schedule,
            current: None,
        }
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The selection in force (the latest one made).
    pub fn current(&self) -> Option<&Selection> {
        self.current.as_ref()
    }

    /// Selects the tokens of step `next` from `scores [images × tokens]`
    /// (the region metric of the merged velocity of the step before).
    /// Each image ranks its own tokens.
    pub fn select(&mut self, next: usize, scores: &[f32]) -> Result<&Selection> {
        let t = self.schedule.tokens();
        if scores.len() != self.images * t {
            return Err(Error::shape(
                "ras select",
                format!("{} scores for {} images × {t} tokens", scores.len(), self.images),
            ));
        }
        let skip = self.schedule.skip(next);
        let low = (skip as f64 * (1.0 - self.high_ratio)) as usize;
        let high = (skip as f64 * self.high_ratio) as usize;
        let mut active = Vec::with_capacity(self.images);
        let mut dropped = vec![0u32; self.images * t];
        for b in 0..self.images {
            let counts = &mut self.drop_count[b * t..(b + 1) * t];
            let score: Vec<f32> = scores[b * t..(b + 1) * t]
                .iter()
                .zip(counts.iter())
                .map(|(&m, &c)| m * (self.starvation_scale * c as f32).exp())
                .collect();
            let mut order: Vec<u32> = (0..t as u32).collect();
            // Stable, ascending; NaN scores (never expected) sort last.
            order.sort_by(|&i, &j| score[i as usize].total_cmp(&score[j as usize]));
            // The lowest `low` and the highest `high` are dropped; with
            // high == 0 nothing is taken from the top (the original's
            // `order[-0:]` took everything).
            for &tok in order[..low].iter().chain(&order[t - high..]) {
                counts[tok as usize] += 1;
                dropped[b * t + tok as usize] = 1;
            }
            let mut keep = order[low..t - high].to_vec();
            keep.sort_unstable();
            active.push(keep);
        }
        self.current = Some(Selection { active, dropped });
        Ok(self.current.as_ref().expect("just set"))
    }
}
