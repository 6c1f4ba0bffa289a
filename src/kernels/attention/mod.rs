//! Attention (`shaders/attention.wgsl`): `softmax(Q·Kᵀ·scale [+ bias] [+ key
//! bias] [+ causal mask])·V` per batch and head with an online softmax, so
//! memory stays linear in the sequence lengths. Grouped-query heads and
//! strided views (Q, K and V as slices of one fused projection) are
//! supported.

use bytemuck::{Pod, Zeroable};

mod wide;

use super::variant::{missing_features, variants};
use super::{attention_coopmat, attention_tiled};
use super::{expect_dtype, groups, storage_type, u32_of};
use crate::error::{Error, Result};
use crate::gpu::{Cost, DType, Gpu, Kernel, Tensor, Variant};
use wide::attention_wide;

/// Largest head dimension the shader holds in registers (`MAX_D`); wider
/// single heads take [`attention_wide`].
pub const MAX_HEAD_DIM: usize = 128;
/// Queries per invocation, fixed by the shader's 4×4 tiles.
const QPT: usize = 4;
/// Invocations per workgroup (`WG`) the portable kernel may take, largest
/// first. A workgroup covers `QPT · WG` queries and lanes past the last
/// query repeat it, so 64 alone wasted most of a short sequence's work
/// (97 queries, a RAS step at ratio 0.25 on the demo model, used 97 of 256
/// query slots); see [`portable_wg`].
const WGS: [usize; 3] = [64, 32, 16];

/// The workgroup size for `lq` queries: the fewest query slots, the larger
/// size on ties (a GPU keeps whole warps busy). Each query is computed by
/// one lane in the same order whatever the size, so results do not depend
/// on it.
fn portable_wg(lq: usize) -> usize {
    let slots = |wg: usize| lq.div_ceil(wg * QPT) * wg * QPT;
    WGS.into_iter()
        .fold(WGS[0], |best, wg| if slots(wg) < slots(best) { wg } else { best })
}

const OP: &str = "attention";

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AttentionParams {
    lq: u32,
    lk: u32,
    hq: u32,
    group: u32,
    q_off: u32,
    q_stride: u32,
    k_off: u32,
    k_stride: u32,
    v_off: u32,
    v_stride: u32,
    q_blocks: u32,
    scale_log2: f32,
    causal_off: u32,
    bias_heads: u32,
    pad: [u32; 2],
}

/// Everything about an attention call beyond Q, K and V.
#[derive(Clone, Copy, Debug)]
pub struct AttentionOptions<'a> {
    /// f32 `[B, Lk]` added to every query's score of key `j`: −∞ masks the
    /// key, `ln m` weighs it as `m` identical keys.
    pub key_bias: Option<&'a Tensor>,
    /// Causal masking with this offset: query `i` sees keys `j <= i + offset`
    /// (0 for self-attention).
    pub causal: Option<usize>,
    /// f32 `[Hq, Lq, Lk]`, added to the scaled scores before the softmax
    /// (shared across the batch; finite).
    pub bias: Option<&'a Tensor>,
    /// Multiplies `Q·Kᵀ`; usually `1 / sqrt(D)` (T5: 1 with a bias).
    pub scale: f32,
}

impl AttentionOptions<'_> {
    /// No mask, no bias, not causal.
    pub fn scale(scale: f32) -> Self {
        AttentionOptions {
            key_bias: None,
            causal: None,
            bias: None,
            scale,
        }
    }
}

/// Q, K or V seen as `[batch, len, heads, head_dim]` rows inside an f32
/// tensor: element `d` of head `h` of token `t` in batch `b` is element
/// `offset + (b * len + t) * row_stride + h * head_dim + d` of `tensor`.
#[derive(Clone, Copy, Debug)]
pub struct HeadsView<'a> {
    pub tensor: &'a Tensor,
    pub batch: usize,
    pub len: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub offset: usize,
    pub row_stride: usize,
}

impl<'a> HeadsView<'a> {
    /// The whole of a contiguous `[batch, len, heads, head_dim]` tensor.
    pub fn contiguous(name: &str, tensor: &'a Tensor) -> Result<Self> {
        let &[batch, len, heads, head_dim] = tensor.shape() else {
            return Err(Error::shape(
                OP,
                format!(
                    "{name} must be [batch, len, heads, head_dim], got {:?}",
                    tensor.shape()
                ),
            ));
        };
        let row_stride = heads * head_dim;
        Ok(HeadsView {
            tensor,
            batch,
            len,
            heads,
            head_dim,
            offset: 0,
            row_stride,
        })
    }

    fn check(&self, name: &str) -> Result<()> {
        expect_dtype(OP, self.tensor, &[DType::F32, DType::F16])?;
        let dims = [self.batch, self.len, self.heads, self.head_dim];
        if dims.contains(&0) {
            return Err(Error::shape(
                OP,
                format!("{name} has an empty dimension: {dims:?}"),
            ));
        }
        let row = self.heads * self.head_dim;
        if self.row_stride < row {
            return Err(Error::shape(
                OP,
                format!(
                    "{name} row stride {} is shorter than its {row} elements",
                    self.row_stride
                ),
            ));
        }
        let end = self.offset + (self.batch * self.len - 1) * self.row_stride + row;
        if end > self.tensor.numel() {
            return Err(Error::shape(
                OP,
                format!(
                    "{name} view {dims:?} at offset {} with row stride {} reaches element {end} \
                     of a tensor of {}",
                    self.offset,
                    self.row_stride,
                    self.tensor.numel()
                ),
            ));
        }
        u32_of(OP, self.tensor.numel())?;
        Ok(())
    }
}

/// Floating-point operations of one attention call (two matmuls of
/// `2·Lq·Lk·D` each per batch and query head), for throughput figures.
pub fn attention_flops(b: usize, lq: usize, lk: usize, hq: usize, d: usize) -> f64 {
    4.0 * b as f64 * lq as f64 * lk as f64 * hq as f64 * d as f64
}

/// `softmax(Q·Kᵀ·scale [+ key_bias])·V` for contiguous `q [B, Lq, Hq, D]`,
/// `k`, `v [B, Lk, Hkv, D]` and an optional f32 key bias `[B, Lk]` (−∞
/// masks a key). Returns `[B, Lq, Hq, D]`. Query head `h` reads kv
/// head `h / (Hq / Hkv)`. The usual `scale` is `1 / sqrt(D)`. Heads wider
/// than [`MAX_HEAD_DIM`] take a slower path (no additive bias there).
pub fn attention(
    gpu: &Gpu,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_bias: Option<&Tensor>,
    scale: f32,
) -> Result<Tensor> {
    let opts = AttentionOptions {
        key_bias,
        ..AttentionOptions::scale(scale)
    };
    attention_with(gpu, q, k, v, &opts)
}

/// [`attention`] with every option: key bias, causal mask, additive bias.
pub fn attention_with(
    gpu: &Gpu,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    opts: &AttentionOptions<'_>,
) -> Result<Tensor> {
    attention_views_with(
        gpu,
        HeadsView::contiguous("q", q)?,
        HeadsView::contiguous("k", k)?,
        HeadsView::contiguous("v", v)?,
        opts,
    )
}

/// [`attention`] on views, e.g. Q, K and V sliced out of one fused
/// `[B, L, 3, H, D]` projection without copies.
pub fn attention_views(
    gpu: &Gpu,
    q: HeadsView<'_>,
    k: HeadsView<'_>,
    v: HeadsView<'_>,
    key_bias: Option<&Tensor>,
    scale: f32,
) -> Result<Tensor> {
    let opts = AttentionOptions {
        key_bias,
        ..AttentionOptions::scale(scale)
    };
    attention_views_with(gpu, q, k, v, &opts)
}

/// [`attention_with`] on views.
pub fn attention_views_with(
    gpu: &Gpu,
    q: HeadsView<'_>,
    k: HeadsView<'_>,
    v: HeadsView<'_>,
    opts: &AttentionOptions<'_>,
) -> Result<Tensor> {
    let variant = variants(gpu)?.attention.variant;
    attention_views_variant(gpu, q, k, v, opts, variant)
}

/// [`attention_views_with`] on a chosen implementation (tests and the
/// self-test run each). `coopmat` serves heads of at most 64 dims without
/// a causal mask or score bias, `tiled` calls without those two; a call
/// the variant cannot take goes to the next one down (coopmat, tiled,
/// portable).
pub fn attention_views_variant(
    gpu: &Gpu,
    q: HeadsView<'_>,
    k: HeadsView<'_>,
    v: HeadsView<'_>,
    opts: &AttentionOptions<'_>,
    variant: Variant,
) -> Result<Tensor> {
    let &AttentionOptions {
        key_bias,
        causal,
        bias,
        scale,
    } = opts;
    q.check("q")?;
    k.check("k")?;
    v.check("v")?;
    if k.tensor.dtype() != v.tensor.dtype() {
        return Err(Error::DType {
            op: OP,
            dtype: v.tensor.dtype().name().into(),
            message: format!("keys are {} but values are not", k.tensor.dtype().name()),
        });
    }
    let dims = |x: &HeadsView| [x.batch, x.len, x.heads, x.head_dim];
    if (k.batch, k.len, k.heads, k.head_dim) != (v.batch, v.len, v.heads, v.head_dim) {
        return Err(Error::shape(
            OP,
            format!("k {:?} and v {:?} differ", dims(&k), dims(&v)),
        ));
    }
    if q.batch != k.batch {
        return Err(Error::shape(
            OP,
            format!("q batch {} but k batch {}", q.batch, k.batch),
        ));
    }
    if q.head_dim != k.head_dim {
        return Err(Error::shape(
            OP,
            format!("q head dim {} but k head dim {}", q.head_dim, k.head_dim),
        ));
    }
    if !q.heads.is_multiple_of(k.heads) {
        return Err(Error::shape(
            OP,
            format!(
                "{} query heads are not a multiple of {} kv heads",
                q.heads, k.heads
            ),
        ));
    }
    if let Some(m) = key_bias {
        expect_dtype(OP, m, &[DType::F32])?;
        if m.shape() != [k.batch, k.len] {
            return Err(Error::shape(
                OP,
                format!(
                    "key bias must be [batch, keys] = {:?}, got {:?}",
                    [k.batch, k.len],
                    m.shape()
                ),
            ));
        }
    }
    if q.head_dim > MAX_HEAD_DIM {
        for t in [q.tensor, k.tensor, v.tensor] {
            expect_dtype(OP, t, &[DType::F32])?;
        }
        return attention_wide(gpu, q, k, v, opts);
    }
    if let Some(bias) = bias {
        expect_dtype(OP, bias, &[DType::F32])?;
        let shared = bias.shape() == [1, q.len, k.len];
        if bias.shape() != [q.heads, q.len, k.len] && !shared {
            return Err(Error::shape(
                OP,
                format!(
                    "bias must be [query heads or 1, queries, keys] = {:?}, got {:?}",
                    [q.heads, q.len, k.len],
                    bias.shape()
                ),
            ));
        }
        u32_of(OP, bias.numel())?;
    }
    // Query + offset + 1 must not wrap in u32; an offset past the keys
    // means every key.
    u32_of(OP, q.len + k.len + 1)?;
    let causal_off = causal.map_or(0, |off| off.min(k.len));
    if !scale.is_finite() {
        return Err(Error::Invalid(format!("{OP}: scale {scale} is not finite")));
    }
    // A call the chosen variant cannot take goes to the next one down.
    let (is_causal, biased) = (causal.is_some(), bias.is_some());
    let kind = match variant {
        Variant::Coopmat if attention_coopmat::applies(q.head_dim, is_causal, biased) => Variant::Coopmat,
        Variant::Coopmat | Variant::Tiled if attention_tiled::applies(is_causal, biased) => Variant::Tiled,
        _ => Variant::Portable,
    };
    if kind == Variant::Coopmat {
        if let Some(missing) = missing_features(gpu, Variant::Coopmat) {
            return Err(Error::Invalid(format!(
                "the coopmat attention kernel needs {missing}, which this device lacks"
            )));
        }
    }
    let q_blocks = match kind {
        Variant::Coopmat => q.len.div_ceil(attention_coopmat::QUERIES),
        Variant::Tiled => q.len.div_ceil(attention_tiled::WG),
        Variant::Portable => q.len.div_ceil(portable_wg(q.len) * QPT),
    };
    let aligned = [q.head_dim, k.offset, k.row_stride, v.offset, v.row_stride]
        .iter()
        .all(|n| n.is_multiple_of(4));
    let params = AttentionParams {
        lq: u32_of(OP, q.len)?,
        lk: u32_of(OP, k.len)?,
        hq: u32_of(OP, q.heads)?,
        group: u32_of(OP, q.heads / k.heads)?,
        q_off: u32_of(OP, q.offset)?,
        q_stride: u32_of(OP, q.row_stride)?,
        k_off: u32_of(OP, k.offset)?,
        k_stride: u32_of(OP, k.row_stride)?,
        v_off: u32_of(OP, v.offset)?,
        v_stride: u32_of(OP, v.row_stride)?,
        q_blocks: u32_of(OP, q_blocks)?,
        scale_log2: scale * std::f32::consts::LOG2_E,
        causal_off: u32_of(OP, causal_off)?,
        bias_heads: bias.map_or(1, |b| b.shape()[0] as u32),
        pad: [0; 2],
    };
    // The output keeps the queries' dtype (f16 activations stay f16).
    let out = gpu.empty(&[q.batch, q.len, q.heads, q.head_dim], q.tensor.dtype())?;
    let kernel = match kind {
        Variant::Coopmat => attention_coopmat::kernel(gpu, &q, &k, key_bias.is_some())?,
        Variant::Tiled => attention_tiled::kernel(gpu, &q, &k, key_bias.is_some())?,
        Variant::Portable => portable_kernel(gpu, &q, &k, opts, aligned)?,
    };
    // Without a key bias (bias) the shader never reads binding 3 (4); any
    // buffer fills it.
    let key_bias_arg = match key_bias {
        Some(m) => m.arg()?,
        None => q.tensor.arg()?,
    };
    let bias_arg = match bias {
        Some(b) => b.arg()?,
        None => q.tensor.arg()?,
    };
    // Q, K, V and the output each cross memory once at least.
    let kv_bytes = k.tensor.dtype().bytes(2 * q.batch * k.len * k.heads * q.head_dim);
    let bytes = q.tensor.dtype().bytes(q.batch * q.len * q.heads * q.head_dim)
        + out.dtype().bytes(out.numel())
        + kv_bytes;
    let cost = Cost::new(
        attention_flops(q.batch, q.len, k.len, q.heads, q.head_dim),
        bytes as f64,
    );
    gpu.dispatch_costed(
        &kernel,
        &[
            q.tensor.arg()?,
            k.tensor.arg()?,
            v.tensor.arg()?,
            key_bias_arg,
            bias_arg,
        ],
        &[out.arg()?],
        bytemuck::bytes_of(&params),
        groups(q.batch * q.heads * q_blocks, 1)?,
        cost,
    )?;
    Ok(out)
}

/// The portable kernel (`shaders/attention.wgsl`) for these views and options.
fn portable_kernel(
    gpu: &Gpu,
    q: &HeadsView,
    k: &HeadsView,
    opts: &AttentionOptions,
    aligned: bool,
) -> Result<Kernel> {
    Ok(Kernel::new("attention")
        .template("MAX_D_PLACEHOLDER", MAX_HEAD_DIM as u32)
        .template("Q_T", storage_type(gpu, OP, q.tensor)?)
        .template("KV_T", storage_type(gpu, OP, k.tensor)?)
        .template("O_T", storage_type(gpu, OP, q.tensor)?)
        .constant("D", q.head_dim as u32)
        .constant("WG", portable_wg(q.len) as u32)
        .constant("KEY_BIASED", opts.key_bias.is_some() as u32)
        .constant("CAUSAL", opts.causal.is_some() as u32)
        .constant("BIASED", opts.bias.is_some() as u32)
        .constant("ALIGNED", aligned as u32))
}

#[cfg(test)]
mod tests {
    use super::portable_wg;

    #[test]
    fn workgroup_size_leaves_fewest_idle_query_slots() {
        // (queries, lanes): 97 = a RAS step's 64 + 33 rows on the demo model.
        for (lq, wg) in [(256, 64), (250, 64), (97, 32), (289, 16), (600, 32), (5, 16)] {
            assert_eq!(portable_wg(lq), wg, "{lq} queries");
        }
    }
}
