//! `GemmaModel` (Gemma 1, e.g. Gemma-2B; model-spec §D.4) as Lumina-Next's
//! text encoder: scaled embeddings, pre-norm decoder layers with Gemma's
//! `(1 + w)` RMSNorm, rotate-half RoPE, grouped-query causal attention over
//! the unpadded keys and a tanh-GELU gated MLP; f32 activations throughout.
//! Lumina reads `hidden_states[-2]`, so the last decoder layer and the final
//! norm are neither loaded nor run. Reference: transformers
//! `models/gemma/modeling_gemma.py` (v5.24.0, which made the fixtures).

use std::path::Path;

use serde::Deserialize;

use crate::config::{check_dims, config_error, parse_json, read_text};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::kernels::attention::{attention_with, AttentionOptions};
use crate::kernels::elementwise::{add, mul, scale, unary, Unary};
use crate::kernels::norm::rms_norm;
use crate::kernels::rope::{rope_pairs, RopePairs};
use crate::nn::Linear;
use crate::weights::Weights;

/// Which of transformers' `hidden_states` (the embeddings, then each decoder
/// layer's output) Lumina's pipeline takes, counted from the end:
/// `hidden_states[-2]`, the second-to-last layer's output.
pub const LUMINA_HIDDEN_STATE_FROM_END: usize = 2;

#[derive(Deserialize)]
struct RopeParameters {
    rope_type: Option<String>,
    rope_theta: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GemmaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    /// `rope_parameters.rope_theta` (transformers 5) or `rope_theta` (older files).
    #[serde(skip)]
    pub rope_theta: f64,
    #[serde(default)]
    pub attention_bias: bool,
    /// Gemma-3-style encoders attend both ways; Gemma 1 is causal.
    #[serde(default)]
    pub use_bidirectional_attention: Option<bool>,
}

impl GemmaConfig {
    /// Reads `config.json`, refusing what this encoder does not implement.
    pub fn from_file(path: &Path) -> Result<GemmaConfig> {
        Self::from_json(&read_text(path)?, path)
    }

    /// Parses and checks the text of a `config.json`; `path` names the file
    /// in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<GemmaConfig> {
        #[derive(Deserialize)]
        struct Extra {
            hidden_act: Option<String>,
            rope_theta: Option<f64>,
            rope_parameters: Option<RopeParameters>,
            rope_scaling: Option<serde_json::Value>,
        }
        let mut config: GemmaConfig = parse_json(text, path)?;
        let extra: Extra = parse_json(text, path)?;
        check_dims(
            path,
            &[
                ("vocab_size", config.vocab_size),
                ("hidden_size", config.hidden_size),
                ("intermediate_size", config.intermediate_size),
                ("num_hidden_layers", config.num_hidden_layers),
                ("num_attention_heads", config.num_attention_heads),
                ("num_key_value_heads", config.num_key_value_heads),
                ("head_dim", config.head_dim),
            ],
        )?;
        // transformers maps Gemma's legacy "gelu" to the tanh form; "gelu_new" is the same function.
        let act = extra.hidden_act.unwrap_or_else(|| "gelu_pytorch_tanh".into());
        if !["gelu", "gelu_pytorch_tanh", "gelu_new"].contains(&act.as_str()) {
            return Err(config_error(
                path,
                format!("hidden_act '{act}' is not supported (Gemma's tanh GELU)"),
            ));
        }
        let rope_type = extra.rope_parameters.as_ref().and_then(|r| r.rope_type.clone());
        if rope_type.as_deref().is_some_and(|t| t != "default")
            || extra.rope_scaling.as_ref().is_some_and(|s| !s.is_null())
        {
            return Err(config_error(
                path,
                "scaled RoPE is not supported (plain RoPE, as Gemma-2B)",
            ));
        }
        config.rope_theta = extra
            .rope_parameters
            .and_then(|r| r.rope_theta)
            .or(extra.rope_theta)
            .unwrap_or(10000.0);
        let heads = (config.num_attention_heads, config.num_key_value_heads);
        if heads.1 == 0 || !heads.0.is_multiple_of(heads.1) || !config.head_dim.is_multiple_of(2) {
            return Err(config_error(
                path,
                format!(
                    "{} query heads, {} kv heads and head_dim {} do not make a grouped-query attention \
                     with rotary pairs",
                    heads.0, heads.1, config.head_dim
                ),
            ));
        }
        if config.num_hidden_layers < LUMINA_HIDDEN_STATE_FROM_END {
            return Err(config_error(
                path,
                format!(
                    "{} layers leave no hidden_states[-{LUMINA_HIDDEN_STATE_FROM_END}]",
                    config.num_hidden_layers
                ),
            ));
        }
        Ok(config)
    }

    /// Decoder layers that run: those up to `hidden_states[-2]`.
    pub fn layers_run(&self) -> usize {
        self.num_hidden_layers + 1 - LUMINA_HIDDEN_STATE_FROM_END
    }
}

/// Gemma's RMSNorm, `x / rms(x) · (1 + w)`: `1 + w` is formed once in f32,
/// as transformers forms it in f32 before multiplying.
struct GemmaRmsNorm {
    one_plus_weight: Tensor,
    eps: f32,
}

impl GemmaRmsNorm {
    fn load(gpu: &Gpu, w: &Weights, dim: usize, eps: f32) -> Result<Self> {
        let weight: Vec<f32> = w.get_host("weight", &[dim])?.iter().map(|x| 1.0 + x).collect();
        Ok(GemmaRmsNorm {
            one_plus_weight: gpu.upload_weight_f32(&weight, &[dim])?,
            eps,
        })
    }

    fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        rms_norm(gpu, x, Some(&self.one_plus_weight), self.eps)
    }
}

struct Layer {
    input_layernorm: GemmaRmsNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    post_attention_layernorm: GemmaRmsNorm,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Layer {
    fn load(gpu: &Gpu, w: &Weights, c: &GemmaConfig) -> Result<Layer> {
        let (d, q, kv, ff) = (
            c.hidden_size,
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
            c.intermediate_size,
        );
        let attn = w.pp("self_attn");
        let proj = |name: &str, out: usize, inp: usize| {
            if c.attention_bias {
                Linear::load(gpu, &attn.pp(name), out, inp)
            } else {
                Linear::load_without_bias(gpu, &attn.pp(name), out, inp)
            }
        };
        let mlp = w.pp("mlp");
        Ok(Layer {
            input_layernorm: GemmaRmsNorm::load(gpu, &w.pp("input_layernorm"), d, c.rms_norm_eps)?,
            q_proj: proj("q_proj", q, d)?,
            k_proj: proj("k_proj", kv, d)?,
            v_proj: proj("v_proj", kv, d)?,
            o_proj: proj("o_proj", d, q)?,
            post_attention_layernorm: GemmaRmsNorm::load(
                gpu,
                &w.pp("post_attention_layernorm"),
                d,
                c.rms_norm_eps,
            )?,
            gate_proj: Linear::load_without_bias(gpu, &mlp.pp("gate_proj"), ff, d)?,
            up_proj: Linear::load_without_bias(gpu, &mlp.pp("up_proj"), ff, d)?,
            down_proj: Linear::load_without_bias(gpu, &mlp.pp("down_proj"), d, ff)?,
        })
    }
}

/// The rotary tables `[L, head_dim / 2]` for positions `0..L`, computed in
/// f32 as transformers does (`inv_freq = 1 / θ^(2k/D)`, angle = pos · inv_freq).
fn rope_tables(l: usize, head_dim: usize, theta: f64) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|k| 1.0 / (theta as f32).powf((2 * k) as f32 / head_dim as f32))
        .collect();
    let angles: Vec<f32> = (0..l)
        .flat_map(|t| inv_freq.iter().map(move |f| t as f32 * f))
        .collect();
    (
        angles.iter().map(|a| a.cos()).collect(),
        angles.iter().map(|a| a.sin()).collect(),
    )
}

/// Gemma as a text encoder, up to `hidden_states[-2]`.
pub struct GemmaEncoder {
    pub config: GemmaConfig,
    /// `embed_tokens`, read row by row from the file: Gemma-2B's table is
    /// 256000 × 2048 and only the prompt's rows are needed.
    embed: Weights,
    layers: Vec<Layer>,
}

impl GemmaEncoder {
    /// Loads `config.json` and `model.safetensors` (or the shards listed in
    /// `model.safetensors.index.json`) from a `text_encoder/` folder; keys may
    /// carry a leading `model.` (a saved `GemmaForCausalLM`).
    pub fn load_dir(gpu: &Gpu, dir: &Path) -> Result<GemmaEncoder> {
        let config = GemmaConfig::from_file(&dir.join("config.json"))?;
        Self::load(gpu, &Weights::from_dir(dir, "model")?, config)
    }

    pub fn load(gpu: &Gpu, w: &Weights, config: GemmaConfig) -> Result<GemmaEncoder> {
        let root = if w.contains("model.embed_tokens.weight") {
            w.pp("model")
        } else {
            w.clone()
        };
        let layers = (0..config.layers_run())
            .map(|i| Layer::load(gpu, &root.pp("layers").pp(i), &config))
            .collect::<Result<Vec<_>>>()?;
        let embed = root.pp("embed_tokens");
        // Checked (and marked as used) now rather than at the first prompt.
        embed.get_rows("weight", &[config.vocab_size, config.hidden_size], &[])?;
        let skipped = format!("layers.{}.", config.num_hidden_layers - 1);
        let unexpected: Vec<String> = w
            .unused()
            .into_iter()
            .filter(|k| {
                let k = k.strip_prefix("model.").unwrap_or(k);
                !(k.starts_with(&skipped) || k == "norm.weight" || k.starts_with("lm_head."))
            })
            .collect();
        if !unexpected.is_empty() {
            return Err(Error::WeightFile {
                path: "text_encoder".into(),
                message: format!(
                    "tensors a Gemma encoder does not use (wrong model type?): {}",
                    unexpected.join(", ")
                ),
            });
        }
        Ok(GemmaEncoder {
            embed,
            layers,
            config,
        })
    }

    /// Token ids and attention masks `[B][L]` (1 = real token; padding may be
    /// on either side) → `hidden_states[-2]` `[B, L, D]`. Positions are
    /// `0..L` whatever the padding, as transformers numbers them. Rows of
    /// padding come out finite (each pad query attends to no key and gets 0).
    pub fn forward(&self, gpu: &Gpu, ids: &[Vec<u32>], mask: &[Vec<u32>]) -> Result<Tensor> {
        let c = &self.config;
        let (b, l, d) = (ids.len(), ids.first().map_or(0, Vec::len), c.hidden_size);
        let rows_ok = |rows: &[Vec<u32>]| rows.len() == b && rows.iter().all(|r| r.len() == l);
        if b == 0 || l == 0 || !rows_ok(ids) || !rows_ok(mask) {
            return Err(Error::shape(
                "gemma",
                "need B ≥ 1 rows of ids and of mask, all of the same non-zero length",
            ));
        }
        if let Some(&bad) = ids.iter().flatten().find(|&&id| id as usize >= c.vocab_size) {
            return Err(Error::Invalid(format!(
                "token id {bad} is outside the text encoder's vocabulary of {}; the tokenizer does \
                 not belong to this text encoder",
                c.vocab_size
            )));
        }
        let (h, hkv, dh) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        // The embedding scale sqrt(D), rounded to the activation dtype (f32 here) as transformers does.
        let normalizer = (d as f64).sqrt() as f32;
        let embedded = self.embed.get_rows("weight", &[c.vocab_size, d], &ids.concat())?;
        let mut x = scale(gpu, &gpu.upload_f32(&embedded, &[b, l, d])?, normalizer)?; // [B, L, D]
        let key_bias: Vec<f32> = mask
            .concat()
            .iter()
            .map(|&m| if m != 0 { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        let key_bias = gpu.upload_f32(&key_bias, &[b, l])?;
        let (cos, sin) = rope_tables(l, dh, c.rope_theta);
        let (cos, sin) = (
            gpu.upload_f32(&cos, &[l, dh / 2])?,
            gpu.upload_f32(&sin, &[l, dh / 2])?,
        );
        let causal = (c.use_bidirectional_attention != Some(true)).then_some(0);
        let attention = AttentionOptions {
            key_bias: Some(&key_bias),
            causal,
            bias: None,
            scale: 1.0 / (dh as f32).sqrt(),
        };
        for layer in &self.layers {
            let y = layer.input_layernorm.forward(gpu, &x)?; // [B, L, D]
            let q = layer.q_proj.forward(gpu, &y)?.reshape(&[b, l, h, dh])?;
            let k = layer.k_proj.forward(gpu, &y)?.reshape(&[b, l, hkv, dh])?;
            let v = layer.v_proj.forward(gpu, &y)?.reshape(&[b, l, hkv, dh])?;
            let q = rope_pairs(gpu, &q, &cos, &sin, RopePairs::Halves)?;
            let k = rope_pairs(gpu, &k, &cos, &sin, RopePairs::Halves)?;
            let a = attention_with(gpu, &q, &k, &v, &attention)?.reshape(&[b, l, h * dh])?; // [B, L, H·Dh]
            x = add(gpu, &x, &layer.o_proj.forward(gpu, &a)?)?; // [B, L, D]
            let y = layer.post_attention_layernorm.forward(gpu, &x)?;
            let gate = unary(gpu, Unary::GeluTanh, &layer.gate_proj.forward(gpu, &y)?)?; // [B, L, I]
            let up = layer.up_proj.forward(gpu, &y)?;
            x = add(gpu, &x, &layer.down_proj.forward(gpu, &mul(gpu, &gate, &up)?)?)?;
            // [B, L, D]
        }
        Ok(x)
    }
}
