//! The denoising loop (model-spec §C.2, §C.3) with Region-Adaptive
//! Sampling (ras-spec §3.8), for any [`Dit`]: dense warm-up and reset steps
//! fill the K/V cache, RAS steps compute the selected tokens only, and
//! after each step the GPU scores the merged velocity and the planner picks
//! the next step's tokens. The model supplies its timestep convention and
//! guidance rule; the loop is the same for every model.

use std::ops::ControlFlow;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PendingRead, Tensor};
use crate::kernels::finite::{check_finite, new_flag, CLEAN};
use crate::kernels::metric::region_metric;
use crate::kernels::rows::{scatter, Indices};
use crate::kernels::sampler::{euler_step, Combine, Merge};
use crate::models::{Conditioning, Dit, DitCall, KvCache, Memos, Precision, RunMemo};
use crate::ras::{Planner, RasConfig, Schedule, StepKind};
use crate::sampling::FlowMatchEuler;

/// Inputs of one sampling run: `B` images.
pub struct SampleRequest<'a> {
    /// Initial noise `[B, C, H, W]`.
    pub latents: &'a Tensor,
    /// The prompt's conditioning, `B` rows.
    pub cond: &'a Conditioning,
    /// The negative prompt's, `B` rows; required when `guidance > 1`
    /// (classifier-free guidance).
    pub uncond: Option<&'a Conditioning>,
    pub steps: usize,
    pub guidance: f32,
    /// Flow-match timestep shift (3.0 for SD3).
    pub shift: f64,
    pub ras: RasConfig,
    pub precision: Precision,
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

/// Where a non-finite check looks.
#[derive(Clone, Copy)]
enum Stage {
    /// The transformer's prediction.
    Output,
    /// The latents after the Euler step.
    Latents,
}

/// The flag code of a check: smaller for earlier steps, and for the
/// transformer output before the latents of the same step, so the flag
/// (a minimum) names where garbage first appeared.
fn check_code(step: usize, stage: Stage) -> u32 {
    (step as u32) << 1 | stage as u32
}

/// Both conditionings stacked along the batch in the model's CFG order.
fn stack(gpu: &Gpu, first: &Conditioning, second: &Conditioning) -> Result<Conditioning> {
    let pooled = match (&first.pooled, &second.pooled) {
        (Some(a), Some(b)) => Some(concat_batch(gpu, a, b)?),
        (None, None) => None,
        _ => return Err(Error::Invalid("only one prompt has a pooled embedding".into())),
    };
    let mask = match (&first.mask, &second.mask) {
        (Some(a), Some(b)) => Some([a.as_slice(), b].concat()),
        (None, None) => None,
        _ => return Err(Error::Invalid("only one prompt has an attention mask".into())),
    };
    if first.text_weights != second.text_weights {
        return Err(Error::Invalid(
            "the prompt and the negative prompt must have the same text weights".into(),
        ));
    }
    Ok(Conditioning {
        tokens: concat_batch(gpu, &first.tokens, &second.tokens)?,
        pooled,
        mask,
        text_weights: first.text_weights.clone(),
    })
}

/// The denoising loop as a state machine, so a host can advance it one
/// step at a time (one step per frame) and look at the latents in between.
pub struct Denoiser {
    cond: Conditioning,
    combine: Combine,
    ras: RasConfig,
    batch: usize,
    rows: usize,
    n: usize,
    patch: usize,
    scheduler: FlowMatchEuler,
    schedule: Schedule,
    planner: Planner,
    cache: Option<KvCache>,
    precision: Precision,
    /// The model's conditioning-only values, kept across steps.
    memo: RunMemo,
    /// The next step's model input and selection-free values, recorded
    /// while the previous step's scores were read back.
    prepared: Option<(Tensor, RunMemo)>,
    /// Lowered by the non-finite checks of every step (see [`check_code`]);
    /// read back one step late, so reading never stalls the GPU.
    finite: Tensor,
    finite_read: Option<PendingRead>,
    /// The last step's region scores on their way back, with its v̂: the
    /// next step selects its tokens from them before it starts.
    scoring: Option<(PendingRead, Tensor)>,
    /// `(v̂ of the last step, dropped mask)` for the next RAS step's merge.
    merge_state: Option<(Tensor, Tensor)>,
    x: Tensor,
    step: usize,
    out_active: Vec<(usize, Vec<Vec<u32>>)>,
    kv_cache_bytes: u64,
}

impl Denoiser {
    pub fn new(gpu: &Gpu, model: &dyn Dit, req: &SampleRequest) -> Result<Denoiser> {
        let &[b, c, h, w] = req.latents.shape() else {
            return Err(Error::shape("sample", "latents must be [B, C, H, W]"));
        };
        let p = model.patch_size();
        if c != model.latent_channels() || !h.is_multiple_of(p) || !w.is_multiple_of(p) {
            return Err(Error::shape(
                "sample",
                format!(
                    "latents {:?} must have {} channels and sides divisible by {p}",
                    req.latents.shape(),
                    model.latent_channels()
                ),
            ));
        }
        let cfg = crate::sampling::guided(req.guidance);
        let rule = model.guidance_rule();
        let cond = if cfg {
            let Some(uncond) = req.uncond else {
                return Err(Error::Invalid(
                    "guidance > 1 needs negative prompt embeddings".into(),
                ));
            };
            match rule.cond_first {
                true => stack(gpu, req.cond, uncond)?,
                false => stack(gpu, uncond, req.cond)?,
            }
        } else {
            req.cond.clone()
        };
        if req.precision == Precision::F16 && !gpu.capabilities().shader_f16 {
            return Err(Error::Invalid(format!(
                "precision f16 needs the shader-f16 feature, which {} lacks; use f32",
                gpu.adapter_name()
            )));
        }
        let n = (h / p) * (w / p);
        let schedule = Schedule::new(&req.ras, req.steps, n)?;
        Ok(Denoiser {
            combine: Combine {
                guidance: cfg.then_some(req.guidance),
                cond_first: rule.cond_first,
                guided_channels: rule.guided_channels.unwrap_or(c),
                negate: rule.negate,
            },
            ras: req.ras.clone(),
            batch: b,
            rows: if cfg { 2 * b } else { b },
            n,
            patch: p,
            scheduler: FlowMatchEuler::new(req.steps, req.shift),
            planner: Planner::new(&req.ras, schedule.clone(), b),
            schedule,
            cache: None,
            precision: req.precision,
            memo: RunMemo::default(),
            prepared: None,
            finite: new_flag(gpu)?,
            finite_read: None,
            scoring: None,
            merge_state: None,
            x: req.latents.clone(),
            step: 0,
            out_active: Vec::new(),
            kv_cache_bytes: 0,
            cond,
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
    pub fn step(&mut self, gpu: &Gpu, model: &dyn Dit) -> Result<StepInfo> {
        let i = self.step;
        if self.is_done() {
            return Err(Error::Invalid(format!("all {i} steps are done")));
        }
        // The previous step's checks, done on the GPU by now.
        self.check_finite(gpu)?;
        let (b, n, rows) = (self.batch, self.n, self.rows);
        let kind = self.schedule.kind(i);
        let _step = gpu.step_scope(match kind {
            StepKind::Dense { .. } => "dense step",
            StepKind::Ras => "RAS step",
        });
        self.select(gpu, i)?;
        let (x_in, step_memo) = match self.prepared.take() {
            Some(prepared) => prepared,
            None => (self.model_input(gpu)?, RunMemo::default()),
        };
        let timestep = vec![model.model_timestep(self.scheduler.timesteps[i]); rows];
        let (active, active_tokens) = match kind {
            StepKind::Dense { refresh } => {
                if refresh && self.cache.is_none() {
                    let cache = model.kv_cache(gpu, rows, n, &self.cond, self.precision.dtype())?;
                    self.kv_cache_bytes = self.kv_cache_bytes.max(cache.bytes());
                    self.cache = Some(cache);
                }
                (None, n)
            }
            StepKind::Ras => {
                let sel = self
                    .planner
                    .current()
                    .ok_or_else(|| Error::Invalid(format!("RAS step {i} has no selection")))?;
                if self.cache.is_none() {
                    return Err(Error::Invalid(format!("RAS step {i} has no K/V cache")));
                }
                if sel.active_count() == 0 {
                    return Err(Error::Invalid(format!(
                        "RAS step {i} would compute no image token; raise --sample-ratio"
                    )));
                }
                let per_row: Vec<Vec<u32>> = (0..rows).map(|r| sel.active[r % b].clone()).collect();
                self.out_active.push((i, sel.active.clone()));
                (Some(per_row), sel.active_count())
            }
        };
        let v = model.forward(
            gpu,
            &DitCall {
                latents: &x_in,
                timestep: &timestep,
                cond: &self.cond,
                active: active.as_deref(),
                cache: self.cache.as_ref(),
                memo: Memos {
                    run: Some(&self.memo),
                    step: Some(&step_memo),
                },
                precision: self.precision,
            },
        )?;
        drop(step_memo);
        let merge = match (kind, &self.merge_state) {
            (StepKind::Ras, Some((v_cache, dropped))) => Some(Merge {
                v_cache,
                dropped,
                patch: self.patch,
            }),
            _ => None,
        };
        let region = gpu.region("sampler");
        let (x_next, v_hat) = euler_step(gpu, &self.x, &v, self.combine, self.scheduler.dsigma(i), merge)?;
        check_finite(gpu, &v, &self.finite, check_code(i, Stage::Output))?;
        check_finite(gpu, &x_next, &self.finite, check_code(i, Stage::Latents))?;
        self.x = x_next;
        drop(region);
        // The step's work goes out here with the copy of the non-finite
        // flag read next step, ahead of the next step's prepared part: so
        // the next step waits for this step only, and selects its tokens
        // while the GPU runs the prepared part.
        self.finite_read = Some(gpu.read_u32_async(&self.finite)?);
        if self.schedule.selects_after(i) {
            let region = gpu.region("RAS selection");
            // Ranking Δσ·v̂ equals ranking v̂: std and L2 scale by |Δσ|.
            let metric = region_metric(gpu, &v_hat, self.patch, self.ras.metric)?;
            self.scoring = Some((gpu.read_f32_async(&metric)?, v_hat));
            drop(region);
            // The GPU runs the next step's selection-free part while the
            // scores come back and the planner decides.
            self.prepare_next(gpu, model, i + 1)?;
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

    /// The model's input latents for the current `x`: doubled along the
    /// batch under classifier-free guidance.
    fn model_input(&self, gpu: &Gpu) -> Result<Tensor> {
        match self.combine.guidance {
            Some(_) => concat_batch(gpu, &self.x, &self.x),
            None => Ok(self.x.clone()),
        }
    }

    /// Selects step `i`'s tokens from the previous step's scores, when it
    /// left some.
    fn select(&mut self, gpu: &Gpu, i: usize) -> Result<()> {
        let Some((pending, v_hat)) = self.scoring.take() else {
            return Ok(());
        };
        let scores = gpu.wait_read(pending)?;
        let _region = gpu.region("RAS selection");
        let sel = self.planner.select(i, &scores)?;
        self.merge_state = Some((v_hat, gpu.upload_u32(&sel.dropped, &[self.batch, self.n])?));
        Ok(())
    }

    /// Records and submits step `next`'s work that does not depend on its
    /// token selection ([`Dit::prepare`]), keeping it for that step.
    fn prepare_next(&mut self, gpu: &Gpu, model: &dyn Dit, next: usize) -> Result<()> {
        if next >= self.steps() {
            return Ok(());
        }
        let x_in = self.model_input(gpu)?;
        let memo = RunMemo::default();
        let timestep = vec![model.model_timestep(self.scheduler.timesteps[next]); self.rows];
        let call = DitCall {
            latents: &x_in,
            timestep: &timestep,
            cond: &self.cond,
            active: None,
            cache: None,
            memo: Memos {
                run: Some(&self.memo),
                step: Some(&memo),
            },
            precision: self.precision,
        };
        model.prepare(gpu, &call)?;
        gpu.flush()?;
        self.prepared = Some((x_in, memo));
        Ok(())
    }

    /// Steps done so far.
    pub fn current_step(&self) -> usize {
        self.step
    }

    /// An error naming the first step and stage that saw a NaN or an
    /// infinity, once the step's flag read-back is in.
    fn check_finite(&mut self, gpu: &Gpu) -> Result<()> {
        let Some(pending) = self.finite_read.take() else {
            return Ok(());
        };
        let code = gpu.wait_read_u32(pending)?[0];
        if code == CLEAN {
            return Ok(());
        }
        let (step, stage) = (
            code >> 1,
            if code & 1 == 0 {
                "the transformer output"
            } else {
                "the latents"
            },
        );
        Err(Error::NonFinite {
            what: format!("{stage} at step {} of {}", step + 1, self.steps()),
        })
    }

    /// Checks the last step's values (waiting for them) and returns the
    /// result so far; an error if a step produced a NaN or an infinity.
    pub fn finish_checked(&mut self, gpu: &Gpu) -> Result<SampleOutput> {
        self.check_finite(gpu)?;
        Ok(self.finish())
    }

    /// The result so far; frees the K/V cache and merge state.
    pub fn finish(&mut self) -> SampleOutput {
        self.cache = None;
        self.memo = RunMemo::default();
        self.prepared = None;
        self.scoring = None;
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
    model: &dyn Dit,
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
    denoiser.finish_checked(gpu)
}
