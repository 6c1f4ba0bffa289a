//! What a pipeline knows of its transformer before loading it: read from
//! the transformer's config alone.

use crate::error::Result;
use crate::models::lumina::LuminaConfig;
use crate::models::sd3::Sd3Config;
use crate::models::Family;

use super::model_dir::ModelDir;

/// Sides of the RoPE table LuminaPipeline builds (tokens): the largest
/// latent grid it can generate.
const LUMINA_ROPE_GRID: usize = 384;

/// What the pipeline needs to know of its transformer before loading it.
#[derive(Debug, Clone)]
pub struct TransformerInfo {
    /// Native latent side (`sample_size`).
    pub sample_size: usize,
    pub patch_size: usize,
    pub in_channels: usize,
    /// Largest latent side in tokens (SD3's position table, the RoPE table
    /// LuminaPipeline builds).
    pub max_grid: usize,
    /// SD3's `joint_attention_dim`: the text encoders pad to it (0 otherwise).
    pub joint_dim: usize,
    /// Hidden width and blocks, for the memory estimate.
    pub hidden: usize,
    pub layers: usize,
}

impl TransformerInfo {
    pub(crate) fn read(dir: &ModelDir) -> Result<TransformerInfo> {
        let path = dir.component("transformer").join("config.json");
        Ok(match dir.family {
            Family::Sd3 => {
                let c = Sd3Config::from_file(&path)?;
                TransformerInfo {
                    sample_size: c.sample_size,
                    patch_size: c.patch_size,
                    in_channels: c.in_channels,
                    max_grid: c.pos_grid(),
                    joint_dim: c.joint_attention_dim,
                    hidden: c.num_attention_heads * c.attention_head_dim,
                    layers: c.num_layers,
                }
            }
            Family::Lumina => {
                let c = LuminaConfig::from_file(&path)?;
                TransformerInfo {
                    sample_size: c.sample_size,
                    patch_size: c.patch_size,
                    in_channels: c.in_channels,
                    max_grid: LUMINA_ROPE_GRID,
                    joint_dim: 0,
                    hidden: c.hidden_size,
                    layers: c.num_layers,
                }
            }
        })
    }
}
