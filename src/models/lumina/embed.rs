//! Lumina's conditioning vector (`LuminaCombinedTimestepCaptionEmbedding`):
//! the timestep embedding plus the projected mean of the real caption
//! tokens.

use super::config::LuminaConfig;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::kernels::attention::{attention, MAX_HEAD_DIM};
use crate::kernels::elementwise::{add, unary, Unary};
use crate::models::sd3::embed::timestep_embedding;
use crate::nn::{LayerNorm, Linear};
use crate::weights::Weights;

/// `Timesteps(256, flip_sin_to_cos=True, shift 0)` channels.
const FREQ_CHANNELS: usize = 256;

pub struct TimeCaptionEmbed {
    t1: Linear,
    t2: Linear,
    caption_norm: LayerNorm,
    caption_proj: Linear,
}

impl TimeCaptionEmbed {
    pub fn load(gpu: &Gpu, w: &Weights, cfg: &LuminaConfig) -> Result<TimeCaptionEmbed> {
        let (dt, dc) = (cfg.temb_dim(), cfg.cross_attention_dim);
        let (t, c) = (w.pp("timestep_embedder"), w.pp("caption_embedder"));
        Ok(TimeCaptionEmbed {
            t1: Linear::load(gpu, &t.pp("linear_1"), dt, FREQ_CHANNELS)?,
            t2: Linear::load(gpu, &t.pp("linear_2"), dt, dt)?,
            caption_norm: LayerNorm::load(gpu, &c.pp(0), dc, 1e-5)?,
            caption_proj: Linear::load(gpu, &c.pp(1), dt, dc)?,
        })
    }

    /// `t [B]` (Lumina convention: 0 = noise, no ×1000), caption
    /// `[B, L, D_cap]` with key bias `[B, L]` (0 real, −∞ padding) →
    /// `temb [B, D_t]`.
    pub fn forward(&self, gpu: &Gpu, timesteps: &[f32], caption: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let b = timesteps.len();
        let sin = gpu.upload_f32(&timestep_embedding(timesteps, FREQ_CHANNELS), &[b, FREQ_CHANNELS])?; // [B, 256]
        let t = unary(gpu, Unary::Silu, &self.t1.forward(gpu, &sin)?)?;
        let t = self.t2.forward(gpu, &t)?; // [B, D_t]
        let pooled = masked_mean(gpu, caption, bias)?; // [B, D_cap]
        let c = self
            .caption_proj
            .forward(gpu, &self.caption_norm.forward(gpu, &pooled)?)?; // [B, D_t]
        add(gpu, &t, &c)
    }
}

/// Mean over the real tokens of `x [B, L, D]` (key bias `[B, L]`: 0 real,
/// −∞ padding) → `[B, D]`. Attention with all scores equal is exactly that
/// mean — softmax weighs every unmasked key alike — so a zero query against
/// `x` as keys and values computes it, with `D` split into heads the kernel
/// holds (`≤ MAX_HEAD_DIM` wide).
pub fn masked_mean(gpu: &Gpu, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let &[b, l, d] = x.shape() else {
        return Err(Error::shape(
            "lumina caption pooling",
            format!("caption must be [B, L, D], got {:?}", x.shape()),
        ));
    };
    let heads = (d.div_ceil(MAX_HEAD_DIM)..=d)
        .find(|n| d.is_multiple_of(*n))
        .unwrap_or(d.max(1));
    let kv = x.reshape(&[b, l, heads, d / heads])?;
    let q = gpu.upload_f32(&vec![0.0; b * d], &[b, 1, heads, d / heads])?;
    attention(gpu, &q, &kv, &kv, Some(bias), 1.0)?.reshape(&[b, d])
}
