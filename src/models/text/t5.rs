//! `T5EncoderModel` (T5 v1.1, model-spec §D.3): relative position buckets,
//! RMSNorm, gated-GELU FFN, no attention scaling; f32 activations
//! throughout (T5-XXL overflows f16 in the FFN). Reference: transformers
//! `models/t5/modeling_t5.py` (v5.24.0, which made the fixtures).

use std::path::Path;

use serde::Deserialize;

use crate::config::{check_dims, config_error, parse_json, read_text};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::kernels::attention::{attention_with, AttentionOptions};
use crate::kernels::elementwise::{add, mul, unary, Unary};
use crate::kernels::rows::{gather, Indices};
use crate::nn::{Linear, RmsNorm};
use crate::weights::Weights;

#[derive(Debug, Clone, Deserialize)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub num_heads: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub relative_attention_num_buckets: usize,
    pub relative_attention_max_distance: usize,
    pub layer_norm_epsilon: f32,
    pub feed_forward_proj: String,
}

impl T5Config {
    pub fn from_file(path: &Path) -> Result<T5Config> {
        Self::from_json(&read_text(path)?, path)
    }

    /// Parses and checks the text of a `config.json`; `path` names the file
    /// in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<T5Config> {
        let config: T5Config = parse_json(text, path)?;
        if config.feed_forward_proj != "gated-gelu" {
            return Err(config_error(
                path,
                format!(
                    "feed_forward_proj '{}' is not supported (gated-gelu)",
                    config.feed_forward_proj
                ),
            ));
        }
        check_dims(
            path,
            &[
                ("vocab_size", config.vocab_size),
                ("d_model", config.d_model),
                ("d_kv", config.d_kv),
                ("num_heads", config.num_heads),
                ("d_ff", config.d_ff),
                ("num_layers", config.num_layers),
                (
                    "relative_attention_num_buckets",
                    config.relative_attention_num_buckets,
                ),
                (
                    "relative_attention_max_distance",
                    config.relative_attention_max_distance,
                ),
            ],
        )?;
        // bucket() splits the buckets in halves, then quarters, and takes a
        // log of max_distance over the exact quarter.
        let exact = config.relative_attention_num_buckets / 4;
        if exact == 0 || config.relative_attention_max_distance <= exact {
            return Err(config_error(
                path,
                format!(
                    "relative_attention_num_buckets {} must be at least 4 and \
                     relative_attention_max_distance {} above a quarter of it (T5 uses 32 and 128)",
                    config.relative_attention_num_buckets, config.relative_attention_max_distance
                ),
            ));
        }
        Ok(config)
    }
}

struct Block {
    ln_attn: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ln_ff: RmsNorm,
    wi_0: Linear,
    wi_1: Linear,
    wo: Linear,
}

pub struct T5Encoder {
    pub config: T5Config,
    embed: Tensor,
    /// Block 0's `[buckets, heads]` table, shared by every block.
    relative_bias: Vec<f32>,
    blocks: Vec<Block>,
    final_norm: RmsNorm,
}

/// T5's bidirectional relative position bucket of `key − query`.
pub fn bucket(relative: i64, buckets: usize, max_distance: usize) -> usize {
    let half = buckets / 2;
    let base = if relative > 0 { half } else { 0 };
    let a = relative.unsigned_abs() as usize;
    let exact = half / 2;
    if a < exact {
        return base + a;
    }
    // As torch evaluates it: f32 log of the ratio, divided by a log taken
    // in f64 (Python's math.log) and rounded to f32, truncated.
    let denom = (max_distance as f64 / exact as f64).ln() as f32;
    let log = ((a as f32 / exact as f32).ln() / denom * (half - exact) as f32) as usize;
    base + (exact + log).min(half - 1)
}

impl T5Encoder {
    pub fn load_dir(gpu: &Gpu, dir: &Path) -> Result<T5Encoder> {
        let config = T5Config::from_file(&dir.join("config.json"))?;
        Self::load(gpu, &Weights::from_dir(dir, "model")?, config)
    }

    pub fn load(gpu: &Gpu, w: &Weights, config: T5Config) -> Result<T5Encoder> {
        let (d, inner, ff, eps) = (
            config.d_model,
            config.num_heads * config.d_kv,
            config.d_ff,
            config.layer_norm_epsilon,
        );
        let enc = w.pp("encoder");
        let blocks = (0..config.num_layers)
            .map(|i| {
                let b = enc.pp("block").pp(i);
                let (attn, dense) = (b.pp("layer").pp(0), b.pp("layer").pp(1));
                let sa = attn.pp("SelfAttention");
                let dr = dense.pp("DenseReluDense");
                Ok(Block {
                    ln_attn: RmsNorm::load(gpu, &attn.pp("layer_norm"), d, eps)?,
                    q: Linear::load_without_bias(gpu, &sa.pp("q"), inner, d)?,
                    k: Linear::load_without_bias(gpu, &sa.pp("k"), inner, d)?,
                    v: Linear::load_without_bias(gpu, &sa.pp("v"), inner, d)?,
                    o: Linear::load_without_bias(gpu, &sa.pp("o"), d, inner)?,
                    ln_ff: RmsNorm::load(gpu, &dense.pp("layer_norm"), d, eps)?,
                    wi_0: Linear::load_without_bias(gpu, &dr.pp("wi_0"), ff, d)?,
                    wi_1: Linear::load_without_bias(gpu, &dr.pp("wi_1"), ff, d)?,
                    wo: Linear::load_without_bias(gpu, &dr.pp("wo"), d, ff)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // The tied embedding may be stored as `shared` or `encoder.embed_tokens`.
        let embed = if w.contains("shared.weight") {
            w.pp("shared").get(gpu, "weight", &[config.vocab_size, d])?
        } else {
            enc.pp("embed_tokens")
                .get(gpu, "weight", &[config.vocab_size, d])?
        };
        let rel = enc
            .pp("block")
            .pp(0)
            .pp("layer")
            .pp(0)
            .pp("SelfAttention")
            .pp("relative_attention_bias");
        Ok(T5Encoder {
            embed,
            relative_bias: rel.get_host(
                "weight",
                &[config.relative_attention_num_buckets, config.num_heads],
            )?,
            blocks,
            final_norm: RmsNorm::load(gpu, &enc.pp("final_layer_norm"), d, eps)?,
            config,
        })
    }

    /// `bias [H, L, L]`: `table[bucket(j − i), h]`.
    fn position_bias(&self, l: usize) -> Vec<f32> {
        let (h, nb, md) = (
            self.config.num_heads,
            self.config.relative_attention_num_buckets,
            self.config.relative_attention_max_distance,
        );
        let mut out = Vec::with_capacity(h * l * l);
        for head in 0..h {
            for i in 0..l {
                for j in 0..l {
                    out.push(self.relative_bias[bucket(j as i64 - i as i64, nb, md) * h + head]);
                }
            }
        }
        out
    }

    /// Token ids `[B][L]` → `last_hidden_state [B, L, D]`. Every position,
    /// padding included, is attended to, as SD3's pipeline does.
    pub fn forward(&self, gpu: &Gpu, ids: &[Vec<u32>]) -> Result<Tensor> {
        let cfg = &self.config;
        let (b, l, d) = (ids.len(), ids.first().map_or(0, Vec::len), cfg.d_model);
        if b == 0 || l == 0 || ids.iter().any(|r| r.len() != l) {
            return Err(Error::shape("t5", "need B ≥ 1 rows of equal, non-zero length"));
        }
        let (h, dk) = (cfg.num_heads, cfg.d_kv);
        let bias = gpu.upload_f32(&self.position_bias(l), &[h, l, l])?;
        let mut x = gather(gpu, &self.embed, &Indices::upload(gpu, &ids.concat())?)?.reshape(&[b, l, d])?;
        let heads = |t: Tensor| t.reshape(&[b, l, h, dk]);
        for block in &self.blocks {
            let y = block.ln_attn.forward(gpu, &x)?;
            let (q, k, v) = (
                heads(block.q.forward(gpu, &y)?)?,
                heads(block.k.forward(gpu, &y)?)?,
                heads(block.v.forward(gpu, &y)?)?,
            );
            // T5 does not scale scores by 1/sqrt(d_kv).
            let options = AttentionOptions {
                bias: Some(&bias),
                ..AttentionOptions::scale(1.0)
            };
            let a = attention_with(gpu, &q, &k, &v, &options)?.reshape(&[b, l, h * dk])?;
            x = add(gpu, &x, &block.o.forward(gpu, &a)?)?;
            let y = block.ln_ff.forward(gpu, &x)?;
            let gate = unary(gpu, Unary::GeluTanh, &block.wi_0.forward(gpu, &y)?)?;
            x = add(
                gpu,
                &x,
                &block
                    .wo
                    .forward(gpu, &mul(gpu, &gate, &block.wi_1.forward(gpu, &y)?)?)?,
            )?;
        }
        self.final_norm.forward(gpu, &x)
    }
}
