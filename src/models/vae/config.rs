//! `vae/config.json` of an `AutoencoderKL`.

use std::path::Path;

use serde::Deserialize;

use crate::config::{config_error, read_json};
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

fn yes() -> bool {
    true
}

impl VaeConfig {
    pub fn from_file(path: &Path) -> Result<VaeConfig> {
        let err = |message: String| config_error(path, message);
        let cfg: VaeConfig = read_json(path)?;
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
