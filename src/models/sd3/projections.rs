//! The Q, K, V projections of one stream of a joint block (`to_q`, `to_k`,
//! `to_v` or the `add_*_proj` of the text stream), with SD3.5's optional
//! per-head RMSNorm on queries and keys.
//!
//! Keys and values go into one fused buffer per layer, `[B·(N + L), 2D]`
//! with K in the first D columns and V in the last (the K/V cache when RAS
//! keeps one), which the attention kernel reads as two strided views. So
//! without key norms the two projections are one GEMM over the stacked
//! `[2D, D]` weights, writing whole rows; with them K is normalised first
//! and scattered into its half, and V written into the other.

use super::block::LN_EPS;
use super::config::Sd3Config;
use crate::error::Result;
use crate::gpu::{DType, Gpu, Tensor};
use crate::kernels::linear::{LinearOptions, Rows};
use crate::kernels::rows::{scatter, scatter_columns, Indices};
use crate::nn::{Linear, RmsNorm};
use crate::weights::Weights;

enum KeysValues {
    /// `[to_k; to_v]` stacked: `[2D, D]`.
    Fused(Linear),
    Normed {
        k: Linear,
        v: Linear,
        norm_k: RmsNorm,
    },
}

pub struct Projections {
    q: Linear,
    norm_q: Option<RmsNorm>,
    kv: KeysValues,
}

impl Projections {
    /// `names`: the q, k, v projections and the q, k norms under `w`.
    pub fn load(gpu: &Gpu, w: &Weights, names: [&str; 5], cfg: &Sd3Config) -> Result<Projections> {
        let (d, dh) = (cfg.inner_dim(), cfg.attention_head_dim);
        let norm = |name: &str| RmsNorm::load(gpu, &w.pp(name), dh, LN_EPS);
        let kv = match cfg.qk_norm {
            None => KeysValues::Fused(Linear::load_stacked(
                gpu,
                &[&w.pp(names[1]), &w.pp(names[2])],
                d,
                d,
            )?),
            Some(_) => KeysValues::Normed {
                k: Linear::load(gpu, &w.pp(names[1]), d, d)?,
                v: Linear::load(gpu, &w.pp(names[2]), d, d)?,
                norm_k: norm(names[4])?,
            },
        };
        Ok(Projections {
            q: Linear::load(gpu, &w.pp(names[0]), d, d)?,
            norm_q: cfg.qk_norm.as_ref().map(|_| norm(names[3])).transpose()?,
            kv,
        })
    }

    /// Queries `[B, n, D]` of `x [B, n, D]`.
    pub fn queries(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        let y = self.q.forward(gpu, x)?;
        match &self.norm_q {
            Some(norm) => norm.forward(gpu, &y),
            None => Ok(y),
        }
    }

    /// Queries of `x` into rows `rows` of `dest [R, D]`.
    pub fn queries_into(&self, gpu: &Gpu, x: &Tensor, dest: &Tensor, rows: &Indices) -> Result<()> {
        match &self.norm_q {
            None => self.q.forward_into(gpu, x, dest, output_rows(rows)),
            Some(_) => {
                let q = self.queries(gpu, x)?;
                scatter(gpu, &q.reshape(&[q.rows(), q.cols()])?, rows, dest)
            }
        }
    }

    /// Keys and values of `x [B, n, D]` into rows `rows` of the fused
    /// `kv [R, 2D]` (f32 or f16); the other rows keep their values.
    pub fn keys_values_into(&self, gpu: &Gpu, x: &Tensor, kv: &Tensor, rows: &Indices) -> Result<()> {
        match &self.kv {
            KeysValues::Fused(kv_proj) => kv_proj.forward_into(gpu, x, kv, output_rows(rows)),
            KeysValues::Normed { k, v, norm_k } => {
                let keys = norm_k.forward(gpu, &k.forward(gpu, x)?)?;
                scatter_columns(gpu, &keys.reshape(&[keys.rows(), keys.cols()])?, rows, kv, 0)?;
                let options = LinearOptions {
                    rows: output_rows(rows),
                    out_col: v.out_features(),
                    ..Default::default()
                };
                v.forward_with(gpu, x, kv, options)
            }
        }
    }
}

fn output_rows(rows: &Indices) -> Rows<'_> {
    Rows {
        input: None,
        output: Some(rows),
    }
}

/// A fused K|V buffer `[rows, 2D]` in `dtype`.
pub fn kv_buffer(gpu: &Gpu, rows: usize, d: usize, dtype: DType) -> Result<Tensor> {
    gpu.empty(&[rows, 2 * d], dtype)
}
