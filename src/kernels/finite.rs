//! Non-finite detection (`shaders/finite.wgsl`): records into a flag the
//! smallest code of the checks that saw a NaN or an infinity, so a whole
//! sampling run can be checked with one small read-back per step.

use bytemuck::{Pod, Zeroable};

use super::{groups, storage_type, u32_of};
use crate::error::{Error, Result};
use crate::gpu::{Cost, DType, Gpu, Kernel, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct FiniteParams {
    n: u32,
    code: u32,
}

/// The flag's value while no check has seen a non-finite value.
pub const CLEAN: u32 = u32::MAX;

/// A fresh flag `[1]` u32 holding [`CLEAN`].
pub fn new_flag(gpu: &Gpu) -> Result<Tensor> {
    gpu.upload_u32(&[CLEAN], &[1])
}

/// Lowers `flag` to `code` if `x` (f32 or f16) holds a NaN or an infinity.
pub fn check_finite(gpu: &Gpu, x: &Tensor, flag: &Tensor, code: u32) -> Result<()> {
    const OP: &str = "finite";
    if flag.dtype() != DType::U32 || flag.numel() != 1 {
        return Err(Error::shape(
            OP,
            format!("the flag must be one u32, got {:?}", flag.shape()),
        ));
    }
    if code == CLEAN {
        return Err(Error::Invalid(format!("{OP}: code {CLEAN} means clean")));
    }
    let n = x.numel();
    if n == 0 {
        return Ok(());
    }
    let kernel = Kernel::new("finite").template("ACT_T", storage_type(gpu, OP, x)?);
    let params = FiniteParams {
        n: u32_of(OP, n)?,
        code,
    };
    let cost = Cost::new(0.0, x.dtype().bytes(n) as f64);
    gpu.dispatch_costed(
        &kernel,
        &[x.arg()?],
        &[flag.arg()?],
        bytemuck::bytes_of(&params),
        groups(n, 256)?,
        cost,
    )
}
