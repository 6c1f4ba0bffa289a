//! Linear layer (`shaders/linear.wgsl`): `y = x·Wᵀ + b` with PyTorch's
//! `[out_features, in_features]` weights in f32, f16 or bf16.

use bytemuck::{Pod, Zeroable};

use super::{dtype_code, groups, u32_of};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Kernel, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LinearParams {
    m: u32,
    n: u32,
    k: u32,
    n_total: u32,
    n_offset: u32,
    has_bias: u32,
    tiles_n: u32,
}

/// Output tile edge of one workgroup (8×8 invocations × 4×4 outputs).
const TILE: usize = 32;

/// `x [.., K]` times `weight [N, K]`ᵀ plus `bias [N]` → `[.., N]` (f32).
/// Weights split into several buffers (over the binding limit) run one
/// launch per chunk.
pub fn linear(gpu: &Gpu, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    const OP: &str = "linear";
    if x.dtype() != DType::F32 {
        return Err(Error::DType {
            op: OP,
            dtype: x.dtype().name().into(),
            message: "activations must be f32".into(),
        });
    }
    let code = dtype_code(OP, weight)?;
    let (k, m) = (x.cols(), x.rows());
    let &[n, wk] = weight.shape() else {
        return Err(Error::shape(
            OP,
            format!("weight must be [out, in], got {:?}", weight.shape()),
        ));
    };
    if wk != k {
        return Err(Error::shape(
            OP,
            format!(
                "input {:?} has {k} features but weight {:?} expects {wk}",
                x.shape(),
                weight.shape()
            ),
        ));
    }
    if let Some(b) = bias {
        if b.shape() != [n] || b.dtype() != weight.dtype() {
            return Err(Error::shape(
                OP,
                format!(
                    "bias {:?} {} does not match weight {:?} {}",
                    b.shape(),
                    b.dtype().name(),
                    weight.shape(),
                    weight.dtype().name()
                ),
            ));
        }
    }
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().unwrap_or(&mut 0) = n;
    if out_shape.is_empty() {
        out_shape.push(n);
    }
    let out = gpu.empty(&out_shape, DType::F32)?;
    if m == 0 || n == 0 {
        return Ok(out);
    }
    // The wide-load path needs every row to start on a 4-element boundary.
    let kernel = Kernel::new(OP)
        .constant("W_DTYPE", code)
        .constant("ALIGNED", (k % 4 == 0) as u32);
    let mut n_offset = 0;
    for c in 0..weight.num_chunks() {
        let rows = weight.chunk_rows(c);
        let tiles_n = rows.div_ceil(TILE);
        let params = LinearParams {
            m: u32_of(OP, m)?,
            n: u32_of(OP, rows)?,
            k: u32_of(OP, k)?,
            n_total: u32_of(OP, n)?,
            n_offset: u32_of(OP, n_offset)?,
            has_bias: bias.is_some() as u32,
            tiles_n: u32_of(OP, tiles_n)?,
        };
        let w = weight.chunk_arg(c);
        let b = match bias {
            Some(b) => b.arg()?,
            None => weight.chunk_arg(c),
        };
        let wg = groups(m.div_ceil(TILE) * tiles_n, 1)?;
        gpu.dispatch(
            &kernel,
            &[x.arg()?, w, b],
            &[out.arg()?],
            bytemuck::bytes_of(&params),
            wg,
        )?;
        n_offset += rows;
    }
    Ok(out)
}

/// Multiply-adds ×2 of one linear call, for GFLOP/s figures.
pub fn linear_flops(m: usize, n: usize, k: usize) -> f64 {
    2.0 * m as f64 * n as f64 * k as f64
}
