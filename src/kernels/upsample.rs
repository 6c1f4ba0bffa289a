//! Nearest-neighbour upsampling (`shaders/upsample.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::{expect_dtype, groups, u32_of};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Kernel, Tensor};

const OP: &str = "upsample_nearest2x";

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct UpsampleParams {
    n: u32,
    w: u32,
}

/// `x` [B, C, H, W] f32 → [B, C, 2H, 2W], each value copied into a 2 × 2
/// block, as `F.interpolate(scale_factor=2, mode="nearest")`.
pub fn upsample_nearest2x(gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
    expect_dtype(OP, x, &[DType::F32])?;
    let &[b, c, h, w] = x.shape() else {
        return Err(Error::shape(
            OP,
            format!("input must be [B, C, H, W], got {:?}", x.shape()),
        ));
    };
    if x.numel() == 0 {
        return Err(Error::shape(
            OP,
            format!("input {:?} has an empty dimension", x.shape()),
        ));
    }
    let out = gpu.empty(&[b, c, 2 * h, 2 * w], DType::F32)?;
    u32_of(OP, out.numel())?;
    let params = UpsampleParams {
        n: u32_of(OP, x.numel())?,
        w: u32_of(OP, w)?,
    };
    gpu.dispatch(
        &Kernel::new("upsample"),
        &[x.arg()?],
        &[out.arg()?],
        bytemuck::bytes_of(&params),
        groups(x.numel(), 256)?,
    )?;
    Ok(out)
}
