//! Rotary position embedding (`shaders/rope.wgsl`), with the rotated pairs
//! interleaved (Lumina) or split into halves (transformers' `rotate_half`).

use bytemuck::{Pod, Zeroable};

use super::{expect_dtype, groups, storage_type, u32_of};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Kernel, Tensor};

const OP: &str = "rope";

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RopeParams {
    pairs: u32,
    half: u32,
    heads: u32,
    table_rows: u32,
}

/// Which elements of a head form rotation pair `j` (of `D/2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopePairs {
    /// `(2j, 2j + 1)`: diffusers' `apply_rotary_emb(use_real=False)` (Lumina).
    Interleaved,
    /// `(j, j + D/2)`: transformers' `rotate_half` (Gemma, Llama), whose
    /// duplicated `[freqs, freqs]` tables hold each angle once here.
    Halves,
}

/// Rotates each pair `(x[2j], x[2j+1])` of `x [B, L, H, D]` by the angle
/// whose cosine and sine are `cos[.., t, j]`, `sin[.., t, j]`: the complex
/// product `(x[2j] + i·x[2j+1])·(cos + i·sin)`. Tables are `[L, D/2]`
/// (shared by every batch row) or `[B, L, D/2]` (one per batch row, e.g.
/// the positions of each row's active tokens); heads share them. Returns a
/// new tensor.
pub fn rope(gpu: &Gpu, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    rope_pairs(gpu, x, cos, sin, RopePairs::Interleaved)
}

/// [`rope`] with the pair layout given: pair `j` is `(x[a], x[b])` with
/// `(a, b)` from [`RopePairs`], rotated as the complex number `x[a] + i·x[b]`.
pub fn rope_pairs(
    gpu: &Gpu,
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    pairs_layout: RopePairs,
) -> Result<Tensor> {
    expect_dtype(OP, x, &[DType::F32, DType::F16])?;
    for t in [cos, sin] {
        expect_dtype(OP, t, &[DType::F32])?;
    }
    let &[b, l, h, d] = x.shape() else {
        return Err(Error::shape(
            OP,
            format!("x must be [batch, len, heads, head_dim], got {:?}", x.shape()),
        ));
    };
    if !d.is_multiple_of(2) {
        return Err(Error::shape(
            OP,
            format!("head dim {d} is odd; rotary pairs need it even"),
        ));
    }
    let per_batch = cos.shape().len() == 3;
    for (name, t) in [("cos", cos), ("sin", sin)] {
        if t.shape() != [l, d / 2] && t.shape() != [b, l, d / 2] {
            return Err(Error::shape(
                OP,
                format!(
                    "{name} table must be [len, head_dim / 2] = {:?} or [batch, len, head_dim / 2] = {:?}, \
                     got {:?}",
                    [l, d / 2],
                    [b, l, d / 2],
                    t.shape()
                ),
            ));
        }
    }
    if sin.shape() != cos.shape() {
        return Err(Error::shape(
            OP,
            format!("cos {:?} and sin {:?} tables differ", cos.shape(), sin.shape()),
        ));
    }
    let out = gpu.empty(x.shape(), x.dtype())?;
    let pairs = b * l * h * d / 2;
    if pairs == 0 {
        return Ok(out);
    }
    let params = RopeParams {
        pairs: u32_of(OP, pairs)?,
        half: u32_of(OP, d / 2)?,
        heads: u32_of(OP, h)?,
        table_rows: u32_of(OP, if per_batch { b * l } else { l })?,
    };
    u32_of(OP, x.numel())?;
    gpu.dispatch(
        &Kernel::new("rope")
            .template("ACT_T", storage_type(gpu, OP, x)?)
            .constant("HALVES", (pairs_layout == RopePairs::Halves) as u32),
        &[x.arg()?, cos.arg()?, sin.arg()?],
        &[out.arg()?],
        bytemuck::bytes_of(&params),
        groups(pairs, 256)?,
    )?;
    Ok(out)
}
