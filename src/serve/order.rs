//! What both APIs ask for, checked against the model's configs and the
//! server's limits before anything queues: every problem is a 4xx naming
//! the request field.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use serde::Deserialize;
use tokio::sync::oneshot;

use crate::kernels::metric::Metric;
use crate::models::{Family, Precision};
use crate::pipeline::{BatchPrompt, GenerateRequest};
use crate::ras::RasOverrides;

use super::error::{Api, ApiError, Kind};
use super::queue::{PushError, Reply, Settings, Unit};
use super::Shared;

/// The RAS settings a request may carry, named as the CLI flags with a
/// `ras_` prefix; clients that do not know them leave them out.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct RasFields {
    pub ras_dense: Option<bool>,
    pub ras_sample_ratio: Option<f64>,
    pub ras_metric: Option<String>,
    pub ras_high_ratio: Option<f64>,
    pub ras_starvation_scale: Option<f64>,
    pub ras_scheduler_start_step: Option<usize>,
    pub ras_scheduler_end_step: Option<usize>,
    pub ras_error_reset_steps: Option<Vec<usize>>,
    pub ras_skip_num_step: Option<i64>,
    pub ras_skip_num_step_length: Option<usize>,
    /// `f32` (default) or `f16`.
    pub ras_precision: Option<String>,
}

/// A request in the engine's terms, before validation.
#[derive(Debug, Default)]
pub(crate) struct Ask {
    pub model: Option<String>,
    /// The request field that named the model, for messages.
    pub model_field: &'static str,
    pub prompt: String,
    pub negative_prompt: String,
    pub width: Option<usize>,
    pub height: Option<usize>,
    /// Field names of width and height (OpenAI gives both as `size`).
    pub size_fields: [&'static str; 2],
    pub steps: Option<usize>,
    pub guidance: Option<f32>,
    /// -1 or absent: random.
    pub seed: Option<i64>,
    pub batch_size: usize,
    pub n_iter: usize,
    /// Field name of the image count, for messages.
    pub count_field: &'static str,
    pub ras: RasFields,
}

/// A checked request, ready to queue.
#[derive(Debug)]
pub(crate) struct Order {
    pub request_id: u64,
    pub model: usize,
    /// The settings with the first image's seed (for `parameters`).
    pub req: GenerateRequest,
    /// One per image: the first seed and the ones after it.
    pub seeds: Vec<u64>,
    pub batch_size: usize,
}

/// AUTOMATIC1111's seeds are 32-bit; random ones are kept in that range so that
/// clients storing them as int32 can repeat them.
fn random_seed() -> u64 {
    RandomState::new().hash_one(SystemTime::now()) & 0xFFFF_FFFF
}

impl Ask {
    pub fn check(self, shared: &Shared, api: Api) -> Result<Order, ApiError> {
        let field = |name: &str, message: String| ApiError::field(api, name, message);
        let limits = &shared.config.limits;
        let model = shared.model(self.model.as_deref()).ok_or_else(|| {
            field(
                self.model_field,
                format!(
                    "unknown model '{}'; this server has: {}",
                    self.model.as_deref().unwrap_or(""),
                    shared.model_names()
                ),
            )
        })?;
        let config = &shared.models[model].config;
        let mut req = config.request(&self.prompt);
        req.negative_prompt = self.negative_prompt;
        req.width = self.width.unwrap_or(req.width);
        req.height = self.height.unwrap_or(req.height);
        req.steps = self.steps.unwrap_or(req.steps);
        req.guidance = self.guidance.unwrap_or(req.guidance);
        for (name, v) in self.size_fields.into_iter().zip([req.width, req.height]) {
            if let Some(problem) = config.side_problem(v) {
                return Err(field(name, problem));
            }
        }
        if req.width * req.height > limits.max_pixels {
            return Err(field(
                self.size_fields[0],
                format!(
                    "{}x{} is more than this server's {} pixels per image",
                    req.width, req.height, limits.max_pixels
                ),
            ));
        }
        if req.steps == 0 || req.steps > limits.max_steps {
            return Err(field(
                "steps",
                format!("{} must be in 1..={}", req.steps, limits.max_steps),
            ));
        }
        if !req.guidance.is_finite() || req.guidance < 0.0 {
            return Err(field(
                "cfg_scale",
                format!("{} must be a finite number ≥ 0", req.guidance),
            ));
        }
        let images = self.batch_size.saturating_mul(self.n_iter);
        if self.batch_size == 0 || self.n_iter == 0 || images > limits.max_images {
            let asked = match self.n_iter {
                1 => self.batch_size.to_string(),
                n => format!("{} × n_iter {n} = {images} images", self.batch_size),
            };
            return Err(field(
                self.count_field,
                format!("{asked} must be in 1..={} images per request", limits.max_images),
            ));
        }
        let seed = match self.seed {
            None | Some(-1) => random_seed(),
            Some(s) if s >= 0 => s as u64,
            Some(s) => {
                return Err(field(
                    "seed",
                    format!("{s}: give a seed ≥ 0, or -1 for a random one"),
                ))
            }
        };
        req.seed = seed;
        req.ras = ras_config(&self.ras, config, &req, api)?;
        req.precision = match self.ras.ras_precision.as_deref() {
            None | Some("f32") => Precision::F32,
            Some("f16") => Precision::F16,
            Some(other) => return Err(field("ras_precision", format!("'{other}' is not f32 or f16"))),
        };
        config
            .validate(&req)
            .map_err(|e| ApiError::new(api, Kind::Invalid, e.to_string()))?;
        Ok(Order {
            request_id: shared.next_request.fetch_add(1, Ordering::Relaxed),
            model,
            seeds: (0..images as u64).map(|i| seed.wrapping_add(i)).collect(),
            batch_size: self.batch_size,
            req,
        })
    }
}

fn ras_config(
    f: &RasFields,
    config: &crate::pipeline::ModelConfig,
    req: &GenerateRequest,
    api: Api,
) -> Result<crate::ras::RasConfig, ApiError> {
    let metric =
        match f.ras_metric.as_deref() {
            None => None,
            Some(name) => Some(Metric::from_name(name).ok_or_else(|| {
                ApiError::field(api, "ras_metric", format!("'{name}' is not std or l2norm"))
            })?),
        };
    let overrides = RasOverrides {
        sample_ratio: f.ras_sample_ratio,
        dense: f.ras_dense.unwrap_or(false),
        metric,
        high_ratio: f.ras_high_ratio,
        starvation_scale: f.ras_starvation_scale,
        scheduler_start_step: f.ras_scheduler_start_step,
        scheduler_end_step: f.ras_scheduler_end_step,
        error_reset_steps: f.ras_error_reset_steps.clone(),
        skip_num_step: f.ras_skip_num_step,
        skip_num_step_length: f.ras_skip_num_step_length,
    };
    let cfg = overrides.resolve(req.steps, config.image_tokens(req), config.ras_defaults(req));
    match cfg.problem(req.steps) {
        None => Ok(cfg),
        Some((name, message)) => Err(ApiError::field(api, &format!("ras_{name}"), message)),
    }
}

impl Order {
    /// Queues one unit per iteration; the receivers answer in order.
    pub fn enqueue(&self, shared: &Shared, api: Api) -> Result<Vec<oneshot::Receiver<Reply>>, ApiError> {
        if shared.draining.load(Ordering::SeqCst) {
            return Err(ApiError::new(
                api,
                Kind::ShuttingDown,
                "the server is shutting down; retry on another instance",
            ));
        }
        let family = shared.models[self.model].config.family();
        let prompt = BatchPrompt {
            prompt: self.req.prompt.clone(),
            negative_prompt: self.req.negative_prompt.clone(),
        };
        let settings = Settings {
            model: self.model,
            width: self.req.width,
            height: self.req.height,
            steps: self.req.steps,
            guidance: self.req.guidance,
            max_sequence_length: self.req.max_sequence_length,
            ras: self.req.ras.clone(),
            precision: self.req.precision,
            shared_prompt: (family == Family::Lumina).then(|| prompt.clone()),
        };
        let (units, receivers): (Vec<Unit>, Vec<_>) = self
            .seeds
            .chunks(self.batch_size)
            .map(|seeds| {
                let (reply, rx) = oneshot::channel();
                let unit = Unit {
                    request: self.request_id,
                    settings: settings.clone(),
                    prompt: prompt.clone(),
                    seeds: seeds.to_vec(),
                    enqueued: Instant::now(),
                    reply,
                };
                (unit, rx)
            })
            .unzip();
        shared.queue.push(units).map_err(|e| match e {
            PushError::Full => ApiError {
                retry_after_s: Some(shared.retry_after_s()),
                ..ApiError::new(
                    api,
                    Kind::Busy,
                    format!(
                        "the queue is full ({} requests waiting); retry later",
                        shared.config.max_queue
                    ),
                )
            },
            PushError::Closed => ApiError::new(
                api,
                Kind::ShuttingDown,
                "the server is shutting down; retry on another instance",
            ),
        })?;
        Ok(receivers)
    }
}
