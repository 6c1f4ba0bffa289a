//! `transformer/config.json` of an `SD3Transformer2DModel`.

use std::path::Path;

use serde::Deserialize;

use crate::config::{check_dims, config_error, parse_json, read_text};
use crate::error::Result;

#[derive(Debug, Clone, Deserialize)]
pub struct Sd3Config {
    pub sample_size: usize,
    pub patch_size: usize,
    pub in_channels: usize,
    pub out_channels: Option<usize>,
    pub num_layers: usize,
    pub attention_head_dim: usize,
    pub num_attention_heads: usize,
    pub joint_attention_dim: usize,
    pub caption_projection_dim: usize,
    pub pooled_projection_dim: usize,
    pub pos_embed_max_size: Option<usize>,
    #[serde(default)]
    pub qk_norm: Option<String>,
    #[serde(default)]
    pub dual_attention_layers: Vec<usize>,
}

impl Sd3Config {
    /// `stabilityai/stable-diffusion-3-medium-diffusers` (model-spec §A.1),
    /// with `num_layers` blocks (24 in the real model).
    pub fn sd3_medium(num_layers: usize) -> Sd3Config {
        Sd3Config {
            sample_size: 128,
            patch_size: 2,
            in_channels: 16,
            out_channels: Some(16),
            num_layers,
            attention_head_dim: 64,
            num_attention_heads: 24,
            joint_attention_dim: 4096,
            caption_projection_dim: 1536,
            pooled_projection_dim: 2048,
            pos_embed_max_size: Some(192),
            qk_norm: None,
            dual_attention_layers: Vec::new(),
        }
    }

    /// Floating-point operations of one forward (multiply-add = 2) from the
    /// shapes: the matmuls of every linear and of attention; norms and
    /// elementwise ops are ignored. 8.90 TFLOP for SD3-medium at 1024²
    /// (4096 image + 333 text tokens, batch 1), as in model-spec §F.
    pub fn forward_flops(&self, batch: usize, n_img: usize, n_txt: usize) -> f64 {
        let (d, layers) = (self.inner_dim() as f64, self.num_layers as f64);
        let (n, l) = (n_img as f64, n_txt as f64);
        let p = (self.patch_size * self.patch_size) as f64;
        // q, k, v, out (4·D²) and the 4× MLP (8·D²) per token, ×2 per multiply-add.
        let per_token = 2.0 * 12.0 * d * d;
        let blocks = layers * (n + l) * per_token + layers * 4.0 * (n + l) * (n + l) * d;
        // The last block drops text queries, text output and text MLP.
        let last = l * 2.0 * 10.0 * d * d + 4.0 * l * (n + l) * d;
        let embed = 2.0 * n * d * p * self.in_channels as f64
            + 2.0 * l * d * self.joint_attention_dim as f64
            + 2.0 * n * d * p * self.out_channels() as f64;
        batch as f64 * (blocks - last + embed)
    }

    pub fn from_file(path: &Path) -> Result<Sd3Config> {
        Self::from_json(&read_text(path)?, path)
    }

    /// Parses and checks the text of a `config.json`; `path` names the file
    /// in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Sd3Config> {
        let err = |message: String| config_error(path, message);
        let cfg: Sd3Config = parse_json(text, path)?;
        check_dims(
            path,
            &[
                ("sample_size", cfg.sample_size),
                ("patch_size", cfg.patch_size),
                ("in_channels", cfg.in_channels),
                ("out_channels", cfg.out_channels()),
                ("num_layers", cfg.num_layers),
                ("attention_head_dim", cfg.attention_head_dim),
                ("num_attention_heads", cfg.num_attention_heads),
                ("joint_attention_dim", cfg.joint_attention_dim),
                ("caption_projection_dim", cfg.caption_projection_dim),
                ("pooled_projection_dim", cfg.pooled_projection_dim),
            ],
        )?;
        // After patch_size: without a table, the grid is sample_size / patch_size.
        check_dims(path, &[("pos_embed_max_size", cfg.pos_grid())])?;
        if !cfg.dual_attention_layers.is_empty() {
            return Err(err("SD3.5 dual-attention layers are not supported yet".into()));
        }
        match cfg.qk_norm.as_deref() {
            None | Some("rms_norm") => {}
            Some(other) => return Err(err(format!("qk_norm '{other}' is not supported (only rms_norm)"))),
        }
        // Checked: each factor is at most MAX_DIM, their product may not be.
        let inner = cfg.num_attention_heads.checked_mul(cfg.attention_head_dim);
        if inner != Some(cfg.caption_projection_dim) {
            return Err(err("caption_projection_dim must equal heads × head dim".into()));
        }
        Ok(cfg)
    }

    /// Model width D = heads × head dim.
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    pub fn out_channels(&self) -> usize {
        self.out_channels.unwrap_or(self.in_channels)
    }

    /// Side of the stored square position table, in patches.
    pub fn pos_grid(&self) -> usize {
        self.pos_embed_max_size.unwrap_or_else(|| self.base_size())
    }

    /// `sample_size / patch_size`: the grid the sin-cos table is scaled to.
    pub fn base_size(&self) -> usize {
        self.sample_size / self.patch_size
    }
}

#[cfg(test)]
mod tests {
    use super::Sd3Config;

    #[test]
    fn flop_count_matches_model_spec() {
        let tflop = Sd3Config::sd3_medium(24).forward_flops(1, 4096, 333) / 1e12;
        assert!((tflop - 8.90).abs() < 0.05, "{tflop} TFLOP");
    }
}
