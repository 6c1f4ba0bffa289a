//! Prompt encoding as diffusers' `LuminaPipeline.encode_prompt` does it
//! (model-spec §C.3, §D.4): Gemma's `hidden_states[-2]` of the lower-cased,
//! stripped prompt, left padded to a multiple of 8 tokens, with its attention
//! mask; the negative prompt (as given, not pre-processed) padded or cut to
//! the prompt's length; each repeated once per image.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::kernels::rows::{gather, Indices};
use crate::models::text::GemmaEncoder;
use crate::models::Conditioning;
use crate::text::{GemmaTokenizer, GemmaTokens};

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
        let tokens = self.tokenizer.encode_prompt(prompt, max_sequence_length)?;
        let cond = self.conditioning(gpu, &tokens, num_images)?;
        let uncond = match negative_prompt {
            Some(negative) => {
                let tokens = self.tokenizer.encode_negative(negative, tokens.len())?;
                Some(self.conditioning(gpu, &tokens, num_images)?)
            }
            None => None,
        };
        Ok((cond, uncond))
    }

    /// One row of tokens through Gemma, repeated `num_images` times.
    fn conditioning(&self, gpu: &Gpu, tokens: &GemmaTokens, num_images: usize) -> Result<Conditioning> {
        let hidden = self.encoder.forward(gpu, &tokens.ids, &tokens.mask)?; // [1, L, D]
        let (l, d) = (tokens.len(), self.encoder.config.hidden_size);
        let mask: Vec<f32> = tokens.mask[0].iter().map(|&m| m as f32).collect();
        Ok(Conditioning {
            tokens: repeat_rows(gpu, &hidden, num_images)?.reshape(&[num_images, l, d])?,
            pooled: None,
            mask: Some(mask.repeat(num_images)),
            text_weights: None,
        })
    }
}

/// `[1, L, D]` → `[n·L, D]`, the one row repeated `n` times.
fn repeat_rows(gpu: &Gpu, x: &Tensor, n: usize) -> Result<Tensor> {
    let &[1, l, d] = x.shape() else {
        return Err(Error::shape(
            "repeat_rows",
            format!("expected [1, L, D], got {:?}", x.shape()),
        ));
    };
    let idx: Vec<u32> = (0..n).flat_map(|_| 0..l as u32).collect();
    gather(gpu, &x.reshape(&[l, d])?, &Indices::upload(gpu, &idx)?)
}
