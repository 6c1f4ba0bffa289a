//! `ras bench sd3`: the dense SD3 transformer forward at SD3-medium widths
//! with synthetic weights, so no checkpoint is needed.

use super::{filler, time, Figure};
use crate::error::Result;
use crate::gpu::{DType, Gpu, Profile};
use crate::models::sd3::tokens::TokenPlan;
use crate::models::sd3::{Sd3Config, Sd3Inputs, Sd3Transformer};
use crate::models::{Memos, Precision};
use crate::weights::Weights;

/// Text tokens of SD3's prompt embedding (77 CLIP + 256 T5).
pub const TEXT_TOKENS: usize = 333;

/// One dense forward of an SD3-medium-width transformer with `layers`
/// blocks on a `size`×`size` image (latent size/8), f16 weights. With
/// `profile`, one more forward (not in the timing) runs under the kernel
/// profiler as one "forward" step.
pub fn bench_sd3(
    gpu: &Gpu,
    layers: usize,
    size: usize,
    batch: usize,
    reps: usize,
    profile: bool,
    precision: Precision,
) -> Result<(Figure, Option<Profile>)> {
    let cfg = Sd3Config::sd3_medium(layers);
    let model = Sd3Transformer::load(gpu, &Weights::synthetic(DType::F16), cfg.clone())?;
    let side = size / 8;
    let n_img = (side / cfg.patch_size) * (side / cfg.patch_size);
    let x = gpu.upload_f32(&filler(batch * 16 * side * side, 3), &[batch, 16, side, side])?;
    let ctx = gpu.upload_f32(
        &filler(batch * TEXT_TOKENS * 4096, 4),
        &[batch, TEXT_TOKENS, 4096],
    )?;
    let pooled = gpu.upload_f32(&filler(batch * 2048, 5), &[batch, 2048])?;
    let t = vec![500.0; batch];
    let inputs = Sd3Inputs {
        hidden_states: &x,
        encoder_hidden_states: &ctx,
        pooled_projections: &pooled,
        timestep: &t,
        text_weights: None,
    };
    let (b, n, l) = model.token_counts(&inputs)?;
    let forward = || {
        let plan = TokenPlan::dense(gpu, b, n, l)?;
        model.forward_planned(gpu, &inputs, &plan, None, Memos::default(), precision)
    };
    let seconds = time(gpu, reps, forward)?;
    let figure = Figure {
        name: format!(
            "sd3 forward {layers} layers {size}px batch {batch} f16 weights {} activations",
            precision.name()
        ),
        seconds,
        flops: cfg.forward_flops(batch, n_img, TEXT_TOKENS),
    };
    let profile = match profile {
        true => {
            gpu.start_profile()?;
            let step = gpu.step_scope("forward");
            drop(forward()?);
            gpu.flush()?;
            drop(step);
            Some(gpu.take_profile()?)
        }
        false => None,
    };
    Ok((figure, profile))
}
