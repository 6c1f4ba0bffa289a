//! adaLN modulation and gated residual (`shaders/modulate.wgsl`).
//!
//! The conditioning embedding `emb [B, k·D]` holds `k` vectors per batch
//! (for SD3's AdaLayerNormZero: shift, scale, gate for attention and for the
//! MLP); a `Chunk` names one of them without copying it out.

use bytemuck::{Pod, Zeroable};

use super::{expect_dtype, groups, storage_type, u32_of};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Kernel, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ModulateParams {
    total: u32,
    per_batch: u32,
    d: u32,
    emb_stride: u32,
    off_a: u32,
    off_b: u32,
}

/// Vector `index` of the `emb [B, count·D]` conditioning tensor.
#[derive(Clone, Copy, Debug)]
pub struct Chunk {
    pub index: usize,
    pub count: usize,
}

fn params(op: &'static str, x: &Tensor, emb: &Tensor, chunks: &[Chunk]) -> Result<ModulateParams> {
    expect_dtype(op, x, &[DType::F32, DType::F16])?;
    expect_dtype(op, emb, &[DType::F32])?;
    let &[b, .., d] = x.shape() else {
        return Err(Error::shape(op, format!("x {:?} must be [B, .., D]", x.shape())));
    };
    let count = chunks[0].count;
    if emb.shape() != [b, count * d] || chunks.iter().any(|c| c.count != count || c.index >= count) {
        return Err(Error::shape(
            op,
            format!(
                "emb {:?} is not [{b}, {count}×{d}] for x {:?} (chunks {chunks:?})",
                emb.shape(),
                x.shape()
            ),
        ));
    }
    Ok(ModulateParams {
        total: u32_of(op, x.numel())?,
        per_batch: u32_of(op, x.numel() / b.max(1))?,
        d: u32_of(op, d)?,
        emb_stride: u32_of(op, count * d)?,
        off_a: u32_of(op, chunks[0].index * d)?,
        off_b: u32_of(op, chunks.get(1).map_or(0, |c| c.index * d))?,
    })
}

fn launch(gpu: &Gpu, op: u32, x: &Tensor, y: &Tensor, emb: &Tensor, p: ModulateParams) -> Result<Tensor> {
    // The output keeps x's dtype (f16 activations stay f16).
    let out = gpu.empty(x.shape(), x.dtype())?;
    let kernel = Kernel::new("modulate")
        .template("ACT_T", storage_type(gpu, "modulate", x)?)
        .constant("OP", op);
    gpu.dispatch(
        &kernel,
        &[x.arg()?, y.arg()?, emb.arg()?],
        &[out.arg()?],
        bytemuck::bytes_of(&p),
        groups(x.numel(), 256)?,
    )?;
    Ok(out)
}

/// `x · (1 + scale) + shift` with per-batch `shift`, `scale` taken from `emb`.
pub fn modulate(gpu: &Gpu, x: &Tensor, emb: &Tensor, shift: Chunk, scale: Chunk) -> Result<Tensor> {
    let p = params("modulate", x, emb, &[shift, scale])?;
    launch(gpu, 0, x, x, emb, p)
}

/// `x · (1 + scale)` with a per-batch `scale` taken from `emb` (Lumina's
/// RMSNormZero and final norm have no shift).
pub fn scale_only(gpu: &Gpu, x: &Tensor, emb: &Tensor, scale: Chunk) -> Result<Tensor> {
    let p = params("scale_only", x, emb, &[scale])?;
    launch(gpu, 2, x, x, emb, p)
}

/// `x + gate · y` with a per-batch `gate` taken from `emb`.
pub fn gated_residual(gpu: &Gpu, x: &Tensor, y: &Tensor, emb: &Tensor, gate: Chunk) -> Result<Tensor> {
    gated(gpu, "gated_residual", 1, x, y, emb, gate)
}

/// `x + tanh(gate) · y` (Lumina squashes its gates).
pub fn tanh_gated_residual(gpu: &Gpu, x: &Tensor, y: &Tensor, emb: &Tensor, gate: Chunk) -> Result<Tensor> {
    gated(gpu, "tanh_gated_residual", 3, x, y, emb, gate)
}

fn gated(
    gpu: &Gpu,
    name: &'static str,
    op: u32,
    x: &Tensor,
    y: &Tensor,
    emb: &Tensor,
    gate: Chunk,
) -> Result<Tensor> {
    if x.shape() != y.shape() {
        return Err(Error::shape(
            name,
            format!("x {:?} vs y {:?}", x.shape(), y.shape()),
        ));
    }
    if y.dtype() != x.dtype() {
        return Err(Error::DType {
            op: name,
            dtype: y.dtype().name().into(),
            message: format!("y must have x's dtype ({})", x.dtype().name()),
        });
    }
    let p = params(name, x, emb, &[gate])?;
    launch(gpu, op, x, y, emb, p)
}
