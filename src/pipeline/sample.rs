//! The denoising loop (SD3 pipeline, model-spec §C.2) with Region-Adaptive
//! Sampling (ras-spec §3.8): dense warm-up and reset steps fill the K/V
//! cache, RAS steps compute the selected tokens only, and after each step
//! the GPU scores the merged velocity and the planner picks the next
//! step's tokens.

use std::ops::ControlFlow;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::kernels::metric::region_metric;
use crate::kernels::rows::{scatter, Indices};
use crate::kernels::sampler::{euler_step, Merge};
use crate::models::sd3::{KvCache, Sd3Inputs, Sd3Transformer, TokenPlan};
use crate::ras::{Planner, RasConfig, Schedule, StepKind};
use crate::sampling::FlowMatchEuler;

/// Inputs of one sampling run: `B` images.
pub struct SampleRequest<'a> {
    /// Initial noise `[B, C, H, W]`.
    pub latents: &'a Tensor,
    /// `[B, L, joint_attention_dim]` and `[B, pooled_projection_dim]`.
    pub prompt_embeds: &'a Tensor,
    pub pooled_prompt_embeds: &'a Tensor,
    /// Copies each prompt-embedding row stands for (see
    /// `Sd3Inputs::text_weights`); the same for the negative prompt.
    pub text_weights: Option<&'a [f32]>,
    /// Required when `guidance > 1` (classifier-free guidance).
    pub negative_prompt_embeds: Option<&'a Tensor>,
    pub negative_pooled_prompt_embeds: Option<&'a Tensor>,
    pub steps: usize,
    pub guidance: f32,
    /// Flow-match timestep shift (3.0 for SD3).
    pub shift: f64,
    pub ras: RasConfig,
}

/// What happened at one step, for progress display.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    pub step: usize,
    pub steps: usize,
    pub kind: StepKind,
    /// Image tokens computed at this step, per image.
    pub active_tokens: usize,
    pub total_tokens: usize,
}

pub struct SampleOutput {
    /// Denoised latents `[B, C, H, W]` (before any VAE scaling).
    pub latents: Tensor,
    /// For every RAS step: the step and each image's active tokens (ascending).
    pub active: Vec<(usize, Vec<Vec<u32>>)>,
    /// Peak K/V-cache bytes held.
    pub kv_cache_bytes: u64,
}

/// `[a; b]` along the batch dimension.
fn concat_batch(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape()[1..] != b.shape()[1..] {
        return Err(Error::shape(
            "concat",
            format!("{:?} and {:?}", a.shape(), b.shape()),
        ));
    }
    let row = a.numel() / a.shape()[0].max(1);
    let (na, nb) = (a.shape()[0], b.shape()[0]);
    let mut shape = a.shape().to_vec();
    shape[0] = na + nb;
    let out = gpu.empty(&shape, a.dtype())?;
    let flat = out.reshape(&[na + nb, row])?;
    scatter(
        gpu,
        &a.reshape(&[na, row])?,
        &Indices::upload(gpu, &(0..na as u32).collect::<Vec<_>>())?,
        &flat,
    )?;
    let rows_b: Vec<u32> = (na as u32..(na + nb) as u32).collect();
    scatter(
        gpu,
        &b.reshape(&[nb, row])?,
        &Indices::upload(gpu, &rows_b)?,
        &flat,
    )?;
    Ok(out)
}

/// The denoising loop as a state machine, so a host can advance it one
/// step at a time (one step per frame) and look at the latents in between.
pub struct Denoiser {
    ctx: Tensor,
    pooled: Tensor,
    text_weights: Option<Vec<f32>>,
    guidance: Option<f32>,
    ras: RasConfig,
    batch: usize,
    rows: usize,
    n: usize,
    l: usize,
    patch: usize,
    scheduler: FlowMatchEuler,
    schedule: Schedule,
    planner: Planner,
    cache: Option<KvCache>,
    /// `(v̂ of the last step, dropped mask)` for the next RAS step's merge.
    merge_state: Option<(Tensor, Tensor)>,
    x: Tensor,
    step: usize,
    out_active: Vec<(usize, Vec<Vec<u32>>)>,
    kv_cache_bytes: u64,
}

impl Denoiser {
    pub fn new(gpu: &Gpu, model: &Sd3Transformer, req: &SampleRequest) -> Result<Denoiser> {
        let &[b, _, h, w] = req.latents.shape() else {
            return Err(Error::shape("sample", "latents must be [B, C, H, W]"));
        };
        let p = model.config.patch_size;
        let cfg = req.guidance > 1.0;
        let (ctx, pooled) = if cfg {
            let (Some(neg), Some(neg_pooled)) =
                (req.negative_prompt_embeds, req.negative_pooled_prompt_embeds)
            else {
                return Err(Error::Invalid(
                    "guidance > 1 needs negative prompt embeddings".into(),
                ));
            };
            // diffusers' batch order: unconditional rows first.
            (
                concat_batch(gpu, neg, req.prompt_embeds)?,
                concat_batch(gpu, neg_pooled, req.pooled_prompt_embeds)?,
            )
        } else {
            (req.prompt_embeds.clone(), req.pooled_prompt_embeds.clone())
        };
        let (n, l) = ((h / p) * (w / p), ctx.shape()[1]);
        let schedule = Schedule::new(&req.ras, req.steps, n)?;
        Ok(Denoiser {
            guidance: cfg.then_some(req.guidance),
            ras: req.ras.clone(),
            batch: b,
            rows: if cfg { 2 * b } else { b },
            n,
            l,
            patch: p,
            scheduler: FlowMatchEuler::new(req.steps, req.shift),
            planner: Planner::new(&req.ras, schedule.clone(), b),
            schedule,
            cache: None,
            merge_state: None,
            x: req.latents.clone(),
            step: 0,
            out_active: Vec::new(),
            kv_cache_bytes: 0,
            ctx,
            pooled,
            text_weights: req.text_weights.map(<[f32]>::to_vec),
        })
    }

    pub fn steps(&self) -> usize {
        self.scheduler.timesteps.len()
    }

    pub fn is_done(&self) -> bool {
        self.step >= self.steps()
    }

    /// The current latents `[B, C, H, W]`.
    pub fn latents(&self) -> &Tensor {
        &self.x
    }

    /// Runs the next denoising step.
    pub fn step(&mut self, gpu: &Gpu, model: &Sd3Transformer) -> Result<StepInfo> {
        let i = self.step;
        if self.is_done() {
            return Err(Error::Invalid(format!("all {i} steps are done")));
        }
        let (b, n, l, rows) = (self.batch, self.n, self.l, self.rows);
        let kind = self.schedule.kind(i);
        let x_in = match self.guidance {
            Some(_) => concat_batch(gpu, &self.x, &self.x)?,
            None => self.x.clone(),
        };
        let timestep = vec![self.scheduler.timesteps[i]; rows];
        let inputs = Sd3Inputs {
            hidden_states: &x_in,
            encoder_hidden_states: &self.ctx,
            pooled_projections: &self.pooled,
            timestep: &timestep,
            text_weights: self.text_weights.as_deref(),
        };
        let (plan, active_tokens) = match kind {
            StepKind::Dense { refresh } => {
                if refresh && self.cache.is_none() {
                    let cache = model.kv_cache(gpu, rows, n, l)?;
                    self.kv_cache_bytes = self.kv_cache_bytes.max(cache.bytes());
                    self.cache = Some(cache);
                }
                (TokenPlan::dense(gpu, rows, n, l)?, n)
            }
            StepKind::Ras => {
                let sel = self
                    .planner
                    .current()
                    .ok_or_else(|| Error::Invalid(format!("RAS step {i} has no selection")))?;
                if self.cache.is_none() {
                    return Err(Error::Invalid(format!("RAS step {i} has no K/V cache")));
                }
                let per_row: Vec<Vec<u32>> = (0..rows).map(|r| sel.active[r % b].clone()).collect();
                self.out_active.push((i, sel.active.clone()));
                (TokenPlan::sparse(gpu, n, l, &per_row)?, sel.active_count())
            }
        };
        let v = model.forward_planned(gpu, &inputs, &plan, self.cache.as_ref())?;
        let merge = match (kind, &self.merge_state) {
            (StepKind::Ras, Some((v_cache, dropped))) => Some(Merge {
                v_cache,
                dropped,
                patch: self.patch,
            }),
            _ => None,
        };
        let (x_next, v_hat) = euler_step(gpu, &self.x, &v, self.guidance, self.scheduler.dsigma(i), merge)?;
        self.x = x_next;
        if self.schedule.selects_after(i) {
            // Ranking Δσ·v̂ equals ranking v̂: std and L2 scale by |Δσ|.
            let scores = gpu.read_f32(&region_metric(gpu, &v_hat, self.patch, self.ras.metric)?)?;
            let sel = self.planner.select(i + 1, &scores)?;
            self.merge_state = Some((v_hat, gpu.upload_u32(&sel.dropped, &[b, n])?));
        }
        if !self.schedule.cache_live_after(i) && self.cache.take().is_some() {
            // Give the cache's memory back to the device, not just the pool.
            gpu.trim();
        }
        self.step += 1;
        Ok(StepInfo {
            step: i,
            steps: self.steps(),
            kind,
            active_tokens,
            total_tokens: n,
        })
    }

    /// Steps done so far.
    pub fn current_step(&self) -> usize {
        self.step
    }

    /// The result so far; frees the K/V cache and merge state.
    pub fn finish(&mut self) -> SampleOutput {
        self.cache = None;
        self.merge_state = None;
        SampleOutput {
            latents: self.x.clone(),
            active: std::mem::take(&mut self.out_active),
            kv_cache_bytes: self.kv_cache_bytes,
        }
    }
}

/// Runs the whole sampling loop; `on_step` sees each finished step and may
/// stop the run (`ControlFlow::Break` gives `Error::Cancelled`).
pub fn sample(
    gpu: &Gpu,
    model: &Sd3Transformer,
    req: &SampleRequest,
    mut on_step: impl FnMut(&StepInfo) -> ControlFlow<()>,
) -> Result<SampleOutput> {
    let mut denoiser = Denoiser::new(gpu, model, req)?;
    while !denoiser.is_done() {
        let info = denoiser.step(gpu, model)?;
        if on_step(&info).is_break() {
            return Err(Error::Cancelled);
        }
    }
    Ok(denoiser.finish())
}
