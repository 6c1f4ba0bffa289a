//! `CLIPTextModelWithProjection` (model-spec §D.2): CLIP-L and OpenCLIP
//! bigG as SD3 uses them — the penultimate hidden state (before the final
//! LayerNorm) and the projected EOS token. Reference: transformers
//! `models/clip/modeling_clip.py` (v5.24.0, which made the fixtures).

use std::path::Path;

use serde::Deserialize;

use crate::config::{check_dims, config_error, parse_json, read_text};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::kernels::attention::{attention_with, AttentionOptions};
use crate::kernels::elementwise::{add, unary, Unary};
use crate::kernels::norm::layer_norm;
use crate::kernels::rows::{gather, Indices};
use crate::nn::Linear;
use crate::weights::Weights;

#[derive(Debug, Clone, Deserialize)]
pub struct ClipConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: String,
    pub projection_dim: usize,
    pub layer_norm_eps: f32,
}

impl ClipConfig {
    pub fn from_file(path: &Path) -> Result<ClipConfig> {
        Self::from_json(&read_text(path)?, path)
    }

    /// Parses and checks the text of a `config.json`; `path` names the file
    /// in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<ClipConfig> {
        let config: ClipConfig = parse_json(text, path)?;
        check_dims(
            path,
            &[
                ("vocab_size", config.vocab_size),
                ("hidden_size", config.hidden_size),
                ("intermediate_size", config.intermediate_size),
                ("num_hidden_layers", config.num_hidden_layers),
                ("num_attention_heads", config.num_attention_heads),
                ("max_position_embeddings", config.max_position_embeddings),
                ("projection_dim", config.projection_dim),
            ],
        )?;
        if !config.hidden_size.is_multiple_of(config.num_attention_heads) {
            return Err(config_error(
                path,
                format!(
                    "hidden_size {} does not split into {} attention heads",
                    config.hidden_size, config.num_attention_heads
                ),
            ));
        }
        Ok(config)
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    fn load(gpu: &Gpu, w: &Weights, d: usize, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: w.get(gpu, "weight", &[d])?,
            bias: w.get(gpu, "bias", &[d])?,
            eps,
        })
    }

    fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        layer_norm(gpu, x, Some(&self.weight), Some(&self.bias), self.eps)
    }
}

struct EncoderLayer {
    ln1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

pub struct ClipTextModel {
    pub config: ClipConfig,
    token_embedding: Tensor,
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
    text_projection: Linear,
    act: Unary,
}

/// What SD3 takes from a CLIP text encoder.
pub struct ClipOutput {
    /// `hidden_states[-2]` `[B, L, D]`: the input of the last layer.
    pub penultimate: Tensor,
    /// `text_embeds` `[B, P]`: the final-norm EOS token, projected.
    pub pooled: Tensor,
}

impl ClipTextModel {
    /// A folder with `config.json` and `model.safetensors` (or shards).
    pub fn load_dir(gpu: &Gpu, dir: &Path) -> Result<ClipTextModel> {
        let config = ClipConfig::from_file(&dir.join("config.json"))?;
        Self::load(gpu, &Weights::from_dir(dir, "model")?, config)
    }

    pub fn load(gpu: &Gpu, w: &Weights, config: ClipConfig) -> Result<ClipTextModel> {
        let (d, i, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        let act = match config.hidden_act.as_str() {
            "quick_gelu" => Unary::QuickGelu,
            "gelu" => Unary::GeluErf,
            other => {
                return Err(Error::Invalid(format!(
                    "CLIP hidden_act '{other}' is not supported (quick_gelu, gelu)"
                )))
            }
        };
        let t = w.pp("text_model");
        let layers = (0..config.num_hidden_layers)
            .map(|l| {
                let w = t.pp("encoder").pp("layers").pp(l);
                let attn = w.pp("self_attn");
                Ok(EncoderLayer {
                    ln1: LayerNorm::load(gpu, &w.pp("layer_norm1"), d, eps)?,
                    q: Linear::load(gpu, &attn.pp("q_proj"), d, d)?,
                    k: Linear::load(gpu, &attn.pp("k_proj"), d, d)?,
                    v: Linear::load(gpu, &attn.pp("v_proj"), d, d)?,
                    out: Linear::load(gpu, &attn.pp("out_proj"), d, d)?,
                    ln2: LayerNorm::load(gpu, &w.pp("layer_norm2"), d, eps)?,
                    fc1: Linear::load(gpu, &w.pp("mlp").pp("fc1"), i, d)?,
                    fc2: Linear::load(gpu, &w.pp("mlp").pp("fc2"), d, i)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let emb = t.pp("embeddings");
        Ok(ClipTextModel {
            token_embedding: emb
                .pp("token_embedding")
                .get(gpu, "weight", &[config.vocab_size, d])?,
            position_embedding: emb.pp("position_embedding").get(
                gpu,
                "weight",
                &[config.max_position_embeddings, d],
            )?,
            layers,
            final_layer_norm: LayerNorm::load(gpu, &t.pp("final_layer_norm"), d, eps)?,
            text_projection: Linear::load_without_bias(
                gpu,
                &w.pp("text_projection"),
                config.projection_dim,
                d,
            )?,
            act,
            config,
        })
    }

    /// Token ids `[B][L]` (L ≤ max positions) → penultimate states and pooled embedding.
    pub fn forward(&self, gpu: &Gpu, ids: &[Vec<u32>]) -> Result<ClipOutput> {
        let cfg = &self.config;
        let (b, l, d) = (ids.len(), ids.first().map_or(0, Vec::len), cfg.hidden_size);
        if b == 0 || l == 0 || l > cfg.max_position_embeddings || ids.iter().any(|r| r.len() != l) {
            return Err(Error::shape(
                "clip",
                format!(
                    "need B ≥ 1 rows of equal length ≤ {}",
                    cfg.max_position_embeddings
                ),
            ));
        }
        let flat: Vec<u32> = ids.concat();
        let tokens =
            gather(gpu, &self.token_embedding, &Indices::upload(gpu, &flat)?)?.reshape(&[b, l, d])?;
        let positions = gather(
            gpu,
            &self.position_embedding,
            &Indices::upload(gpu, &(0..l as u32).collect::<Vec<_>>())?,
        )?;
        let mut x = add(gpu, &tokens, &positions)?; // [B, L, D]
        let (h, dh) = (cfg.num_attention_heads, d / cfg.num_attention_heads);
        let heads = |t: Tensor| t.reshape(&[b, l, h, dh]);
        let mut penultimate = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            if i + 1 == self.layers.len() {
                penultimate = x.clone();
            }
            let y = layer.ln1.forward(gpu, &x)?;
            let (q, k, v) = (
                heads(layer.q.forward(gpu, &y)?)?,
                heads(layer.k.forward(gpu, &y)?)?,
                heads(layer.v.forward(gpu, &y)?)?,
            );
            let options = AttentionOptions {
                causal: Some(0),
                ..AttentionOptions::scale(1.0 / (dh as f32).sqrt())
            };
            let a = attention_with(gpu, &q, &k, &v, &options)?.reshape(&[b, l, d])?;
            x = add(gpu, &x, &layer.out.forward(gpu, &a)?)?;
            let y = layer.ln2.forward(gpu, &x)?;
            let y = unary(gpu, self.act, &layer.fc1.forward(gpu, &y)?)?;
            x = add(gpu, &x, &layer.fc2.forward(gpu, &y)?)?;
        }
        let last = self.final_layer_norm.forward(gpu, &x)?.reshape(&[b * l, d])?;
        // transformers' legacy pooling (eos_token_id == 2 in these configs):
        // the first position of the largest id, which is CLIP's EOS.
        let eos: Vec<u32> = ids
            .iter()
            .enumerate()
            .map(|(r, row)| {
                let max = row.iter().copied().max().unwrap_or(0);
                (r * l + row.iter().position(|&t| t == max).unwrap_or(0)) as u32
            })
            .collect();
        let pooled = self
            .text_projection
            .forward(gpu, &gather(gpu, &last, &Indices::upload(gpu, &eos)?)?)?;
        Ok(ClipOutput { penultimate, pooled })
    }
}
