//! `transformer/config.json` of a `LuminaNextDiT2DModel`; missing fields
//! take diffusers' defaults.

use std::path::Path;

use serde::Deserialize;

use crate::config::{check_dims, config_error, parse_json, read_text, MAX_DIM};
use crate::error::Result;

/// LuminaPipeline's VAE factor, hard-coded there: latent pixels → image
/// pixels in the RoPE scaling and the proportional-attention base length.
pub const VAE_SCALE: usize = 8;

#[derive(Debug, Clone, Deserialize)]
pub struct LuminaConfig {
    #[serde(default = "defaults::sample_size")]
    pub sample_size: usize,
    #[serde(default = "defaults::patch_size")]
    pub patch_size: usize,
    #[serde(default = "defaults::in_channels")]
    pub in_channels: usize,
    #[serde(default = "defaults::hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "defaults::num_layers")]
    pub num_layers: usize,
    #[serde(default = "defaults::num_attention_heads")]
    pub num_attention_heads: usize,
    /// `None`: as many as query heads.
    #[serde(default)]
    pub num_kv_heads: Option<usize>,
    #[serde(default = "defaults::multiple_of")]
    pub multiple_of: usize,
    #[serde(default)]
    pub ffn_dim_multiplier: Option<f64>,
    #[serde(default = "defaults::norm_eps")]
    pub norm_eps: f32,
    #[serde(default = "defaults::yes")]
    pub learn_sigma: bool,
    #[serde(default = "defaults::yes")]
    pub qk_norm: bool,
    #[serde(default = "defaults::cross_attention_dim")]
    pub cross_attention_dim: usize,
}

mod defaults {
    pub fn sample_size() -> usize {
        128
    }
    pub fn patch_size() -> usize {
        2
    }
    pub fn in_channels() -> usize {
        4
    }
    pub fn hidden_size() -> usize {
        2304
    }
    pub fn num_layers() -> usize {
        32
    }
    pub fn num_attention_heads() -> usize {
        32
    }
    pub fn multiple_of() -> usize {
        256
    }
    pub fn norm_eps() -> f32 {
        1e-5
    }
    pub fn yes() -> bool {
        true
    }
    pub fn cross_attention_dim() -> usize {
        2048
    }
}

impl LuminaConfig {
    /// `Alpha-VLLM/Lumina-Next-SFT-diffusers` (model-spec §B.1), with
    /// `num_layers` blocks (24 in the real model).
    pub fn lumina_next_sft(num_layers: usize) -> LuminaConfig {
        LuminaConfig {
            sample_size: 128,
            patch_size: 2,
            in_channels: 4,
            hidden_size: 2304,
            num_layers,
            num_attention_heads: 32,
            num_kv_heads: Some(8),
            multiple_of: 256,
            ffn_dim_multiplier: None,
            norm_eps: 1e-5,
            learn_sigma: true,
            qk_norm: true,
            cross_attention_dim: 2048,
        }
    }

    pub fn from_file(path: &Path) -> Result<LuminaConfig> {
        Self::from_json(&read_text(path)?, path)
    }

    /// Parses and checks the text of a `config.json`; `path` names the file
    /// in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<LuminaConfig> {
        let cfg: LuminaConfig = parse_json(text, path)?;
        check_dims(
            path,
            &[
                ("sample_size", cfg.sample_size),
                ("patch_size", cfg.patch_size),
                ("in_channels", cfg.in_channels),
                ("hidden_size", cfg.hidden_size),
                ("num_layers", cfg.num_layers),
                ("num_attention_heads", cfg.num_attention_heads),
                ("num_kv_heads", cfg.kv_heads()),
                ("multiple_of", cfg.multiple_of),
                ("cross_attention_dim", cfg.cross_attention_dim),
            ],
        )?;
        cfg.validate().map_err(|message| config_error(path, message))?;
        Ok(cfg)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if let Some(m) = self.ffn_dim_multiplier {
            // Bounded so that ffn_dim() stays a sane width.
            if !(m > 0.0 && m * (8 * self.hidden_size / 3) as f64 <= MAX_DIM as f64) {
                return Err(format!(
                    "ffn_dim_multiplier {m} must be positive and keep the feed-forward width at most {MAX_DIM}"
                ));
            }
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return Err(format!("norm_eps {} must be a finite number ≥ 0", self.norm_eps));
        }
        let (d, h, kv) = (self.hidden_size, self.num_attention_heads, self.kv_heads());
        if h == 0 || kv == 0 || !d.is_multiple_of(h) || !h.is_multiple_of(kv) {
            return Err(format!(
                "hidden_size {d} must split into num_attention_heads {h}, a multiple of num_kv_heads {kv}"
            ));
        }
        if !self.head_dim().is_multiple_of(4) {
            return Err(format!(
                "head dim {} must be a multiple of 4 (2-D RoPE)",
                self.head_dim()
            ));
        }
        if !self.qk_norm {
            return Err("qk_norm false is not supported (Lumina-Next checkpoints use true)".into());
        }
        if self.patch_size == 0 || self.multiple_of == 0 {
            return Err("patch_size and multiple_of must be positive".into());
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn kv_heads(&self) -> usize {
        self.num_kv_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of the conditioning vector `temb`: `min(hidden_size, 1024)`.
    pub fn temb_dim(&self) -> usize {
        self.hidden_size.min(1024)
    }

    /// Output channels: doubled by the learned variance.
    pub fn out_channels(&self) -> usize {
        if self.learn_sigma {
            2 * self.in_channels
        } else {
            self.in_channels
        }
    }

    /// `LuminaFeedForward`'s inner width: `int(8·D/3)`, times
    /// `ffn_dim_multiplier` (truncated) when set, rounded up to a multiple
    /// of `multiple_of`.
    pub fn ffn_dim(&self) -> usize {
        let mut inner = 8 * self.hidden_size / 3;
        if let Some(m) = self.ffn_dim_multiplier {
            inner = (m * inner as f64) as usize;
        }
        inner.div_ceil(self.multiple_of) * self.multiple_of
    }

    /// LuminaPipeline's `default_image_size`: the training resolution in
    /// image pixels.
    pub fn default_image_size(&self) -> usize {
        self.sample_size * VAE_SCALE
    }

    /// Floating-point operations of one forward (multiply-add = 2) from the
    /// shapes: every linear over image tokens (the cross-attention query
    /// computed once when shared), caption keys and values, and both
    /// attentions. 14.80 TFLOP for Lumina-Next-SFT at 1024² with 128
    /// caption tokens and the shared query (model-spec §F.2).
    pub fn forward_flops(&self, batch: usize, n_img: usize, n_txt: usize, shared_q: bool) -> f64 {
        let (d, kvw) = (
            self.hidden_size as f64,
            (self.kv_heads() * self.head_dim()) as f64,
        );
        let (n, l, f) = (n_img as f64, n_txt as f64, self.ffn_dim() as f64);
        let queries = if shared_q { 1.0 } else { 2.0 };
        let per_token = 2.0 * ((queries + 1.0) * d * d + 2.0 * d * kvw + 3.0 * d * f);
        let caption = 2.0 * l * 2.0 * self.cross_attention_dim as f64 * kvw;
        let attention = 4.0 * n * n * d + 4.0 * n * l * d;
        batch as f64 * self.num_layers as f64 * (n * per_token + caption + attention)
    }
}

#[cfg(test)]
mod tests {
    use super::LuminaConfig;

    #[test]
    fn ffn_width_and_flops_match_model_spec() {
        let cfg = LuminaConfig::lumina_next_sft(24);
        assert_eq!(cfg.ffn_dim(), 6144);
        assert_eq!(cfg.head_dim(), 72);
        let tflop = cfg.forward_flops(1, 4096, 128, true) / 1e12;
        assert!((tflop - 14.80).abs() < 0.05, "{tflop} TFLOP");
    }
}
