//! What a pipeline knows of its model from the folder's configs alone, with
//! no weight loaded and no device: enough to fill in a request's defaults
//! and to check it (a server checks requests with it before they queue).

use serde::Deserialize;

use crate::config::{config_error, read_json};
use crate::error::{Error, Result};
use crate::kernels::metric::Metric;
use crate::models::vae::VaeConfig;
use crate::models::Family;
use crate::ras::config::SD3_EXAMPLE_STEPS;
use crate::ras::{RasConfig, RasOverrides};
use crate::sampling::SchedulerConfig;

use super::model_dir::ModelDir;
use super::model_info::TransformerInfo;
use super::request::GenerateRequest;

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub dir: ModelDir,
    pub transformer_info: TransformerInfo,
    pub vae_config: VaeConfig,
    pub scheduler: SchedulerConfig,
    /// The folder's `ras_defaults.json` (none set without one).
    pub ras_file: RasOverrides,
}

/// The name of the optional file in a model folder (beside
/// `model_index.json`) that tunes the step-independent RAS defaults for
/// that model: `sample_ratio`, `high_ratio`, `metric`, `starvation_scale`.
/// The schedule (start, end, reset steps, ramp) stays the family's
/// example, scaled to the step count.
pub const RAS_DEFAULTS_FILE: &str = "ras_defaults.json";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RasDefaultsFile {
    sample_ratio: Option<f64>,
    high_ratio: Option<f64>,
    metric: Option<String>,
    starvation_scale: Option<f64>,
    /// Why these values (ignored; for the reader).
    #[serde(rename = "_comment")]
    _comment: Option<String>,
}

/// Reads and checks `ras_defaults.json` if the folder has one.
fn read_ras_file(dir: &ModelDir) -> Result<RasOverrides> {
    let path = dir.root.join(RAS_DEFAULTS_FILE);
    if !path.exists() {
        return Ok(RasOverrides::default());
    }
    let f: RasDefaultsFile = read_json(&path)?;
    let metric = match f.metric.as_deref() {
        None => None,
        Some(name) => Some(
            Metric::from_name(name)
                .ok_or_else(|| config_error(&path, format!("metric '{name}' is not std or l2norm")))?,
        ),
    };
    let overrides = RasOverrides {
        sample_ratio: f.sample_ratio,
        high_ratio: f.high_ratio,
        metric,
        starvation_scale: f.starvation_scale,
        ..RasOverrides::default()
    };
    // The family's example at its own step count, with these over it.
    let probe = overrides.resolve(SD3_EXAMPLE_STEPS, 4096, RasConfig::sd3_example(SD3_EXAMPLE_STEPS));
    if let Some((field, message)) = probe.problem(SD3_EXAMPLE_STEPS) {
        return Err(config_error(&path, format!("{field} {message}")));
    }
    Ok(overrides)
}

impl ModelConfig {
    /// Opens an SD3 or Lumina-Next folder or cached repo id and reads its configs.
    pub fn open(model: &str) -> Result<ModelConfig> {
        let dir = ModelDir::open(model)?;
        let config = |component: &str, file: &str| dir.component(component).join(file);
        Ok(ModelConfig {
            transformer_info: TransformerInfo::read(&dir)?,
            vae_config: VaeConfig::from_file(&config("vae", "config.json"))?,
            scheduler: SchedulerConfig::from_file(&config("scheduler", "scheduler_config.json"))?,
            ras_file: read_ras_file(&dir)?,
            dir,
        })
    }

    pub fn family(&self) -> Family {
        self.dir.family
    }

    /// A request with the model family's pipeline defaults (SD3: 28 steps,
    /// guidance 7; Lumina-Next: 30 steps, guidance 4) and RAS example at
    /// this model's native size (`sample_size` latent pixels: 1024² for SD3
    /// and Lumina-Next, 256² for the demo model).
    pub fn request(&self, prompt: &str) -> GenerateRequest {
        let native = self.native_size();
        let d = super::defaults(self.family());
        let mut req = GenerateRequest {
            width: native,
            height: native,
            steps: d.steps,
            guidance: d.guidance,
            ..GenerateRequest::new(prompt)
        };
        req.ras = self.ras_defaults(&req);
        req
    }

    /// The side in pixels the model was trained at.
    pub fn native_size(&self) -> usize {
        self.transformer_info.sample_size * self.vae_config.scale_factor()
    }

    /// The largest width or height this model's position table covers.
    pub fn max_size(&self) -> usize {
        self.transformer_info.max_grid * self.size_multiple()
    }

    /// The original's RAS example for this model's family, fitted to the
    /// request's step count and size (see
    /// [`ras_defaults`](super::ras_defaults)), with the folder's
    /// `ras_defaults.json` over it.
    pub fn ras_defaults(&self, req: &GenerateRequest) -> RasConfig {
        let tokens = self.image_tokens(req);
        let example = super::ras_defaults(self.family(), req.steps, tokens);
        self.ras_file.resolve(req.steps, tokens, example)
    }

    /// Image tokens of the request's size.
    pub fn image_tokens(&self, req: &GenerateRequest) -> usize {
        let m = self.size_multiple();
        (req.width / m) * (req.height / m)
    }

    /// Pixels per latent pixel times patch size: width and height must be
    /// multiples of it (16 for SD3).
    pub fn size_multiple(&self) -> usize {
        self.vae_config.scale_factor() * self.transformer_info.patch_size
    }

    /// What is wrong with `v` as a width or height, if anything: it must be
    /// a positive multiple of [`size_multiple`](Self::size_multiple) and
    /// within the position table ([`max_size`](Self::max_size)).
    pub fn side_problem(&self, v: usize) -> Option<String> {
        let (m, max) = (self.size_multiple(), self.max_size());
        if v == 0 || !v.is_multiple_of(m) {
            return Some(format!(
                "{v} must be a positive multiple of {m} (VAE factor × patch size)"
            ));
        }
        (v > max)
            .then(|| format!("{v} exceeds {max}, the largest size this transformer's position table covers"))
    }

    /// Latent shape `[B, C, H/f, W/f]` of a request.
    pub fn latent_shape(&self, req: &GenerateRequest) -> [usize; 4] {
        let f = self.vae_config.scale_factor();
        let c = self.transformer_info.in_channels;
        [req.num_images, c, req.height / f, req.width / f]
    }

    /// Everything that can be checked before any work starts.
    pub fn validate(&self, req: &GenerateRequest) -> Result<()> {
        let bad = |msg: String| Err(Error::Invalid(msg));
        for (name, v) in [("width", req.width), ("height", req.height)] {
            if let Some(problem) = self.side_problem(v) {
                return bad(format!("{name} {problem}"));
            }
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
        req.check_batch_prompts(self.family())?;
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
