//! `ras forward` and `ras sample`: one transformer call, or the sampling
//! loop, from and to safetensors files with diffusers' names as keys, for
//! any [`Dit`].

use std::ops::ControlFlow;
use std::path::Path;

use super::sample::{sample, SampleRequest, StepInfo};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::models::{Conditioning, Dit, DitCall, Precision};
use crate::ras::RasConfig;
use crate::weights::{load_f32, save, Values, Weights};

/// Reads one call's inputs under diffusers' argument names —
/// `hidden_states [B, C, H, W]`, `timestep [B]` (in the model's own
/// convention, as diffusers' model receives it), `encoder_hidden_states
/// [B, L, D]` and the model's extra conditioning when present
/// (`pooled_projections [B, P]` for SD3, `encoder_mask [B, L]`, int64 or
/// float with 1 = real token, for Lumina); other keys are ignored — runs
/// `model` densely and writes its `sample` to `output`.
pub fn forward_files(gpu: &Gpu, model: &dyn Dit, inputs: &Path, output: &Path) -> Result<()> {
    let file = Weights::from_files(&[inputs.to_owned()])?;
    let upload = |name: &str| -> Result<Tensor> {
        let (values, shape) = load_f32(&file, name)?;
        gpu.upload_f32(&values, &shape)
    };
    let (timestep, _) = load_f32(&file, "timestep")?;
    let cond = Conditioning {
        tokens: upload("encoder_hidden_states")?,
        pooled: optional(&file, "pooled_projections", upload)?,
        mask: optional(&file, "encoder_mask", |name| Ok(load_f32(&file, name)?.0))?,
        text_weights: None,
    };
    let call = DitCall {
        latents: &upload("hidden_states")?,
        timestep: &timestep,
        cond: &cond,
        active: None,
        cache: None,
        memo: Default::default(),
        precision: Precision::F32,
    };
    let sample = model.forward(gpu, &call)?;
    save(
        output,
        &[(
            "sample".into(),
            sample.shape().to_vec(),
            Values::F32(gpu.read_f32(&sample)?),
        )],
    )
}

/// Reads the `latents_init` tensor `[B, C, H, W]` of a safetensors file
/// (`ras generate --latents-init`) as f32 values and their shape. Refuses
/// another rank, an empty dimension and NaN or infinite values, which would
/// only come out as a black image steps later.
pub fn read_latents_init(path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
    let file = Weights::from_files(&[path.to_owned()])?;
    let (values, shape) = load_f32(&file, "latents_init")?;
    let bad = |message: String| {
        Err(Error::Invalid(format!(
            "latents_init in {}: {message}; write it as [images, channels, height, width] noise",
            path.display()
        )))
    };
    if shape.len() != 4 || shape.contains(&0) {
        return bad(format!(
            "has shape {shape:?}, not [B, C, H, W] with every size ≥ 1"
        ));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return bad(format!("value {i} is {}", values[i]));
    }
    Ok((values, shape))
}

/// `read(name)` when the file has tensor `name`.
fn optional<T>(file: &Weights, name: &str, read: impl Fn(&str) -> Result<T>) -> Result<Option<T>> {
    file.contains(name).then(|| read(name)).transpose()
}

/// Settings of a file-to-file sampling run.
pub struct SampleFiles<'a> {
    pub inputs: &'a Path,
    pub output: &'a Path,
    pub steps: usize,
    pub guidance: f32,
    pub shift: f64,
    pub ras: RasConfig,
    pub precision: Precision,
    /// Also write `active_step_{i}` [B, n_active] (i32) for every RAS step.
    pub save_active: bool,
}

/// Reads `latents_init`, `prompt_embeds` and `negative_prompt_embeds`, plus
/// the conditioning the model has beside them when present
/// (`pooled_prompt_embeds` / `negative_pooled_prompt_embeds` for SD3,
/// `prompt_attention_mask` / `negative_prompt_attention_mask` for Lumina);
/// writes `latents_final` (and the active sets). Returns the K/V-cache
/// bytes.
pub fn sample_files(
    gpu: &Gpu,
    model: &dyn Dit,
    job: &SampleFiles,
    mut on_step: impl FnMut(&StepInfo),
) -> Result<u64> {
    let file = Weights::from_files(&[job.inputs.to_owned()])?;
    let upload = |name: &str| -> Result<Tensor> {
        let (values, shape) = load_f32(&file, name)?;
        gpu.upload_f32(&values, &shape)
    };
    let conditioning = |prefix: &str| -> Result<Conditioning> {
        Ok(Conditioning {
            tokens: upload(&format!("{prefix}prompt_embeds"))?,
            pooled: optional(&file, &format!("{prefix}pooled_prompt_embeds"), upload)?,
            mask: optional(&file, &format!("{prefix}prompt_attention_mask"), |name| {
                Ok(load_f32(&file, name)?.0)
            })?,
            text_weights: None,
        })
    };
    let latents = upload("latents_init")?;
    let cond = conditioning("")?;
    let uncond = crate::sampling::guided(job.guidance)
        .then(|| conditioning("negative_"))
        .transpose()?;
    let request = SampleRequest {
        latents: &latents,
        cond: &cond,
        uncond: uncond.as_ref(),
        steps: job.steps,
        guidance: job.guidance,
        shift: job.shift,
        ras: job.ras.clone(),
        precision: job.precision,
    };
    let out = sample(gpu, model, &request, |s| {
        on_step(s);
        ControlFlow::Continue(())
    })?;
    let mut tensors = vec![(
        "latents_final".to_string(),
        out.latents.shape().to_vec(),
        Values::F32(gpu.read_f32(&out.latents)?),
    )];
    if job.save_active {
        for (step, active) in &out.active {
            let shape = vec![active.len(), active.first().map_or(0, Vec::len)];
            let values = active.iter().flatten().map(|&t| t as i32).collect();
            tensors.push((format!("active_step_{step}"), shape, Values::I32(values)));
        }
    }
    save(job.output, &tensors)?;
    Ok(out.kv_cache_bytes)
}
