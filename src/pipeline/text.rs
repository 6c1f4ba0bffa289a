//! A pipeline's text stage: prompt → the transformer's conditioning, per
//! model family (SD3: CLIP-L + bigG + T5; Lumina-Next: Gemma).

use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::{Conditioning, Family};

use super::encode::{PromptEmbeds, TextEncoders};
use super::lumina_encode::LuminaTextEncoder;
use super::model_dir::ModelDir;
use super::request::GenerateRequest;

pub(crate) enum TextStage {
    Sd3 {
        encoders: Box<TextEncoders>,
        /// The transformer's `joint_attention_dim` (T5 width).
        joint_dim: usize,
    },
    Lumina(Box<LuminaTextEncoder>),
}

impl TextStage {
    pub fn load(gpu: &Gpu, dir: &ModelDir, use_t5: bool, joint_dim: usize) -> Result<TextStage> {
        Ok(match dir.family {
            Family::Sd3 => TextStage::Sd3 {
                encoders: Box::new(TextEncoders::load(gpu, dir, use_t5)?),
                joint_dim,
            },
            Family::Lumina => TextStage::Lumina(Box::new(LuminaTextEncoder::load(gpu, dir)?)),
        })
    }

    /// The prompt's conditioning and, with guidance, the negative prompt's;
    /// one row per image (each image's own prompts in a batch of requests).
    pub fn encode(&self, gpu: &Gpu, req: &GenerateRequest) -> Result<(Conditioning, Option<Conditioning>)> {
        let guided = crate::sampling::guided(req.guidance);
        match self {
            TextStage::Sd3 { encoders, joint_dim } => {
                let (prompts, negatives): (Vec<&str>, Vec<&str>) =
                    (0..req.num_images).map(|i| req.prompts_of(i)).unzip();
                let embed = |texts: &[&str]| encoders.encode(gpu, texts, req.max_sequence_length, *joint_dim);
                let cond = embed(&prompts)?.into_conditioning();
                let uncond = guided
                    .then(|| embed(&negatives))
                    .transpose()?
                    .map(PromptEmbeds::into_conditioning);
                Ok((cond, uncond))
            }
            TextStage::Lumina(encoder) => {
                // One prompt pair for the whole batch (checked by `validate`).
                let (prompt, negative) = req.prompts_of(0);
                encoder.encode(
                    gpu,
                    prompt,
                    guided.then_some(negative),
                    req.num_images,
                    req.max_sequence_length,
                )
            }
        }
    }
}
