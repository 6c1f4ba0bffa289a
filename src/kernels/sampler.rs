//! The per-element part of a sampling step (`shaders/sampler.wgsl`): CFG
//! combine, RAS merge of cached velocity for dropped tokens, Euler update.

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
}

/// Cached velocity and the tokens that use it this step.
pub struct Merge<'a> {
    /// `[B, C, H, W]`: the merged velocity saved at the last selection.
    pub v_cache: &'a Tensor,
    /// `[B, tokens]` u32, 1 = dropped.
    pub dropped: &'a Tensor,
    pub patch: usize,
}

/// `x [B, C, H, W]` and model output `v` (`[2B, ..]` uncond-then-cond when
/// `guidance` is given, else `[B, ..]`) → `(x_next, v_hat)`.
pub fn euler_step(
    gpu: &Gpu,
    x: &Tensor,
    v: &Tensor,
    guidance: Option<f32>,
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
    let rows = if guidance.is_some() { 2 * b } else { b };
    if v.shape() != [rows, c, h, w] {
        return Err(Error::shape(
            OP,
            format!("model output {:?} should be [{rows}, {c}, {h}, {w}]", v.shape()),
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
        guidance: guidance.unwrap_or(1.0),
        dsigma,
    };
    let kernel = Kernel::new("sampler")
        .constant("CFG", guidance.is_some() as u32)
        .constant("MERGE", merge.is_some() as u32);
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
