//! A text-to-image request and the checks it passes before any work.

use crate::error::{Error, Result};
use crate::models::{Family, Precision};
use crate::ras::RasConfig;

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
    /// One prompt pair per image, replacing `prompt` and `negative_prompt`,
    /// when several requests that share everything else run as one batch
    /// (a server's batching); empty otherwise. SD3 only: Lumina's text rows
    /// are as long as its prompt, so its batches share one prompt.
    pub batch_prompts: Vec<BatchPrompt>,
}

/// One image's prompts in a batch of different requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPrompt {
    pub prompt: String,
    pub negative_prompt: String,
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
            batch_prompts: Vec::new(),
        }
    }

    /// Image `i`'s prompt and negative prompt.
    pub fn prompts_of(&self, i: usize) -> (&str, &str) {
        match self.batch_prompts.get(i) {
            Some(p) => (&p.prompt, &p.negative_prompt),
            None => (&self.prompt, &self.negative_prompt),
        }
    }

    pub(crate) fn check_batch_prompts(&self, family: Family) -> Result<()> {
        if self.batch_prompts.is_empty() {
            return Ok(());
        }
        if self.batch_prompts.len() != self.num_images {
            return Err(Error::Invalid(format!(
                "batch_prompts has {} entries for {} images; give one per image or none",
                self.batch_prompts.len(),
                self.num_images
            )));
        }
        if family == Family::Lumina && self.batch_prompts.iter().any(|p| *p != self.batch_prompts[0]) {
            return Err(Error::Invalid(
                "Lumina batches share one prompt (its text rows are as long as the prompt); \
                 run different prompts as separate requests"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(p: &str) -> BatchPrompt {
        BatchPrompt {
            prompt: p.into(),
            negative_prompt: String::new(),
        }
    }

    #[test]
    fn batch_prompts_are_one_per_image_and_shared_on_lumina() {
        let mut req = GenerateRequest::new("default");
        req.num_images = 2;
        assert!(req.check_batch_prompts(Family::Sd3).is_ok(), "none given");
        assert_eq!(req.prompts_of(1), ("default", ""));
        req.batch_prompts = vec![pair("a"), pair("b")];
        assert!(req.check_batch_prompts(Family::Sd3).is_ok());
        assert_eq!(req.prompts_of(1), ("b", ""));
        let err = req.check_batch_prompts(Family::Lumina).unwrap_err().to_string();
        assert!(err.contains("Lumina batches share one prompt"), "{err}");
        req.batch_prompts = vec![pair("a"), pair("a")];
        assert!(req.check_batch_prompts(Family::Lumina).is_ok());
        req.batch_prompts.pop();
        let err = req.check_batch_prompts(Family::Sd3).unwrap_err().to_string();
        assert!(err.contains("1 entries for 2 images"), "{err}");
    }
}
