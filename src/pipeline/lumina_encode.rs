//! Prompt encoding as diffusers' `LuminaPipeline.encode_prompt` does it
//! (model-spec §C.3, §D.4): Gemma's `hidden_states[-2]` of the lower-cased,
//! stripped prompt, left padded to a multiple of 8 tokens, with its attention
//! mask; the negative prompt (as given, not pre-processed) padded or cut to
//! the prompt's length; each repeated once per image.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::rows::{gather, Indices};
use crate::models::text::GemmaEncoder;
use crate::models::Conditioning;
use crate::text::GemmaTokenizer;

use super::model_dir::ModelDir;

/// The `tokenizer/` and `text_encoder/` of a Lumina folder.
pub struct LuminaTextEncoder {
    tokenizer: GemmaTokenizer,
    encoder: GemmaEncoder,
}

impl LuminaTextEncoder {
    pub fn load(gpu: &Gpu, model_dir: &ModelDir) -> Result<LuminaTextEncoder> {
        Ok(LuminaTextEncoder {
            tokenizer: GemmaTokenizer::from_dir(&model_dir.component("tokenizer"))?,
            encoder: GemmaEncoder::load_dir(gpu, &model_dir.component("text_encoder"))?,
        })
    }

    pub fn tokenizer(&self) -> &GemmaTokenizer {
        &self.tokenizer
    }

    /// The prompt's conditioning and, when `negative_prompt` is given (the
    /// pipeline's default is `""`; `None` = no classifier-free guidance, as
    /// with diffusers' `guidance_scale <= 1`), the negative one: tokens
    /// `[num_images, L, D]` with L the prompt's padded length (at most
    /// `max_sequence_length`, which must be a multiple of 8) and the mask
    /// `[num_images·L]`, exactly diffusers' `prompt_embeds` /
    /// `prompt_attention_mask` and the negative ones.
    pub fn encode(
        &self,
        gpu: &Gpu,
        prompt: &str,
        negative_prompt: Option<&str>,
        num_images: usize,
        max_sequence_length: usize,
    ) -> Result<(Conditioning, Option<Conditioning>)> {
        if num_images == 0 {
            return Err(Error::Invalid("num_images must be at least 1".into()));
        }
        let mut batch = self.tokenizer.encode_prompt(prompt, max_sequence_length)?;
        let l = batch.len();
        if let Some(negative) = negative_prompt {
            let negative = self.tokenizer.encode_negative(negative, l)?;
            batch.ids.extend(negative.ids);
            batch.mask.extend(negative.mask);
        }
        // Both rows in one pass (each row's states depend on that row only):
        // the weights are read once.
        let hidden = self.encoder.forward(gpu, &batch.ids, &batch.mask)?; // [1 or 2, L, D]
        let d = self.encoder.config.hidden_size;
        let rows = hidden.reshape(&[batch.ids.len() * l, d])?;
        let conditioning = |row: usize| -> Result<Conditioning> {
            // Batch row `row`, once per image: [num_images, L, D].
            let idx: Vec<u32> = (0..num_images)
                .flat_map(|_| (row * l) as u32..((row + 1) * l) as u32)
                .collect();
            let mask: Vec<f32> = batch.mask[row].iter().map(|&m| m as f32).collect();
            Ok(Conditioning {
                tokens: gather(gpu, &rows, &Indices::upload(gpu, &idx)?)?.reshape(&[num_images, l, d])?,
                pooled: None,
                mask: Some(mask.repeat(num_images)),
                text_weights: None,
            })
        };
        let uncond = match negative_prompt {
            Some(_) => Some(conditioning(1)?),
            None => None,
        };
        Ok((conditioning(0)?, uncond))
    }
}
