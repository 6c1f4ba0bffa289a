//! `vae/config.json` of an `AutoencoderKL`.

use std::path::Path;

use serde::Deserialize;

use crate::config::{check_dims, config_error, parse_json, read_text};
use crate::error::Result;

#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    pub latent_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    pub scaling_factor: f32,
    #[serde(default)]
    pub shift_factor: Option<f32>,
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
}

const MAX_BLOCKS: usize = 16;

fn yes() -> bool {
    true
}

impl VaeConfig {
    pub fn from_file(path: &Path) -> Result<VaeConfig> {
        Self::from_json(&read_text(path)?, path)
    }

    /// Parses and checks the text of a `config.json`; `path` names the file
    /// in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<VaeConfig> {
        let err = |message: String| config_error(path, message);
        let cfg: VaeConfig = parse_json(text, path)?;
        check_dims(
            path,
            &[
                ("latent_channels", cfg.latent_channels),
                ("out_channels", cfg.out_channels),
                ("layers_per_block", cfg.layers_per_block),
                ("norm_num_groups", cfg.norm_num_groups),
            ],
        )?;
        // Each block doubles the image side: 16 blocks would already be a
        // factor of 32768 (SD3 has 4).
        if cfg.block_out_channels.len() > MAX_BLOCKS {
            return Err(err(format!(
                "{} block_out_channels; at most {MAX_BLOCKS} blocks are supported",
                cfg.block_out_channels.len()
            )));
        }
        let named: Vec<_> = cfg
            .block_out_channels
            .iter()
            .map(|&c| ("block_out_channels", c))
            .collect();
        check_dims(path, &named)?;
        // The decoder multiplies by 1 / scaling_factor: a subnormal one is as bad as 0.
        if !cfg.scaling_factor.is_finite()
            || !(1.0 / cfg.scaling_factor).is_finite()
            || !cfg.shift_factor.unwrap_or(0.0).is_finite()
        {
            return Err(err(
                "scaling_factor must be a finite non-zero number and shift_factor finite".into(),
            ));
        }
        if cfg.block_out_channels.is_empty()
            || cfg
                .block_out_channels
                .iter()
                .any(|c| c % cfg.norm_num_groups != 0)
        {
            return Err(err(
                "block_out_channels must be non-empty multiples of norm_num_groups".into(),
            ));
        }
        Ok(cfg)
    }

    /// Pixels per latent pixel along each side (8 for SD3).
    pub fn scale_factor(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }
}
