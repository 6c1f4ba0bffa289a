//! `JointTransformerBlock`: the MMDiT block. Image and text tokens keep
//! separate weights but attend jointly over the concatenated sequence.

use super::config::Sd3Config;
use super::projections::{kv_buffer, Projections};
use super::tokens::TokenPlan;
use crate::error::Result;
use crate::gpu::{Gpu, Tensor};
use crate::kernels::attention::{attention_views, HeadsView};
use crate::kernels::linear::{Epilogue, LinearOptions, Rows};
use crate::kernels::modulate::Chunk;
use crate::kernels::norm::{layer_norm_modulated, Modulation};
use crate::kernels::rows::Indices;
use crate::nn::Linear;
use crate::weights::Weights;

/// LayerNorm eps everywhere in the SD3 transformer (no affine parameters).
pub const LN_EPS: f32 = 1e-6;

/// AdaLayerNormZero chunks, in diffusers' order.
const SHIFT_MSA: usize = 0;
const SCALE_MSA: usize = 1;
const GATE_MSA: usize = 2;
const SHIFT_MLP: usize = 3;
const SCALE_MLP: usize = 4;
const GATE_MLP: usize = 5;

/// `FeedForward` with GELU (tanh approximation).
pub struct FeedForward {
    up: Linear,
    down: Linear,
}

impl FeedForward {
    fn load(gpu: &Gpu, w: &Weights, d: usize) -> Result<FeedForward> {
        Ok(FeedForward {
            up: Linear::load(gpu, &w.pp("net").pp(0).pp("proj"), 4 * d, d)?,
            down: Linear::load(gpu, &w.pp("net").pp(2), d, 4 * d)?,
        })
    }

    /// `residual + gate ⊙ FF(x)`, the gate being chunk `gate` of `emb`.
    fn forward_gated(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        residual: &Tensor,
        emb: &Tensor,
        gate: Chunk,
    ) -> Result<Tensor> {
        let h = self.up.forward_then(gpu, x, Epilogue::GeluTanh)?; // [B, N, 4D]
        self.down.forward_then(
            gpu,
            &h,
            Epilogue::GatedResidual {
                residual,
                emb,
                gate,
                tanh: false,
            },
        ) // [B, N, D]
    }
}

/// `modulate(LayerNorm(x))` (no affine) in one pass.
fn norm_modulate(gpu: &Gpu, x: &Tensor, emb: &Tensor, shift: Chunk, scale: Chunk) -> Result<Tensor> {
    let modulation = Modulation {
        emb,
        shift: Some(shift),
        scale,
    };
    layer_norm_modulated(gpu, x, modulation, LN_EPS)
}

/// `residual + gate ⊙ (a[rows]·Wᵀ + b)`: an attention output projection
/// with its adaLN-Zero gated residual in the epilogue.
fn gated_projection(
    gpu: &Gpu,
    lin: &Linear,
    a: &Tensor,
    rows: Option<&Indices>,
    residual: &Tensor,
    emb: &Tensor,
    gate: Chunk,
) -> Result<Tensor> {
    let out = gpu.empty(residual.shape(), residual.dtype())?;
    let options = LinearOptions {
        rows: Rows {
            input: rows,
            output: None,
        },
        epilogue: Epilogue::GatedResidual {
            residual,
            emb,
            gate,
            tanh: false,
        },
        out_col: 0,
    };
    lin.forward_with(gpu, a, &out, options)?;
    Ok(out)
}

/// Where a block's keys and values go, and their attention bias.
#[derive(Clone, Copy, Default)]
pub struct Keys<'a> {
    /// This layer's K/V cache, fused `[B·(N + L), 2D]` (K | V per row); a
    /// scratch buffer when `None`.
    pub cache: Option<&'a Tensor>,
    /// Per-key bias `[B, N + L]` (see `Sd3Inputs::text_weights`).
    pub bias: Option<&'a Tensor>,
}

pub struct JointBlock {
    norm1: Linear,
    norm1_context: Linear,
    img: Projections,
    txt: Projections,
    to_out: Linear,
    to_add_out: Option<Linear>,
    ff: FeedForward,
    ff_context: Option<FeedForward>,
    heads: usize,
    head_dim: usize,
}

impl JointBlock {
    /// `context_pre_only` is the last block: its text stream ends after
    /// providing keys and values.
    pub fn load(gpu: &Gpu, w: &Weights, cfg: &Sd3Config, context_pre_only: bool) -> Result<JointBlock> {
        let d = cfg.inner_dim();
        let attn = w.pp("attn");
        let ctx_chunks = if context_pre_only { 2 } else { 6 };
        Ok(JointBlock {
            norm1: Linear::load(gpu, &w.pp("norm1").pp("linear"), 6 * d, d)?,
            norm1_context: Linear::load(gpu, &w.pp("norm1_context").pp("linear"), ctx_chunks * d, d)?,
            img: Projections::load(gpu, &attn, ["to_q", "to_k", "to_v", "norm_q", "norm_k"], cfg)?,
            txt: Projections::load(
                gpu,
                &attn,
                [
                    "add_q_proj",
                    "add_k_proj",
                    "add_v_proj",
                    "norm_added_q",
                    "norm_added_k",
                ],
                cfg,
            )?,
            to_out: Linear::load(gpu, &attn.pp("to_out").pp(0), d, d)?,
            to_add_out: (!context_pre_only)
                .then(|| Linear::load(gpu, &attn.pp("to_add_out"), d, d))
                .transpose()?,
            ff: FeedForward::load(gpu, &w.pp("ff"), d)?,
            ff_context: (!context_pre_only)
                .then(|| FeedForward::load(gpu, &w.pp("ff_context"), d))
                .transpose()?,
            heads: cfg.num_attention_heads,
            head_dim: cfg.attention_head_dim,
        })
    }

    /// The image stream's adaLN-Zero vectors `[B, 6D]` from `cond = silu(temb)`.
    pub fn norm1(&self, gpu: &Gpu, cond: &Tensor) -> Result<Tensor> {
        self.norm1.forward(gpu, cond)
    }

    /// The text stream's: `[B, 6D]`, or `[B, 2D]` (scale | shift) in the
    /// last block.
    pub fn norm1_context(&self, gpu: &Gpu, cond: &Tensor) -> Result<Tensor> {
        self.norm1_context.forward(gpu, cond)
    }

    /// `x [B, n_q, D]` (the computed image tokens), `c [B, L, D]` and the
    /// block's modulation vectors ([`norm1`](Self::norm1),
    /// [`norm1_context`](Self::norm1_context)) → updated `x`, and `c`
    /// unless this is the last block. Keys and values go to `kv` (this layer's cache) when
    /// given, else to scratch buffers; attention always reads all N + L rows.
    pub fn forward(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        c: &Tensor,
        modulation: &(Tensor, Tensor),
        plan: &TokenPlan,
        keys: Keys,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let Keys {
            cache: kv,
            bias: key_bias,
        } = keys;
        let (b, n, nq, l) = (plan.batch, plan.n_img, plan.n_q, plan.n_txt);
        let (h, dh) = (self.heads, self.head_dim);
        let d = h * dh;
        let chunk = |index| Chunk { index, count: 6 };
        let (m, mc) = modulation; // [B, 6D]; [B, 6D], or [B, 2D] = scale | shift
        let nx = norm_modulate(gpu, x, m, chunk(SHIFT_MSA), chunk(SCALE_MSA))?;
        let (c_shift, c_scale) = match self.to_add_out {
            Some(_) => (chunk(SHIFT_MSA), chunk(SCALE_MSA)),
            None => (Chunk { index: 1, count: 2 }, Chunk { index: 0, count: 2 }),
        };
        let nc = norm_modulate(gpu, c, mc, c_shift, c_scale)?;

        // Keys and values, fused [B·(N + L), 2D]: the computed image rows are
        // written in place (index fusion), the others keep their cached values.
        let scratch;
        let kv = match kv {
            Some(kv) => kv,
            None => {
                scratch = kv_buffer(gpu, b * (n + l), d, nx.dtype())?;
                &scratch
            }
        };
        self.img.keys_values_into(gpu, &nx, kv, &plan.kv_img)?;
        self.txt.keys_values_into(gpu, &nc, kv, &plan.kv_txt)?;
        // Queries [B·(n_q + L), D]; the last block needs image queries only.
        let last = self.to_add_out.is_none();
        let lq = if last { nq } else { nq + l };
        let q = if last {
            self.img.queries(gpu, &nx)?
        } else {
            let q = gpu.empty(&[b * lq, d], nx.dtype())?;
            self.img.queries_into(gpu, &nx, &q, &plan.q_img)?;
            self.txt.queries_into(gpu, &nc, &q, &plan.q_txt)?;
            q
        };
        let q_img_rows = if last { None } else { Some(&plan.q_img) };
        let q = q.reshape(&[b, lq, h, dh])?;
        let half = |offset| HeadsView {
            tensor: kv,
            batch: b,
            len: n + l,
            heads: h,
            head_dim: dh,
            offset,
            row_stride: 2 * d,
        };
        let a = attention_views(
            gpu,
            HeadsView::contiguous("q", &q)?,
            half(0),
            half(d),
            key_bias,
            1.0 / (dh as f32).sqrt(),
        )?;
        let a = a.reshape(&[b * lq, d])?; // [B·Lq, D]

        // Image stream: attention and MLP residuals, each added in the
        // epilogue of the projection that produces it.
        let x = gated_projection(gpu, &self.to_out, &a, q_img_rows, x, m, chunk(GATE_MSA))?;
        let nx = norm_modulate(gpu, &x, m, chunk(SHIFT_MLP), chunk(SCALE_MLP))?;
        let x = self.ff.forward_gated(gpu, &nx, &x, m, chunk(GATE_MLP))?;

        // Text stream, except after the last block.
        let (Some(to_add_out), Some(ff_context)) = (&self.to_add_out, &self.ff_context) else {
            return Ok((x, None));
        };
        let c = gated_projection(gpu, to_add_out, &a, Some(&plan.q_txt), c, mc, chunk(GATE_MSA))?;
        let nc = norm_modulate(gpu, &c, mc, chunk(SHIFT_MLP), chunk(SCALE_MLP))?;
        let c = ff_context.forward_gated(gpu, &nc, &c, mc, chunk(GATE_MLP))?;
        Ok((x, Some(c)))
    }
}
