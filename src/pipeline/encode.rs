//! Prompt encoding as `StableDiffusion3Pipeline.encode_prompt` does it
//! (model-spec §C.1): both CLIPs' penultimate states side by side, zero-padded
//! to the T5 width, then the T5 states (or zeros without T5); pooled = both
//! CLIP projections side by side.

use std::path::Path;

use crate::config::{config_error, read_json};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::models::text::{ClipTextModel, T5Encoder};
use crate::models::Conditioning;
use crate::text::{ClipTokenizer, T5Tokenizer, CLIP_MAX_LEN};

use super::model_dir::ModelDir;

/// `[B, C + max_sequence_length, joint_dim]` and `[B, pooled_dim]`, C the
/// CLIP context (77 in SD3); without T5 the identical zero rows are kept
/// once, as `[B, C + 1, joint_dim]` with `text_weights` saying how many rows
/// each stands for.
pub struct PromptEmbeds {
    pub embeds: Tensor,
    pub pooled: Tensor,
    pub text_weights: Option<Vec<f32>>,
}

impl PromptEmbeds {
    /// The transformer's view of these embeddings.
    pub fn into_conditioning(self) -> Conditioning {
        Conditioning {
            tokens: self.embeds,
            pooled: Some(self.pooled),
            mask: None,
            text_weights: self.text_weights,
        }
    }

    /// The embeddings with every row repeated as often as it stands for
    /// (what diffusers' `encode_prompt` returns).
    pub fn expanded(&self, gpu: &Gpu) -> Result<Tensor> {
        let Some(w) = &self.text_weights else {
            return Ok(self.embeds.clone());
        };
        let &[b, l, d] = self.embeds.shape() else {
            return Err(Error::shape("expanded", "embeddings must be [B, L, D]"));
        };
        let values = gpu.read_f32(&self.embeds)?;
        let total: usize = w.iter().map(|&m| m as usize).sum();
        let mut out = Vec::with_capacity(b * total * d);
        for r in 0..b {
            for (t, &m) in w.iter().enumerate() {
                for _ in 0..m as usize {
                    out.extend_from_slice(&values[(r * l + t) * d..][..d]);
                }
            }
        }
        gpu.upload_f32(&out, &[b, total, d])
    }
}

/// The three tokenizers and text encoders of an SD3 folder.
pub struct TextEncoders {
    /// The CLIP context both prompts are padded to: `tokenizer/`'s
    /// `model_max_length`, as diffusers' `tokenizer_max_length`.
    clip_len: usize,
    clip_l: (ClipTokenizer, ClipTextModel),
    clip_g: (ClipTokenizer, ClipTextModel),
    t5: Option<(T5Tokenizer, T5Encoder)>,
}

impl TextEncoders {
    /// Loads the CLIPs, and T5 when the folder has it and `use_t5` is set.
    pub fn load(gpu: &Gpu, dir: &ModelDir, use_t5: bool) -> Result<TextEncoders> {
        let l_config_path = dir.component("tokenizer").join("tokenizer_config.json");
        let (tok_l, l_config) = clip_tokenizer(&dir.component("tokenizer"))?;
        let (tok_g, _) = clip_tokenizer(&dir.component("tokenizer_2"))?;
        let clip_len = clip_context_len(&l_config, &l_config_path)?;
        let encoder = |enc: &str| -> Result<_> {
            let model = ClipTextModel::load_dir(gpu, &dir.component(enc))?;
            if clip_len > model.config.max_position_embeddings {
                return Err(config_error(
                    &l_config_path,
                    format!(
                        "model_max_length {clip_len} exceeds {enc}'s {} positions; set it to at most that",
                        model.config.max_position_embeddings
                    ),
                ));
            }
            Ok(model)
        };
        let t5 = if use_t5 && dir.has_t5 {
            Some((
                T5Tokenizer::from_file(dir.component("tokenizer_3").join("tokenizer.json"))?,
                T5Encoder::load_dir(gpu, &dir.component("text_encoder_3"))?,
            ))
        } else {
            None
        };
        Ok(TextEncoders {
            clip_len,
            clip_l: (tok_l, encoder("text_encoder")?),
            clip_g: (tok_g, encoder("text_encoder_2")?),
            t5,
        })
    }

    pub fn has_t5(&self) -> bool {
        self.t5.is_some()
    }

    /// Embeds each prompt; `joint_dim` is the transformer's
    /// `joint_attention_dim` (the T5 width, also used for the zeros without T5).
    pub fn encode(
        &self,
        gpu: &Gpu,
        prompts: &[&str],
        max_sequence_length: usize,
        joint_dim: usize,
    ) -> Result<PromptEmbeds> {
        let (b, s, c) = (prompts.len(), max_sequence_length, self.clip_len);
        let run_clip = |(tok, model): &(ClipTokenizer, ClipTextModel)| -> Result<_> {
            let ids = prompts
                .iter()
                .map(|p| tok.encode(p, c))
                .collect::<Result<Vec<_>>>()?;
            let out = model.forward(gpu, &ids)?;
            Ok((
                gpu.read_f32(&out.penultimate)?,
                model.config.hidden_size,
                gpu.read_f32(&out.pooled)?,
                model.config.projection_dim,
            ))
        };
        let (l_states, dl, l_pooled, pl) = run_clip(&self.clip_l)?;
        let (g_states, dg, g_pooled, pg) = run_clip(&self.clip_g)?;
        if dl + dg > joint_dim {
            return Err(Error::Invalid(format!(
                "the CLIP widths {dl} + {dg} exceed the transformer's joint_attention_dim {joint_dim}"
            )));
        }
        let t5_states = match &self.t5 {
            Some((tok, model)) => {
                if model.config.d_model != joint_dim {
                    return Err(Error::Invalid(format!(
                        "T5 width {} differs from the transformer's joint_attention_dim {joint_dim}",
                        model.config.d_model
                    )));
                }
                let ids = prompts
                    .iter()
                    .map(|p| tok.encode(p, s))
                    .collect::<Result<Vec<_>>>()?;
                gpu.read_f32(&model.forward(gpu, &ids)?)?
            }
            None => vec![0.0; b * joint_dim],
        };
        // Without T5 its s zero rows are one row standing for s.
        let t5_rows = if self.t5.is_some() { s } else { 1 };
        let len = c + t5_rows;
        let mut embeds = vec![0.0f32; b * len * joint_dim];
        let mut pooled = Vec::with_capacity(b * (pl + pg));
        for r in 0..b {
            for t in 0..c {
                let row = &mut embeds[(r * len + t) * joint_dim..][..joint_dim];
                row[..dl].copy_from_slice(&l_states[(r * c + t) * dl..][..dl]);
                row[dl..dl + dg].copy_from_slice(&g_states[(r * c + t) * dg..][..dg]);
            }
            embeds[(r * len + c) * joint_dim..][..t5_rows * joint_dim]
                .copy_from_slice(&t5_states[r * t5_rows * joint_dim..][..t5_rows * joint_dim]);
            pooled.extend_from_slice(&l_pooled[r * pl..][..pl]);
            pooled.extend_from_slice(&g_pooled[r * pg..][..pg]);
        }
        Ok(PromptEmbeds {
            embeds: gpu.upload_f32(&embeds, &[b, len, joint_dim])?,
            pooled: gpu.upload_f32(&pooled, &[b, pl + pg])?,
            text_weights: self.t5.is_none().then(|| {
                let mut w = vec![1.0; c];
                w.push(s as f32);
                w
            }),
        })
    }
}

/// `model_max_length` of a CLIP tokenizer's `tokenizer_config.json` (77
/// when it has none, as in CLIP).
fn clip_context_len(config: &serde_json::Value, config_path: &Path) -> Result<usize> {
    match &config["model_max_length"] {
        serde_json::Value::Null => Ok(CLIP_MAX_LEN),
        v => v
            .as_u64()
            .filter(|n| (2..=4096).contains(n))
            .map(|n| n as usize)
            .ok_or_else(|| {
                config_error(
                    config_path,
                    format!("model_max_length {v} is not a CLIP context length; CLIP's is 77"),
                )
            }),
    }
}

/// A CLIP tokenizer folder (`vocab.json`, `merges.txt`), padding with the
/// `pad_token` of its `tokenizer_config.json` (`<|endoftext|>` in SD3's
/// `tokenizer/`, `!` in `tokenizer_2/`); with that config.
fn clip_tokenizer(dir: &Path) -> Result<(ClipTokenizer, serde_json::Value)> {
    let config_path = dir.join("tokenizer_config.json");
    let err = |message: String| config_error(&config_path, message);
    let config: serde_json::Value = read_json(&config_path)?;
    let pad = match &config["pad_token"] {
        serde_json::Value::String(s) => s.clone(),
        v => v["content"]
            .as_str()
            .ok_or_else(|| err("has no pad_token".into()))?
            .to_owned(),
    };
    let vocab_path = dir.join("vocab.json");
    let vocab: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&vocab_path).map_err(
        |e| Error::TokenizerFile {
            path: vocab_path.display().to_string(),
            message: e.to_string(),
        },
    )?)
    .map_err(|e| Error::TokenizerFile {
        path: vocab_path.display().to_string(),
        message: e.to_string(),
    })?;
    let pad_id = vocab[&pad].as_u64().ok_or_else(|| Error::TokenizerFile {
        path: vocab_path.display().to_string(),
        message: format!("has no pad token '{pad}' (named in tokenizer_config.json)"),
    })?;
    let tokenizer = ClipTokenizer::from_files(&vocab_path, dir.join("merges.txt"), pad_id as u32)?;
    Ok((tokenizer, config))
}
