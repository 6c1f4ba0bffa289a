//! Text to image: `StableDiffusion3Pipeline.__call__` (model-spec §C) over the
//! engine's models, with Region-Adaptive Sampling. Components are loaded
//! when needed and released after use (text encoders, then transformer, then
//! VAE) unless `keep_loaded` is set, so peak memory is one stage's.

use std::ops::{ControlFlow, Deref};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::kernels::finite::{check_finite, new_flag, CLEAN};
use crate::models::vae::{to_rgb8, VaeDecoder};
use crate::models::{load_transformer, Conditioning, Dit};
use crate::sampling::gaussian_noise;

use super::job::{Job, Output};
use super::model_config::ModelConfig;
use super::request::GenerateRequest;
use super::sample::{Denoiser, SampleRequest, StepInfo};
use super::text::TextStage;

#[derive(Debug, Clone, Default)]
pub struct PipelineOptions {
    /// Keep every component on the GPU between stages and between runs.
    pub keep_loaded: bool,
    /// Leave T5 out even when the folder has it (zeros, as diffusers does
    /// without `text_encoder_3`).
    pub no_t5: bool,
    /// Set from anywhere (a Ctrl-C handler, another thread) to stop a run
    /// after its current stage or step with `Error::Cancelled`; nothing is
    /// returned for the stopped run and the pipeline stays usable once the
    /// flag is cleared.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// What the pipeline is doing, for progress display.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Loading(&'static str),
    Encoding,
    /// The denoising loop starts (prompt encoded, transformer loaded).
    Denoising,
    Step(&'a StepInfo),
    /// `tile`: the latent tile side when the decode is tiled.
    Decoding {
        tile: Option<usize>,
    },
}

/// An 8-bit RGB image, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

pub struct Generation {
    pub images: Vec<Image>,
    /// Highest GPU memory the engine held during the run (weights,
    /// activations, cached buffers).
    pub peak_bytes: u64,
    pub kv_cache_bytes: u64,
    /// For every RAS step: the step and each image's computed tokens.
    pub active: Vec<(usize, Vec<Vec<u32>>)>,
}

/// A model's configs ([`ModelConfig`], reached through `Deref`) and the
/// stages loaded on one device.
pub struct Pipeline {
    gpu: Gpu,
    config: ModelConfig,
    pub options: PipelineOptions,
    text: Option<TextStage>,
    transformer: Option<Box<dyn Dit>>,
    vae: Option<VaeDecoder>,
    /// The fitted latent → RGB map for previews, once fitted.
    preview: Option<Vec<f32>>,
}

impl Deref for Pipeline {
    type Target = ModelConfig;

    fn deref(&self) -> &ModelConfig {
        &self.config
    }
}

impl Pipeline {
    /// Opens an SD3 or Lumina-Next folder or cached repo id and reads its
    /// configs; weights are loaded by the stages that need them.
    pub fn load(gpu: &Gpu, model: &str, options: PipelineOptions) -> Result<Pipeline> {
        Ok(Pipeline::new(gpu, ModelConfig::open(model)?, options))
    }

    /// A pipeline over configs already read.
    pub fn new(gpu: &Gpu, config: ModelConfig, options: PipelineOptions) -> Pipeline {
        Pipeline {
            gpu: gpu.clone(),
            config,
            options,
            text: None,
            transformer: None,
            vae: None,
            preview: None,
        }
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Runs the whole job; `on_event` sees progress and may cancel the run
    /// by returning `ControlFlow::Break` (the call then returns
    /// `Error::Cancelled`).
    pub fn generate(
        &mut self,
        req: &GenerateRequest,
        mut on_event: impl FnMut(Event) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let cancel = self.options.cancel.clone();
        let mut check = |e: Event| {
            if cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(Error::Cancelled);
            }
            match on_event(e) {
                ControlFlow::Continue(()) => Ok(()),
                ControlFlow::Break(()) => Err(Error::Cancelled),
            }
        };
        let mut job = self.start_with(req, &mut check)?;
        check(Event::Denoising)?;
        while !job.is_done() {
            let info = job.step()?;
            check(Event::Step(&info))?;
        }
        job.finish_with(Output::Bytes, &mut check)
    }

    /// Encodes the prompt and loads the transformer; the returned job is
    /// advanced one denoising step per [`Job::step`] call.
    pub fn start(&mut self, req: &GenerateRequest) -> Result<Job<'_>> {
        self.start_with(req, &mut |_| Ok(()))
    }

    fn start_with(
        &mut self,
        req: &GenerateRequest,
        check: &mut impl FnMut(Event) -> Result<()>,
    ) -> Result<Job<'_>> {
        self.validate(req)?;
        self.admit(req)?;
        self.gpu.reset_peak();
        let (cond, uncond) = self.encode(req, check)?;
        let latents = self.initial_latents(req)?;
        check(Event::Loading("transformer"))?;
        let transformer = self.take_transformer()?;
        let request = SampleRequest {
            latents: &latents,
            cond: &cond,
            uncond: uncond.as_ref(),
            steps: req.steps,
            guidance: req.guidance,
            shift: self.scheduler.shift,
            ras: req.ras.clone(),
            precision: req.precision,
        };
        match Denoiser::new(&self.gpu, transformer.as_ref(), &request) {
            Ok(denoiser) => Ok(Job::new(self, transformer, denoiser)),
            Err(e) => {
                self.put_back_transformer(transformer);
                Err(e)
            }
        }
    }

    /// Prompt and (with guidance) negative-prompt conditioning, one row per image.
    fn encode(
        &mut self,
        req: &GenerateRequest,
        check: &mut impl FnMut(Event) -> Result<()>,
    ) -> Result<(Conditioning, Option<Conditioning>)> {
        if self.text.is_none() {
            check(Event::Loading("text encoders"))?;
            let joint = self.transformer_info.joint_dim;
            self.text = Some(TextStage::load(&self.gpu, &self.dir, !self.options.no_t5, joint)?);
        }
        let encoded = self.encode_loaded(req, check);
        // Stopped or failed too: a cancelled run must not leave the text
        // encoders on the device beside the next stage.
        if !self.options.keep_loaded {
            self.text = None;
            self.gpu.trim();
        }
        encoded
    }

    fn encode_loaded(
        &self,
        req: &GenerateRequest,
        check: &mut impl FnMut(Event) -> Result<()>,
    ) -> Result<(Conditioning, Option<Conditioning>)> {
        check(Event::Encoding)?;
        let text = self.text.as_ref().expect("loaded by encode");
        let region = self.gpu.region("text encoders");
        let encoded = text.encode(&self.gpu, req)?;
        drop(region);
        let (cond, uncond) = &encoded;
        let tensors = std::iter::once(cond)
            .chain(uncond)
            .flat_map(|c| std::iter::once(&c.tokens).chain(&c.pooled));
        ensure_finite(&self.gpu, tensors, "the prompt embeddings (text encoders)")?;
        Ok(encoded)
    }

    fn initial_latents(&self, req: &GenerateRequest) -> Result<Tensor> {
        let shape = self.latent_shape(req);
        let values = match &req.latents_init {
            Some(v) => v.clone(),
            None => gaussian_noise(req.seed, shape.iter().product()),
        };
        self.gpu.upload_f32(&values, &shape)
    }

    pub(crate) fn take_transformer(&mut self) -> Result<Box<dyn Dit>> {
        match self.transformer.take() {
            Some(t) => Ok(t),
            None => load_transformer(&self.gpu, &self.dir.component("transformer")),
        }
    }

    pub(crate) fn put_back_transformer(&mut self, transformer: Box<dyn Dit>) {
        if self.options.keep_loaded {
            self.transformer = Some(transformer);
        } else {
            drop(transformer);
            self.gpu.trim();
        }
    }

    pub(crate) fn vae(&mut self) -> Result<&VaeDecoder> {
        if self.vae.is_none() {
            self.vae = Some(VaeDecoder::load_dir(&self.gpu, &self.dir.component("vae"))?);
        }
        Ok(self.vae.as_ref().expect("loaded above"))
    }

    /// `[3][C + 1]` linear latent → RGB map (see `preview.rs`).
    pub(crate) fn preview_factors(&mut self) -> Result<Vec<f32>> {
        if self.preview.is_none() {
            let gpu = self.gpu.clone();
            let factors = super::preview::fit_latent_rgb(&gpu, self.vae()?)?;
            self.release_vae();
            self.preview = Some(factors);
        }
        Ok(self.preview.clone().expect("fitted above"))
    }

    pub(crate) fn release_vae(&mut self) {
        if !self.options.keep_loaded {
            self.vae = None;
            self.gpu.trim();
        }
    }

    /// Decodes final latents `[B, C, h, w]` one image at a time, tiled when
    /// one activation would exceed the device's largest storage binding;
    /// `each` gets every decoded image `[1, 3, H, W]` (values about [-1, 1]).
    pub(crate) fn decode(
        &mut self,
        latents: &Tensor,
        check: &mut impl FnMut(Event) -> Result<()>,
        each: impl FnMut(&Gpu, Tensor) -> Result<()>,
    ) -> Result<()> {
        if self.vae.is_none() {
            check(Event::Loading("VAE"))?;
        }
        let decoded = self.decode_loaded(latents, check, each);
        // Stopped or failed too, as `encode` does.
        self.release_vae();
        decoded
    }

    fn decode_loaded(
        &mut self,
        latents: &Tensor,
        check: &mut impl FnMut(Event) -> Result<()>,
        mut each: impl FnMut(&Gpu, Tensor) -> Result<()>,
    ) -> Result<()> {
        let gpu = self.gpu.clone();
        let vae = self.vae()?;
        let &[_, c, h, w] = latents.shape() else {
            return Err(Error::shape("decode", "latents must be [B, C, h, w]"));
        };
        let tile = vae.tile_for(h, w, gpu.max_binding_bytes());
        check(Event::Decoding { tile })?;
        let f = vae.config.scale_factor();
        let _region = gpu.region("vae decoder");
        for one in gpu.read_f32(latents)?.chunks(c * h * w) {
            let z = gpu.upload_f32(one, &[1, c, h, w])?;
            let image = match tile {
                Some(t) => gpu.upload_f32(&vae.decode_tiled(&gpu, &z, t)?, &[1, 3, h * f, w * f])?,
                None => vae.decode(&gpu, &z)?,
            };
            ensure_finite(&gpu, [&image], "the decoded image (VAE)")?;
            each(&gpu, image)?;
        }
        Ok(())
    }
}

/// Decoded `[1, 3, H, W]` → 8-bit RGB on the host.
pub(crate) fn to_image(gpu: &Gpu, image: &Tensor) -> Result<Image> {
    let (h, w) = (image.shape()[2], image.shape()[3]);
    Ok(Image {
        width: w,
        height: h,
        rgb: to_rgb8(&gpu.read_f32(image)?, 1, h, w),
    })
}

/// An error naming `what` if any of `tensors` holds a NaN or an infinity
/// (one small read-back).
fn ensure_finite<'a>(gpu: &Gpu, tensors: impl IntoIterator<Item = &'a Tensor>, what: &str) -> Result<()> {
    let flag = new_flag(gpu)?;
    for t in tensors {
        check_finite(gpu, t, &flag, 0)?;
    }
    match gpu.read_u32(&flag)?[0] {
        CLEAN => Ok(()),
        _ => Err(Error::NonFinite { what: what.into() }),
    }
}
