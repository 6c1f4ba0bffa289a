//! `transformer/config.json` of an `SD3Transformer2DModel`.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

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
    pub fn from_file(path: &Path) -> Result<Sd3Config> {
        let err = |message: String| Error::Config {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let cfg: Sd3Config = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if !cfg.dual_attention_layers.is_empty() {
            return Err(err("SD3.5 dual-attention layers are not supported yet".into()));
        }
        match cfg.qk_norm.as_deref() {
            None | Some("rms_norm") => {}
            Some(other) => return Err(err(format!("qk_norm '{other}' is not supported (only rms_norm)"))),
        }
        if cfg.caption_projection_dim != cfg.inner_dim() {
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
        self.pos_embed_max_size
            .unwrap_or(self.sample_size / self.patch_size)
    }

    /// `sample_size / patch_size`: the grid the sin-cos table is scaled to.
    pub fn base_size(&self) -> usize {
        self.sample_size / self.patch_size
    }
}
