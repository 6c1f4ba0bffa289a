//! The denoising loop (SD3 pipeline, model-spec §C.2) with Region-Adaptive
//! Sampling (ras-spec §3.8): dense warm-up and reset steps fill the K/V
//! cache, RAS steps compute the selected tokens only, and after each step
//! the GPU scores the merged velocity and the planner picks the next
//! step's tokens.

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

/// Runs the sampling loop; `on_step` sees each finished step.
pub fn sample(
    gpu: &Gpu,
    model: &Sd3Transformer,
    req: &SampleRequest,
    mut on_step: impl FnMut(&StepInfo),
) -> Result<SampleOutput> {
    let &[b, _, h, w] = req.latents.shape() else {
        return Err(Error::shape("sample", "latents must be [B, C, H, W]"));
    };
    let p = model.config.patch_size;
    let cfg = req.guidance > 1.0;
    let (ctx, pooled) = if cfg {
        let (Some(neg), Some(neg_pooled)) = (req.negative_prompt_embeds, req.negative_pooled_prompt_embeds)
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
    let rows = if cfg { 2 * b } else { b };
    let (n, l) = ((h / p) * (w / p), ctx.shape()[1]);
    let scheduler = FlowMatchEuler::new(req.steps, req.shift);
    let schedule = Schedule::new(&req.ras, req.steps, n)?;
    let mut planner = Planner::new(&req.ras, schedule.clone(), b);
    let mut cache: Option<KvCache> = None;
    let mut merge_state: Option<(Tensor, Tensor)> = None; // (v_cache, dropped)
    let mut out = SampleOutput {
        latents: req.latents.clone(),
        active: Vec::new(),
        kv_cache_bytes: 0,
    };
    let mut x = req.latents.clone();
    for i in 0..req.steps {
        let kind = schedule.kind(i);
        let x_in = if cfg {
            concat_batch(gpu, &x, &x)?
        } else {
            x.clone()
        };
        let timestep = vec![scheduler.timesteps[i]; rows];
        let inputs = Sd3Inputs {
            hidden_states: &x_in,
            encoder_hidden_states: &ctx,
            pooled_projections: &pooled,
            timestep: &timestep,
        };
        let (plan, active_tokens) = match kind {
            StepKind::Dense { refresh } => {
                if refresh && cache.is_none() {
                    cache = Some(model.kv_cache(gpu, rows, n, l)?);
                    out.kv_cache_bytes = out.kv_cache_bytes.max(cache.as_ref().map_or(0, KvCache::bytes));
                }
                (TokenPlan::dense(gpu, rows, n, l)?, n)
            }
            StepKind::Ras => {
                let sel = planner
                    .current()
                    .ok_or_else(|| Error::Invalid(format!("RAS step {i} has no selection")))?;
                let per_row: Vec<Vec<u32>> = (0..rows).map(|r| sel.active[r % b].clone()).collect();
                out.active.push((i, sel.active.clone()));
                (TokenPlan::sparse(gpu, n, l, &per_row)?, sel.active_count())
            }
        };
        if kind == StepKind::Ras && cache.is_none() {
            return Err(Error::Invalid(format!("RAS step {i} has no K/V cache")));
        }
        let v = model.forward_planned(gpu, &inputs, &plan, cache.as_ref())?;
        let merge = match (kind, &merge_state) {
            (StepKind::Ras, Some((v_cache, dropped))) => Some(Merge {
                v_cache,
                dropped,
                patch: p,
            }),
            _ => None,
        };
        let (x_next, v_hat) = euler_step(
            gpu,
            &x,
            &v,
            cfg.then_some(req.guidance),
            scheduler.dsigma(i),
            merge,
        )?;
        x = x_next;
        if schedule.selects_after(i) {
            // Ranking Δσ·v̂ equals ranking v̂: std and L2 scale by |Δσ|.
            let scores = gpu.read_f32(&region_metric(gpu, &v_hat, p, req.ras.metric)?)?;
            let sel = planner.select(i + 1, &scores)?;
            merge_state = Some((v_hat, gpu.upload_u32(&sel.dropped, &[b, n])?));
        }
        if !schedule.cache_live_after(i) && cache.take().is_some() {
            // Give the cache's memory back to the device, not just the pool.
            gpu.trim();
        }
        on_step(&StepInfo {
            step: i,
            steps: req.steps,
            kind,
            active_tokens,
            total_tokens: n,
        });
    }
    out.latents = x;
    Ok(out)
}
