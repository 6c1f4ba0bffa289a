//! Heads too wide for the attention kernels' private arrays, computed
//! through the linear kernel and the portable attention kernel.

use super::{attention_views_with, AttentionOptions, HeadsView, MAX_HEAD_DIM, OP};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Tensor};
use crate::kernels::elementwise::scale;
use crate::kernels::linear::linear;
use crate::kernels::rows::{gather, scatter, Indices};

/// Heads wider than [`MAX_HEAD_DIM`] (the SD3 VAE's one 512-channel head,
/// Gemma's 256-dim heads sharing one kv head): per batch row and kv head,
/// the scores `S = Q·Kᵀ·scale [G, Lq, Lk]` of its `G = Hq / Hkv` query
/// heads come from the linear kernel, and the attention kernel applies the
/// softmax (key bias and causal mask included) with `S` as its bias and
/// all-zero queries and keys to V in slices of `D / n ≤ 128` dims, whose
/// outputs are scattered side by side into the D-wide output. Memory grows
/// with G·Lq·Lk (the VAE tiles its decode to bound it).
pub(super) fn attention_wide(
    gpu: &Gpu,
    q: HeadsView,
    k: HeadsView,
    v: HeadsView,
    opts: &AttentionOptions,
) -> Result<Tensor> {
    let d = q.head_dim;
    let contiguous = [&q, &k, &v]
        .iter()
        .all(|x| x.offset == 0 && x.row_stride == x.heads * x.head_dim);
    if opts.bias.is_some() || !contiguous {
        return Err(Error::shape(
            OP,
            format!(
                "head dim {d} > {MAX_HEAD_DIM} is supported on contiguous tensors without an \
                 additive bias only"
            ),
        ));
    }
    let n = (d.div_ceil(MAX_HEAD_DIM)..=d)
        .find(|n| d.is_multiple_of(*n))
        .unwrap_or(d);
    let (b, lq, lk, hq, hkv) = (q.batch, q.len, k.len, q.heads, k.heads);
    let (group, w) = (hq / hkv, d / n);
    let q_rows = q.tensor.reshape(&[b * lq * hq, d])?;
    let k_rows = k.tensor.reshape(&[b * lk * hkv, d])?;
    let zeros_q = gpu.upload_f32(&vec![0.0; lq * group * w], &[1, lq, group, w])?;
    let zeros_k = gpu.upload_f32(&vec![0.0; lk * w], &[1, lk, 1, w])?;
    let out = gpu.empty(&[b, lq, hq, d], DType::F32)?;
    // Row r of the slices view is slice r % n of head row r / n.
    let out_slices = out.reshape(&[b * lq * hq * n, w])?;
    let upload =
        |idx: Vec<usize>| Indices::upload(gpu, &idx.into_iter().map(|i| i as u32).collect::<Vec<_>>());
    for bi in 0..b {
        let key_bias = match opts.key_bias {
            Some(m) => Some(gather(gpu, m, &upload(vec![bi])?)?), // [1, Lk]
            None => None,
        };
        for g in 0..hkv {
            let head = |t: usize, hh: usize| (bi * lq + t) * hq + g * group + hh;
            let q_idx = (0..group).flat_map(|hh| (0..lq).map(move |t| head(t, hh)));
            let k_idx = (0..lk).map(|j| (bi * lk + j) * hkv + g);
            let scores = linear(
                gpu,
                &gather(gpu, &q_rows, &upload(q_idx.collect())?)?, // [G·Lq, D], head-major
                &gather(gpu, &k_rows, &upload(k_idx.collect())?)?, // [Lk, D]
                None,
            )?;
            let scores = scale(gpu, &scores, opts.scale)?.reshape(&[group, lq, lk])?;
            let with = AttentionOptions {
                key_bias: key_bias.as_ref(),
                causal: opts.causal,
                bias: Some(&scores),
                scale: 1.0,
            };
            for s in 0..n {
                let values = HeadsView {
                    tensor: v.tensor,
                    batch: 1,
                    len: lk,
                    heads: 1,
                    head_dim: w,
                    offset: (bi * lk * hkv + g) * d + s * w,
                    row_stride: hkv * d,
                };
                let zq = HeadsView::contiguous("q", &zeros_q)?;
                let zk = HeadsView::contiguous("k", &zeros_k)?;
                let o = attention_views_with(gpu, zq, zk, values, &with)?; // [1, Lq, G, D / n]
                let dst = (0..lq).flat_map(|t| (0..group).map(move |hh| head(t, hh) * n + s));
                scatter(
                    gpu,
                    &o.reshape(&[lq * group, w])?,
                    &upload(dst.collect())?,
                    &out_slices,
                )?;
            }
        }
    }
    Ok(out)
}
