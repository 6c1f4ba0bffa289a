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
    /// one row per image.
    pub fn encode(&self, gpu: &Gpu, req: &GenerateRequest) -> Result<(Conditioning, Option<Conditioning>)> {
        let guided = crate::sampling::guided(req.guidance);
        match self {
            TextStage::Sd3 { encoders, joint_dim } => {
                let embed = |prompt: &str| {
                    let prompts = vec![prompt; req.num_images];
                    encoders.encode(gpu, &prompts, req.max_sequence_length, *joint_dim)
                };
                let cond = embed(&req.prompt)?.into_conditioning();
                let uncond = guided
                    .then(|| embed(&req.negative_prompt))
                    .transpose()?
                    .map(PromptEmbeds::into_conditioning);
                Ok((cond, uncond))
            }
            TextStage::Lumina(encoder) => encoder.encode(
                gpu,
                &req.prompt,
                guided.then_some(req.negative_prompt.as_str()),
                req.num_images,
                req.max_sequence_length,
            ),
        }
    }
}
