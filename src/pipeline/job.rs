//! A generation advanced step by step, for hosts that run one denoising
//! step per frame: `pipeline.start(&request)`, then `job.step()` until
//! `job.is_done()`, optionally `job.preview()` in between, then
//! `job.finish()` (bytes) or `job.finish_into(&texture)` (stays on the GPU).
//! A host that must keep its frame time, or share a slow GPU, calls
//! `job.advance(ms)` instead of `step()`: each call hands the GPU about `ms`
//! estimated milliseconds of the step's work, so the host's own work
//! interleaves with ours at that granularity.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::models::Dit;

use super::generate::{to_image, Event, Generation, Image, Pipeline};
use super::sample::{Denoiser, StepInfo};

/// Where finished images go.
pub(crate) enum Output<'t> {
    Bytes,
    Texture(&'t wgpu::Texture),
}

pub struct Job<'p> {
    pipeline: &'p mut Pipeline,
    transformer: Option<Box<dyn Dit>>,
    denoiser: Denoiser,
    /// A step recorded by `advance` whose work is not all submitted yet.
    underway: Option<StepInfo>,
}

/// What one [`Job::advance`] call did.
#[derive(Debug, Clone)]
pub enum Advance {
    /// Part of a step went to the GPU; call again.
    Working,
    /// A step finished (its last part went out and the GPU finished it).
    Stepped(StepInfo),
}

impl<'p> Job<'p> {
    pub(crate) fn new(pipeline: &'p mut Pipeline, transformer: Box<dyn Dit>, denoiser: Denoiser) -> Self {
        Job {
            pipeline,
            transformer: Some(transformer),
            denoiser,
            underway: None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.denoiser.is_done() && self.underway.is_none()
    }

    pub fn steps(&self) -> usize {
        self.denoiser.steps()
    }

    /// Runs the next denoising step (or the rest of one that `advance`
    /// began) and waits for the GPU to finish it.
    pub fn step(&mut self) -> Result<StepInfo> {
        let gpu = self.pipeline.gpu().clone();
        let info = match self.underway.take() {
            Some(info) => info,
            None => {
                let transformer = self.transformer.as_ref().ok_or(Error::Cancelled)?;
                self.denoiser.step(&gpu, transformer.as_ref())?
            }
        };
        gpu.sync()?;
        Ok(info)
    }

    /// Advances the job by about `ms` estimated GPU milliseconds (at least
    /// one submit; see [`SubmitBudget`](crate::gpu::SubmitBudget) for the
    /// estimate): records the next step if none is underway, waits for the
    /// previous call's work, then submits the step's work up to `ms`.
    /// Results are bit-identical to [`step`](Self::step)'s.
    pub fn advance(&mut self, ms: f64) -> Result<Advance> {
        if ms.is_nan() || ms <= 0.0 {
            return Err(Error::Invalid(format!(
                "advance({ms}): the budget must be a positive number of milliseconds"
            )));
        }
        let gpu = self.pipeline.gpu().clone();
        if self.underway.is_none() {
            if self.denoiser.is_done() {
                return Err(Error::Invalid(
                    "the job has no steps left; call finish() or finish_into()".into(),
                ));
            }
            let transformer = self.transformer.as_ref().ok_or(Error::Cancelled)?;
            let info = gpu.held(ms, || self.denoiser.step(&gpu, transformer.as_ref()))?;
            self.underway = Some(info);
        } else {
            // One part in flight at a time: the host's frame never waits
            // behind more than one budget of ours.
            gpu.wait_submitted()?;
        }
        if gpu.submit_for(ms)? {
            return Ok(Advance::Working);
        }
        gpu.wait_submitted()?;
        Ok(Advance::Stepped(
            self.underway.take().expect("a step is underway"),
        ))
    }

    /// The current latents `[B, C, h, w]`.
    pub fn latents(&self) -> &Tensor {
        self.denoiser.latents()
    }

    /// A cheap look at the current latents: each latent pixel mapped to RGB
    /// by a linear fit of the VAE (one image per batch row, at latent
    /// resolution). The first call fits the map (one small VAE decode).
    pub fn preview(&mut self) -> Result<Vec<Image>> {
        let factors = self.pipeline.preview_factors()?;
        let gpu = self.pipeline.gpu().clone();
        let &[b, c, h, w] = self.latents().shape() else {
            return Err(Error::shape("preview", "latents must be [B, C, h, w]"));
        };
        let x = gpu.read_f32(self.latents())?;
        Ok((0..b)
            .map(|bi| {
                let mut rgb = Vec::with_capacity(h * w * 3);
                for p in 0..h * w {
                    for ch in 0..3 {
                        let row = &factors[ch * (c + 1)..][..c + 1];
                        let v = row[c] + (0..c).map(|k| row[k] * x[(bi * c + k) * h * w + p]).sum::<f32>();
                        rgb.push(((v / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8);
                    }
                }
                Image {
                    width: w,
                    height: h,
                    rgb,
                }
            })
            .collect())
    }

    /// Decodes the images and returns them as bytes.
    pub fn finish(self) -> Result<Generation> {
        self.finish_with(Output::Bytes, &mut |_| Ok(()))
    }

    /// Decodes the first image straight into `texture` (RGBA8 or RGBA16F
    /// with STORAGE_BINDING usage, the image's size) without reading it
    /// back; `Generation::images` is empty.
    pub fn finish_into(self, texture: &wgpu::Texture) -> Result<Generation> {
        self.finish_with(Output::Texture(texture), &mut |_| Ok(()))
    }

    pub(crate) fn finish_with(
        mut self,
        output: Output,
        check: &mut impl FnMut(Event) -> Result<()>,
    ) -> Result<Generation> {
        if !self.is_done() {
            return Err(Error::Invalid(format!(
                "the job has {} of {} steps left; step() it to the end first",
                self.steps() - self.denoiser.current_step(),
                self.steps()
            )));
        }
        if let Some(t) = self.transformer.take() {
            self.pipeline.put_back_transformer(t);
        }
        let gpu = self.pipeline.gpu().clone();
        let out = self.denoiser.finish_checked(&gpu)?;
        let mut images = Vec::new();
        let mut first = true;
        self.pipeline
            .decode(&out.latents, check, |gpu: &Gpu, image: Tensor| {
                match output {
                    Output::Bytes => images.push(to_image(gpu, &image)?),
                    Output::Texture(texture) if first => gpu.write_texture(&image, texture)?,
                    Output::Texture(_) => {}
                }
                first = false;
                Ok(())
            })?;
        Ok(Generation {
            images,
            peak_bytes: self.pipeline.gpu().memory().peak_bytes,
            kv_cache_bytes: out.kv_cache_bytes,
            active: out.active,
        })
    }
}

impl Drop for Job<'_> {
    /// A job dropped early still gives the transformer back (or frees it).
    fn drop(&mut self) {
        if let Some(t) = self.transformer.take() {
            self.pipeline.put_back_transformer(t);
        }
    }
}
