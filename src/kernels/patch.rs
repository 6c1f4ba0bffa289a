//! DiT patch layouts (`shaders/patch.wgsl`): latents `[B, C, H, W]` to token
//! rows and back. Patchify's channel-major feature order matches a Conv2d
//! weight flattened to `[D, C·p·p]`, so the patch embedding is then a plain
//! linear; unpatchify reads diffusers' channel-minor output order.

use bytemuck::{Pod, Zeroable};

use super::{expect_dtype, groups, u32_of};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Kernel, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PatchParams {
    total: u32,
    c: u32,
    h: u32,
    w: u32,
    ps: u32,
}

fn check_grid(op: &'static str, h: usize, w: usize, p: usize) -> Result<()> {
    if p == 0 || !h.is_multiple_of(p) || !w.is_multiple_of(p) {
        return Err(Error::shape(
            op,
            format!("{h}×{w} latent is not divisible into {p}×{p} patches"),
        ));
    }
    Ok(())
}

fn launch(gpu: &Gpu, entry: &'static str, x: &Tensor, out: Tensor, p: PatchParams) -> Result<Tensor> {
    let kernel = Kernel::new("patch").entry(entry);
    gpu.dispatch(
        &kernel,
        &[x.arg()?],
        &[out.arg()?],
        bytemuck::bytes_of(&p),
        groups(out.numel(), 256)?,
    )?;
    Ok(out)
}

/// `[B, C, H, W]` → `[B, (H/p)·(W/p), C·p·p]`, features channel-major.
pub fn patchify(gpu: &Gpu, x: &Tensor, p: usize) -> Result<Tensor> {
    const OP: &str = "patchify";
    expect_dtype(OP, x, &[DType::F32])?;
    let &[b, c, h, w] = x.shape() else {
        return Err(Error::shape(
            OP,
            format!("expected [B, C, H, W], got {:?}", x.shape()),
        ));
    };
    check_grid(OP, h, w, p)?;
    let out = gpu.empty(&[b, (h / p) * (w / p), c * p * p], DType::F32)?;
    let params = PatchParams {
        total: u32_of(OP, x.numel())?,
        c: u32_of(OP, c)?,
        h: u32_of(OP, h)?,
        w: u32_of(OP, w)?,
        ps: u32_of(OP, p)?,
    };
    launch(gpu, OP, x, out, params)
}

/// `[B, (H/p)·(W/p), p·p·C]` (features channel-minor) → `[B, C, H, W]`.
pub fn unpatchify(gpu: &Gpu, x: &Tensor, c: usize, h: usize, w: usize, p: usize) -> Result<Tensor> {
    const OP: &str = "unpatchify";
    expect_dtype(OP, x, &[DType::F32])?;
    check_grid(OP, h, w, p)?;
    let tokens = (h / p) * (w / p);
    let &[b, n, f] = x.shape() else {
        return Err(Error::shape(
            OP,
            format!("expected [B, tokens, features], got {:?}", x.shape()),
        ));
    };
    if n != tokens || f != c * p * p {
        return Err(Error::shape(
            OP,
            format!(
                "{:?} is not [B, {tokens}, {}] for a {c}×{h}×{w} latent",
                x.shape(),
                c * p * p
            ),
        ));
    }
    let out = gpu.empty(&[b, c, h, w], DType::F32)?;
    let params = PatchParams {
        total: u32_of(OP, out.numel())?,
        c: u32_of(OP, c)?,
        h: u32_of(OP, h)?,
        w: u32_of(OP, w)?,
        ps: u32_of(OP, p)?,
    };
    launch(gpu, OP, x, out, params)
}
