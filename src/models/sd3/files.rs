//! `ras forward`: one transformer call from and to safetensors files, with
//! diffusers' argument names as keys.

use std::path::Path;

use super::model::{Sd3Inputs, Sd3Transformer};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::weights::{load_f32, save, Values, Weights};

/// Reads `hidden_states`, `encoder_hidden_states`, `pooled_projections` and
/// `timestep` from `inputs`, runs `model`, writes `sample` to `output`.
pub fn forward_files(gpu: &Gpu, model: &Sd3Transformer, inputs: &Path, output: &Path) -> Result<()> {
    let file = Weights::from_files(&[inputs.to_owned()])?;
    let load = |name: &str| load_f32(&file, name);
    let (x, xs) = load("hidden_states")?;
    let (ctx, cs) = load("encoder_hidden_states")?;
    let (pooled, ps) = load("pooled_projections")?;
    let (t, _) = load("timestep")?;
    let hidden_states = gpu.upload_f32(&x, &xs)?;
    let encoder_hidden_states = gpu.upload_f32(&ctx, &cs)?;
    let pooled_projections = gpu.upload_f32(&pooled, &ps)?;
    let inputs = Sd3Inputs {
        hidden_states: &hidden_states,
        encoder_hidden_states: &encoder_hidden_states,
        pooled_projections: &pooled_projections,
        timestep: &t,
        text_weights: None,
    };
    let sample = model.forward(gpu, &inputs)?;
    save(
        output,
        &[(
            "sample".into(),
            sample.shape().to_vec(),
            Values::F32(gpu.read_f32(&sample)?),
        )],
    )
}
