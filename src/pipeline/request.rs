//! A text-to-image request and the checks it passes before any work.

use crate::error::{Error, Result};
use crate::models::{Family, Precision};
use crate::ras::RasConfig;

use super::generate::Pipeline;

/// One text-to-image job: `num_images` images of one prompt.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: String,
    pub negative_prompt: String,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    /// Classifier-free guidance scale; ≤ 1 turns guidance off.
    pub guidance: f32,
    pub seed: u64,
    pub num_images: usize,
    /// T5 tokens (diffusers' `max_sequence_length`).
    pub max_sequence_length: usize,
    pub ras: RasConfig,
    /// `F16` keeps the RAS K/V cache in f16 (needs shader-f16).
    pub precision: Precision,
    /// `[num_images, C, H/f, W/f]` values replacing the seeded noise.
    pub latents_init: Option<Vec<f32>>,
}

impl GenerateRequest {
    /// SD3's defaults: 1024², 28 steps, guidance 7, seed 0, RAS at the
    /// original's SD3 settings.
    pub fn new(prompt: &str) -> GenerateRequest {
        GenerateRequest {
            prompt: prompt.to_owned(),
            negative_prompt: String::new(),
            width: 1024,
            height: 1024,
            steps: 28,
            guidance: 7.0,
            seed: 0,
            num_images: 1,
            max_sequence_length: 256,
            ras: RasConfig::sd3_example(28),
            precision: Precision::F32,
            latents_init: None,
        }
    }
}

impl Pipeline {
    /// Everything that can be checked before any work starts.
    pub fn validate(&self, req: &GenerateRequest) -> Result<()> {
        let m = self.size_multiple();
        let bad = |msg: String| Err(Error::Invalid(msg));
        if req.width == 0 || req.height == 0 || !req.width.is_multiple_of(m) || !req.height.is_multiple_of(m)
        {
            return bad(format!(
                "width and height must be positive multiples of {m} (VAE factor × patch size), got {}x{}",
                req.width, req.height
            ));
        }
        let grid = self.transformer_info.max_grid * m;
        if req.width > grid || req.height > grid {
            return bad(format!(
                "{}x{} exceeds the largest size this transformer's position table covers ({grid}x{grid})",
                req.width, req.height
            ));
        }
        if req.steps == 0 || req.num_images == 0 || req.max_sequence_length == 0 {
            return bad("--steps, --num-images and --max-sequence-length must be at least 1".into());
        }
        if self.family() == Family::Lumina && !req.max_sequence_length.is_multiple_of(8) {
            return bad(format!(
                "--max-sequence-length {} must be a multiple of 8 for Lumina (Gemma's prompt is \
                 padded to a multiple of 8 tokens, and transformers refuses a cut that is not one)",
                req.max_sequence_length
            ));
        }
        if !req.guidance.is_finite() {
            return bad("--guidance must be a finite number".into());
        }
        req.ras.validate(req.steps)?;
        if let Some(latents) = &req.latents_init {
            let shape = self.latent_shape(req);
            if latents.len() != shape.iter().product::<usize>() {
                return bad(format!(
                    "latents_init has {} values; this request needs {shape:?}",
                    latents.len()
                ));
            }
        }
        Ok(())
    }
}
