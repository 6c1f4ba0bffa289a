//! `ras forward` for Lumina: one transformer call from and to safetensors
//! files, with diffusers' argument names as keys.

use std::path::Path;

use super::model::LuminaTransformer;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::dit::{Conditioning, DitCall};
use crate::weights::{load_f32, save, Values, Weights};

/// Reads `hidden_states [B, C, H, W]`, `timestep [B]` (Lumina convention:
/// 0 = noise, as the model receives it), `encoder_hidden_states [B, L, D]`
/// and `encoder_mask [B, L]` (int64 or float, 1 = real token) from
/// `inputs` (other keys are ignored), runs `model`, writes `sample`
/// `[B, 2C, H, W]` to `output`.
pub fn forward_files(gpu: &Gpu, model: &LuminaTransformer, inputs: &Path, output: &Path) -> Result<()> {
    let file = Weights::from_files(&[inputs.to_owned()])?;
    let load = |name: &str| load_f32(&file, name);
    let (x, xs) = load("hidden_states")?;
    let (t, _) = load("timestep")?;
    let (cap, cs) = load("encoder_hidden_states")?;
    let (mask, _) = load("encoder_mask")?;
    let latents = gpu.upload_f32(&x, &xs)?;
    let cond = Conditioning {
        tokens: gpu.upload_f32(&cap, &cs)?,
        pooled: None,
        mask: Some(mask),
        text_weights: None,
    };
    let call = DitCall {
        latents: &latents,
        timestep: &t,
        cond: &cond,
        active: None,
        cache: None,
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
