//! Elementwise ops (`shaders/elementwise.wgsl`): add and mul with
//! broadcasting, scale, GELU (tanh and erf), SiLU.

use bytemuck::{Pod, Zeroable};

use super::{expect_dtype, groups, u32_of};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Kernel, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ElementwiseParams {
    n: u32,
    b_inner: u32,
    b_period: u32,
    b_stride: u32,
    alpha: f32,
    beta: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    GeluTanh,
    GeluErf,
    Silu,
    /// `x · sigmoid(1.702 x)` (CLIP-L's `quick_gelu`).
    QuickGelu,
}

const OP_ADD: u32 = 0;
const OP_MUL: u32 = 1;
const OP_AFFINE: u32 = 2;

/// How `b` repeats across `a`: `(inner, period, stride)` as in the shader.
/// Accepted: equal shapes, `b = [D]` against `[.., D]`, `b = [B, D]`
/// (or `[B, 1, D]`) against `[B, .., D]`, and `b = [N, D]` repeated over
/// the batch of `a = [B, N, D]` (a position table).
fn broadcast(op: &'static str, a: &[usize], b: &[usize]) -> Result<(usize, usize, usize)> {
    let n: usize = a.iter().product();
    let d = *a.last().unwrap_or(&1);
    let bn: usize = b.iter().product();
    if a == b {
        return Ok((n, n, 0));
    }
    if b.len() == 1 && b[0] == d {
        return Ok((d, n, 0));
    }
    if a.len() >= 2 && b == &a[1..] {
        return Ok((bn, n, 0));
    }
    let batch = a.first().copied().unwrap_or(1);
    if b.first() == Some(&batch) && b.last() == Some(&d) && bn == batch * d && a.len() >= 2 {
        return Ok((d, n / batch, d));
    }
    Err(Error::shape(op, format!("cannot broadcast {b:?} onto {a:?}")))
}

fn launch(gpu: &Gpu, op: u32, a: &Tensor, b: &Tensor, params: ElementwiseParams) -> Result<Tensor> {
    let out = gpu.empty(a.shape(), DType::F32)?;
    let kernel = Kernel::new("elementwise").constant("OP", op);
    gpu.dispatch(
        &kernel,
        &[a.arg()?, b.arg()?],
        &[out.arg()?],
        bytemuck::bytes_of(&params),
        groups(a.numel(), 256)?,
    )?;
    Ok(out)
}

fn binary(gpu: &Gpu, op_name: &'static str, op: u32, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    expect_dtype(op_name, a, &[DType::F32])?;
    expect_dtype(op_name, b, &[DType::F32])?;
    let (inner, period, stride) = broadcast(op_name, a.shape(), b.shape())?;
    let params = ElementwiseParams {
        n: u32_of(op_name, a.numel())?,
        b_inner: u32_of(op_name, inner)?,
        b_period: u32_of(op_name, period)?,
        b_stride: u32_of(op_name, stride)?,
        alpha: 0.0,
        beta: 0.0,
    };
    launch(gpu, op, a, b, params)
}

/// `a + b`, with `b` broadcast as described in [`broadcast`].
pub fn add(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(gpu, "add", OP_ADD, a, b)
}

/// `a * b`, with `b` broadcast as described in [`broadcast`].
pub fn mul(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(gpu, "mul", OP_MUL, a, b)
}

fn unary_op(gpu: &Gpu, name: &'static str, op: u32, x: &Tensor, alpha: f32, beta: f32) -> Result<Tensor> {
    expect_dtype(name, x, &[DType::F32])?;
    let n = u32_of(name, x.numel())?;
    let params = ElementwiseParams {
        n,
        b_inner: 1,
        b_period: 1,
        b_stride: 0,
        alpha,
        beta,
    };
    launch(gpu, op, x, x, params)
}

/// `x * alpha`.
pub fn scale(gpu: &Gpu, x: &Tensor, alpha: f32) -> Result<Tensor> {
    unary_op(gpu, "scale", OP_AFFINE, x, alpha, 0.0)
}

/// `x * alpha + beta` (the VAE's latent unscaling).
pub fn affine(gpu: &Gpu, x: &Tensor, alpha: f32, beta: f32) -> Result<Tensor> {
    unary_op(gpu, "affine", OP_AFFINE, x, alpha, beta)
}

pub fn unary(gpu: &Gpu, f: Unary, x: &Tensor) -> Result<Tensor> {
    let op = match f {
        Unary::GeluTanh => 3,
        Unary::GeluErf => 4,
        Unary::Silu => 5,
        Unary::QuickGelu => 6,
    };
    unary_op(gpu, "unary", op, x, 0.0, 0.0)
}
