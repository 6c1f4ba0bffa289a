//! Models, one folder each. A model's `forward` reads top to bottom like the
//! paper's diagram, with the shape of each intermediate in a comment.

pub mod dit;
pub mod lumina;
pub mod sd3;
pub mod text;
pub mod vae;

pub use dit::{memoized, Conditioning, Dit, DitCall, GuidanceRule, KvCache, Memos, Precision, RunMemo};

use std::path::Path;

use crate::config::{config_error, read_json};
use crate::error::Result;
use crate::gpu::Gpu;

/// The transformer classes `ras` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `SD3Transformer2DModel` (Stable Diffusion 3 / 3.5 MMDiT).
    Sd3,
    /// `LuminaNextDiT2DModel` (Lumina-Next).
    Lumina,
}

impl Family {
    /// The family of a diffusers `transformer/` folder, from the
    /// `_class_name` of its config.json.
    pub fn of_transformer(dir: &Path) -> Result<Family> {
        let path = dir.join("config.json");
        let json: serde_json::Value = read_json(&path)?;
        match json["_class_name"].as_str().unwrap_or("") {
            "SD3Transformer2DModel" => Ok(Family::Sd3),
            "LuminaNextDiT2DModel" => Ok(Family::Lumina),
            other => Err(config_error(
                &path,
                format!(
                    "_class_name is '{other}'; ras runs SD3Transformer2DModel \
                     (Stable Diffusion 3) and LuminaNextDiT2DModel (Lumina-Next) transformers"
                ),
            )),
        }
    }

    /// The family a diffusers pipeline class (`model_index.json`'s
    /// `_class_name`) runs.
    pub fn of_pipeline(class: &str) -> Option<Family> {
        match class {
            c if c.starts_with("StableDiffusion3") => Some(Family::Sd3),
            // LuminaText2ImgPipeline is diffusers' deprecated alias.
            "LuminaPipeline" | "LuminaText2ImgPipeline" => Some(Family::Lumina),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Sd3 => "Stable Diffusion 3",
            Family::Lumina => "Lumina-Next",
        }
    }
}

/// Loads a diffusers `transformer/` folder of any supported family.
pub fn load_transformer(gpu: &Gpu, dir: &Path) -> Result<Box<dyn Dit>> {
    Ok(match Family::of_transformer(dir)? {
        Family::Sd3 => Box::new(sd3::Sd3Transformer::load_dir(gpu, dir)?),
        Family::Lumina => Box::new(lumina::LuminaTransformer::load_dir(gpu, dir)?),
    })
}
