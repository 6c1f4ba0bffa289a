//! The per-element part of a sampling step (`shaders/sampler.wgsl`): CFG
//! combine (either batch order, some channels only, negated), RAS merge of cached velocity for dropped tokens, Euler update.

use bytemuck::{Pod, Zeroable};

use super::{expect_dtype, groups, u32_of};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Kernel, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SamplerParams {
    total: u32,
    c: u32,
    h: u32,
    w: u32,
    ps: u32,
    guidance: f32,
    dsigma: f32,
    vc: u32,
    guided: u32,
}

/// How the model output becomes the velocity (model-spec §C.4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Combine {
    /// CFG scale; `None` = the output holds one row per image.
    pub guidance: Option<f32>,
    /// CFG rows are `[cond × B, uncond × B]` (else uncond first).
    pub cond_first: bool,
    /// Leading channels that are guided; the others take the conditional
    /// prediction. At least the latent channel count guides them all.
    pub guided_channels: usize,
    /// Negate the combined prediction (a model predicting data − noise).
    pub negate: bool,
}

impl Combine {
    /// Plain CFG over every channel, unconditional rows first (SD3).
    pub fn cfg(guidance: Option<f32>) -> Combine {
        Combine {
            guidance,
            cond_first: false,
            guided_channels: usize::MAX,
            negate: false,
        }
    }
}

/// Cached velocity and the tokens that use it this step.
pub struct Merge<'a> {
    /// `[B, C, H, W]`: the merged velocity saved at the last selection.
    pub v_cache: &'a Tensor,
    /// `[B, tokens]` u32, 1 = dropped.
    pub dropped: &'a Tensor,
    pub patch: usize,
}

/// `x [B, C, H, W]` and model output `v` (`[2B, C_v, H, W]` when guided,
/// else `[B, C_v, H, W]`, `C_v ≥ C`; only the first C channels are read)
/// → `(x_next, v_hat)`.
pub fn euler_step(
    gpu: &Gpu,
    x: &Tensor,
    v: &Tensor,
    combine: Combine,
    dsigma: f32,
    merge: Option<Merge>,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "euler_step";
    expect_dtype(OP, x, &[DType::F32])?;
    expect_dtype(OP, v, &[DType::F32])?;
    let &[b, c, h, w] = x.shape() else {
        return Err(Error::shape(
            OP,
            format!("latents must be [B, C, H, W], got {:?}", x.shape()),
        ));
    };
    let rows = if combine.guidance.is_some() { 2 * b } else { b };
    let vc = v.shape().get(1).copied().unwrap_or(0);
    if v.shape().len() != 4 || v.shape()[0] != rows || vc < c || v.shape()[2..] != [h, w] {
        return Err(Error::shape(
            OP,
            format!("model output {:?} should be [{rows}, ≥ {c}, {h}, {w}]", v.shape()),
        ));
    }
    let patch = merge.as_ref().map_or(1, |m| m.patch);
    if let Some(m) = &merge {
        let tokens = (h / patch.max(1)) * (w / patch.max(1));
        if patch == 0
            || h % patch != 0
            || w % patch != 0
            || m.v_cache.shape() != x.shape()
            || m.dropped.shape() != [b, tokens]
        {
            return Err(Error::shape(
                OP,
                "v_cache must match the latents and dropped must be [B, tokens]",
            ));
        }
    }
    let x_next = gpu.empty(x.shape(), DType::F32)?;
    let v_hat = gpu.empty(x.shape(), DType::F32)?;
    let params = SamplerParams {
        total: u32_of(OP, x.numel())?,
        c: u32_of(OP, c)?,
        h: u32_of(OP, h)?,
        w: u32_of(OP, w)?,
        ps: u32_of(OP, patch)?,
        guidance: combine.guidance.unwrap_or(1.0),
        dsigma,
        vc: u32_of(OP, vc)?,
        guided: u32_of(OP, combine.guided_channels.min(c))?,
    };
    let kernel = Kernel::new("sampler")
        .constant("CFG", combine.guidance.is_some() as u32)
        .constant("MERGE", merge.is_some() as u32)
        .constant("COND_FIRST", combine.cond_first as u32)
        .constant("NEGATE", combine.negate as u32);
    let (cache, dropped) = match &merge {
        Some(m) => (m.v_cache.arg()?, m.dropped.arg()?),
        None => (x.arg()?, x.arg()?),
    };
    let inputs = [x.arg()?, v.arg()?, cache, dropped];
    gpu.dispatch(
        &kernel,
        &inputs,
        &[x_next.arg()?, v_hat.arg()?],
        bytemuck::bytes_of(&params),
        groups(x.numel(), 256)?,
    )?;
    Ok((x_next, v_hat))
}
