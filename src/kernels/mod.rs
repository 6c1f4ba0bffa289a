//! Host launchers, one file per kernel family, each named like its shader
//! (`shaders/<family>.wgsl`). A launcher checks shapes and dtypes, allocates
//! the output and records the dispatch; nothing runs until a flush.

pub mod attention;
pub mod attention_coopmat;
pub mod attention_tiled;
pub mod conv2d;
pub mod elementwise;
pub mod finite;
pub mod linear;
pub mod metric;
pub mod modulate;
pub mod norm;
pub mod patch;
pub mod rope;
pub mod rows;
pub mod sampler;
pub mod upsample;
pub mod variant;

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Tensor};

/// Workgroups needed to cover `n` items with `per_group` items each.
pub(crate) fn groups(n: usize, per_group: usize) -> Result<u32> {
    u32::try_from(n.div_ceil(per_group))
        .map_err(|_| Error::Invalid(format!("{n} elements is too many for one launch")))
}

/// u32 for a size that goes into a shader's params.
pub(crate) fn u32_of(op: &'static str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::shape(op, format!("size {n} does not fit in 32 bits")))
}

pub(crate) fn expect_dtype(op: &'static str, t: &Tensor, allowed: &[DType]) -> Result<()> {
    if allowed.contains(&t.dtype()) {
        return Ok(());
    }
    Err(Error::DType {
        op,
        dtype: t.dtype().name().into(),
        message: format!(
            "expected one of {:?}",
            allowed.iter().map(|d| d.name()).collect::<Vec<_>>()
        ),
    })
}

/// Value of a storage-type template token (`gpu::STORAGE_TYPES`) for an
/// activation tensor: 0 for f32, 1 for f16 (where the device has shader-f16).
pub(crate) fn storage_type(gpu: &Gpu, op: &'static str, t: &Tensor) -> Result<u32> {
    expect_dtype(op, t, &[DType::F32, DType::F16])?;
    if t.dtype() == DType::F32 {
        return Ok(0);
    }
    if !gpu.capabilities().shader_f16 {
        return Err(Error::DType {
            op,
            dtype: "f16".into(),
            message: "f16 activations need the shader-f16 feature, which this adapter lacks; use f32".into(),
        });
    }
    Ok(1)
}

/// Shader code of a dtype in `decode()` (shaders/common.wgsl).
pub(crate) fn dtype_code(op: &'static str, t: &Tensor) -> Result<u32> {
    expect_dtype(op, t, &[DType::F32, DType::F16, DType::BF16])?;
    Ok(match t.dtype() {
        DType::F32 => 0,
        DType::F16 => 1,
        _ => 2,
    })
}
