//! `LuminaNextDiTBlock`: RMSNorm-zero modulation, self-attention over the
//! image tokens and gated cross-attention to the caption sharing one output
//! projection, a SwiGLU FFN, sandwich RMSNorms and tanh gates
//! (model-spec §B.3, §B.5).

use super::config::LuminaConfig;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::kernels::attention::attention;
use crate::kernels::linear::{Epilogue, Rows};
use crate::kernels::modulate::{gated_residual, tanh_gated_residual, Chunk};
use crate::kernels::norm::Modulation;
use crate::kernels::rope::rope;
use crate::kernels::rows::{scatter, Indices};
use crate::models::RunMemo;
use crate::nn::{LayerNorm, Linear, RmsNorm};
use crate::weights::Weights;

/// `LuminaRMSNormZero` chunks of `norm1.linear`'s output, in diffusers' order.
const SCALE_MSA: usize = 0;
const GATE_MSA: usize = 1;
const SCALE_MLP: usize = 2;
const GATE_MLP: usize = 3;

/// Eps of the q/k LayerNorms (`Attention(eps=1e-5)`).
const QK_EPS: f32 = 1e-5;

/// Which image tokens a call computes, and their rows in `[B·N, ..]`
/// tensors (the embedded latent, the K/V cache, the output).
pub struct Tokens {
    pub batch: usize,
    /// Image tokens of the full latent.
    pub n_img: usize,
    /// Image tokens computed per batch row.
    pub n_q: usize,
    /// `b·N + t` for each computed token `t` of batch row `b`.
    pub rows: Indices,
    /// Whether only some tokens are computed (a RAS step).
    pub sparse: bool,
}

/// What every block of one call shares.
pub struct Step<'a> {
    /// Each layer's modulation vectors `[B, 4D]` ([`LuminaBlock::norm1`]).
    pub modulation: &'a [Tensor],
    /// Caption features `[B, L, D_cap]` and their key bias `[B, L]` (0 for
    /// real tokens, −∞ for padding).
    pub caption: &'a Tensor,
    pub caption_bias: &'a Tensor,
    /// RoPE of the computed tokens: `[n_q, head_dim/2]`, or
    /// `[B, n_q, head_dim/2]` when batch rows compute different tokens.
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
    /// Self-attention softmax scale (with the proportional factor).
    pub self_scale: f32,
    pub tokens: &'a Tokens,
    /// The run's memo: the caption's keys and values are the same at
    /// every step.
    pub memo: Option<&'a RunMemo>,
}

/// A query projection and its LayerNorm across all heads.
struct Query {
    to_q: Linear,
    norm_q: LayerNorm,
}

impl Query {
    fn load(gpu: &Gpu, w: &Weights, d: usize) -> Result<Query> {
        Ok(Query {
            to_q: Linear::load_without_bias(gpu, &w.pp("to_q"), d, d)?,
            norm_q: LayerNorm::load(gpu, &w.pp("norm_q"), d, QK_EPS)?,
        })
    }
}

/// `LuminaFeedForward`: `linear_2(silu(linear_1(x)) · linear_3(x))`.
struct FeedForward {
    linear_1: Linear,
    linear_2: Linear,
    linear_3: Linear,
}

/// Lumina's modulation: `y·(1 + scale)`, no shift.
fn scale_by(emb: &Tensor, scale: Chunk) -> Modulation<'_> {
    Modulation {
        emb,
        shift: None,
        scale,
    }
}

impl FeedForward {
    fn load(gpu: &Gpu, w: &Weights, d: usize, inner: usize) -> Result<FeedForward> {
        Ok(FeedForward {
            linear_1: Linear::load_without_bias(gpu, &w.pp("linear_1"), inner, d)?,
            linear_2: Linear::load_without_bias(gpu, &w.pp("linear_2"), d, inner)?,
            linear_3: Linear::load_without_bias(gpu, &w.pp("linear_3"), inner, d)?,
        })
    }

    fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        let gate = self.linear_1.forward(gpu, x)?; // [B, n, F]
        let h = self
            .linear_3
            .forward_then(gpu, x, Epilogue::SiluGated { gate: &gate })?; // silu(gate) ⊙ x·W3ᵀ [B, n, F]
        self.linear_2.forward(gpu, &h) // [B, n, D]
    }
}

pub struct LuminaBlock {
    norm1: Linear,
    norm1_norm: RmsNorm,
    q1: Query,
    k1: Linear,
    norm_k1: LayerNorm,
    v1: Linear,
    /// attn2's query projection; `None` when its weights equal attn1's (as
    /// in the converted checkpoints), so the query is computed once.
    q2: Option<Query>,
    k2: Linear,
    norm_k2: LayerNorm,
    v2: Linear,
    to_out: Linear,
    /// `tanh(gate)` of each head repeated over its dims, `[1, D]`.
    cross_gate: Tensor,
    norm1_context: RmsNorm,
    norm2: RmsNorm,
    ffn_norm1: RmsNorm,
    ffn_norm2: RmsNorm,
    ff: FeedForward,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl LuminaBlock {
    pub fn load(gpu: &Gpu, w: &Weights, cfg: &LuminaConfig) -> Result<LuminaBlock> {
        let (d, dc, eps) = (cfg.hidden_size, cfg.cross_attention_dim, cfg.norm_eps);
        let (heads, dh) = (cfg.num_attention_heads, cfg.head_dim());
        let kvw = cfg.kv_heads() * dh;
        let (a1, a2) = (w.pp("attn1"), w.pp("attn2"));
        let gate: Vec<f32> = w
            .get_host("gate", &[heads])?
            .iter()
            .flat_map(|g| std::iter::repeat_n(g.tanh(), dh))
            .collect();
        let query = [
            ("to_q.weight", &[d, d][..]),
            ("norm_q.weight", &[d]),
            ("norm_q.bias", &[d]),
        ];
        let q2 = if same_values(&a1, &a2, &query)? {
            None
        } else {
            Some(Query::load(gpu, &a2, d)?)
        };
        Ok(LuminaBlock {
            norm1: Linear::load(gpu, &w.pp("norm1").pp("linear"), 4 * d, cfg.temb_dim())?,
            norm1_norm: RmsNorm::load(gpu, &w.pp("norm1").pp("norm"), d, eps)?,
            q1: Query::load(gpu, &a1, d)?,
            k1: Linear::load_without_bias(gpu, &a1.pp("to_k"), kvw, d)?,
            norm_k1: LayerNorm::load(gpu, &a1.pp("norm_k"), kvw, QK_EPS)?,
            v1: Linear::load_without_bias(gpu, &a1.pp("to_v"), kvw, d)?,
            q2,
            k2: Linear::load_without_bias(gpu, &a2.pp("to_k"), kvw, dc)?,
            norm_k2: LayerNorm::load(gpu, &a2.pp("norm_k"), kvw, QK_EPS)?,
            v2: Linear::load_without_bias(gpu, &a2.pp("to_v"), kvw, dc)?,
            to_out: Linear::load_without_bias(gpu, &a2.pp("to_out").pp(0), d, d)?,
            cross_gate: gpu.upload_weight_f32(&gate, &[1, d])?,
            norm1_context: RmsNorm::load(gpu, &w.pp("norm1_context"), dc, eps)?,
            norm2: RmsNorm::load(gpu, &w.pp("norm2"), d, eps)?,
            ffn_norm1: RmsNorm::load(gpu, &w.pp("ffn_norm1"), d, eps)?,
            ffn_norm2: RmsNorm::load(gpu, &w.pp("ffn_norm2"), d, eps)?,
            ff: FeedForward::load(gpu, &w.pp("feed_forward"), d, cfg.ffn_dim())?,
            heads,
            kv_heads: cfg.kv_heads(),
            head_dim: dh,
        })
    }

    /// Whether attn2 reuses attn1's query.
    pub fn shares_query(&self) -> bool {
        self.q2.is_none()
    }

    /// `x [B, n_q, D]` (the computed image tokens) → updated `x`. With `kv`
    /// (this layer's cache `[B·N, kv_heads·head_dim]`), the computed tokens'
    /// keys (normed and rotated) and values are written into it and
    /// self-attention reads all N rows; without, the call is dense and
    /// attends over its own keys.
    /// The modulation vectors `[B, 4D]` (scale and gate for attention and
    /// MLP) from `cond = silu(temb)`.
    pub fn norm1(&self, gpu: &Gpu, cond: &Tensor) -> Result<Tensor> {
        self.norm1.forward(gpu, cond)
    }

    /// Layer `index` of the model (its modulation in `step`, its memo keys).
    pub fn forward(
        &self,
        gpu: &Gpu,
        index: usize,
        x: &Tensor,
        step: &Step,
        kv: Option<&[Tensor]>,
    ) -> Result<Tensor> {
        let t = step.tokens;
        let (b, n, nq) = (t.batch, t.n_img, t.n_q);
        let (h, hkv, dh) = (self.heads, self.kv_heads, self.head_dim);
        let (d, kvw) = (h * dh, hkv * dh);
        let chunk = |index| Chunk { index, count: 4 };
        let m = &step.modulation[index]; // [B, 4D]
        let nx = self
            .norm1_norm
            .forward_modulated(gpu, x, scale_by(m, chunk(SCALE_MSA)))?; // [B, n_q, D]

        // Self-attention: keys and values of the computed tokens, into the
        // cache when there is one.
        let q = self.query(gpu, &self.q1, &nx, step)?; // [B, n_q, H, dh]
        let k = self.norm_k1.forward(gpu, &self.k1.forward(gpu, &nx)?)?; // [B, n_q, kv_heads·dh]
        let k = rope(gpu, &k.reshape(&[b, nq, hkv, dh])?, step.cos, step.sin)?; // [B, n_q, kv_heads, dh]
        let (k, v) = match kv {
            Some(layer) => {
                let [kc, vc] = layer else {
                    return Err(Error::Invalid("lumina: a K/V cache layer holds K and V".into()));
                };
                scatter(gpu, &k.reshape(&[b * nq, kvw])?, &t.rows, kc)?;
                let rows = Rows {
                    input: None,
                    output: Some(&t.rows),
                };
                self.v1.forward_into(gpu, &nx, vc, rows)?;
                (kc.reshape(&[b, n, hkv, dh])?, vc.reshape(&[b, n, hkv, dh])?)
            }
            None => (k, self.v1.forward(gpu, &nx)?.reshape(&[b, nq, hkv, dh])?),
        }; // [B, N, kv_heads, dh]
        let sa = attention(gpu, &q, &k, &v, None, step.self_scale)?; // [B, n_q, H, dh]

        // Cross-attention to the caption: no RoPE on its keys, padding masked.
        let l = step.caption.shape()[1];
        let cn = std::cell::OnceCell::new();
        let normed = || -> Result<Tensor> {
            if let Some(t) = cn.get() {
                return Ok(Tensor::clone(t));
            }
            let t = self.norm1_context.forward(gpu, step.caption)?; // [B, L, D_cap]
            Ok(cn.get_or_init(|| t).clone())
        };
        let caption_k = || self.norm_k2.forward(gpu, &self.k2.forward(gpu, &normed()?)?);
        let caption_v = || self.v2.forward(gpu, &normed()?);
        let (k2, v2) = match step.memo {
            Some(memo) => (
                memo.get_or_compute(("lumina caption keys", index), caption_k)?,
                memo.get_or_compute(("lumina caption values", index), caption_v)?,
            ),
            None => (caption_k()?, caption_v()?),
        }; // [B, L, kv_heads·dh] each
        let q2_own;
        let q2 = match &self.q2 {
            None => &q,
            Some(q2) => {
                q2_own = self.query(gpu, q2, &nx, step)?;
                &q2_own
            }
        }; // [B, n_q, H, dh]
        let ca = attention(
            gpu,
            q2,
            &k2.reshape(&[b, l, hkv, dh])?,
            &v2.reshape(&[b, l, hkv, dh])?,
            Some(step.caption_bias),
            1.0 / (dh as f32).sqrt(),
        )?; // [B, n_q, H, dh]

        // sa + tanh(gate)·ca per head, one shared projection, sandwich norm.
        let flat = |a: &Tensor| a.reshape(&[1, b * nq, d]);
        let mixed = gated_residual(
            gpu,
            &flat(&sa)?,
            &flat(&ca)?,
            &self.cross_gate,
            Chunk { index: 0, count: 1 },
        )?;
        let o = self.to_out.forward(gpu, &mixed.reshape(&[b, nq, d])?)?; // [B, n_q, D]
        let x = tanh_gated_residual(gpu, x, &self.norm2.forward(gpu, &o)?, m, chunk(GATE_MSA))?;

        // SwiGLU FFN between RMSNorms.
        let nx = self
            .ffn_norm1
            .forward_modulated(gpu, &x, scale_by(m, chunk(SCALE_MLP)))?;
        let f = self.ff.forward(gpu, &nx)?; // [B, n_q, D]
        tanh_gated_residual(gpu, &x, &self.ffn_norm2.forward(gpu, &f)?, m, chunk(GATE_MLP))
    }

    /// Normed, rotated queries `[B, n_q, H, dh]`.
    fn query(&self, gpu: &Gpu, q: &Query, nx: &Tensor, step: &Step) -> Result<Tensor> {
        let t = step.tokens;
        let y = q.norm_q.forward(gpu, &q.to_q.forward(gpu, nx)?)?; // [B, n_q, D]
        rope(
            gpu,
            &y.reshape(&[t.batch, t.n_q, self.heads, self.head_dim])?,
            step.cos,
            step.sin,
        )
    }
}

/// Whether the tensors `(name, shape)` of `a` and `b` hold the same values
/// (bit for bit, as the kernels widen them to f32). Reads them on the host.
fn same_values(a: &Weights, b: &Weights, tensors: &[(&str, &[usize])]) -> Result<bool> {
    for &(name, shape) in tensors {
        let (x, y) = (a.get_host(name, shape)?, b.get_host(name, shape)?);
        if !x.iter().map(|v| v.to_bits()).eq(y.iter().map(|v| v.to_bits())) {
            return Ok(false);
        }
    }
    Ok(true)
}
