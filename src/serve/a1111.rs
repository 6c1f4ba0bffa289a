//! The AUTOMATIC1111 web UI's API (`/sdapi/v1/*`), as its clients (Krita,
//! GIMP and Photoshop plugins, scripts) call it.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::models::Family;
use crate::pipeline::{encode_png, parameters, GenerateRequest, Image};
use crate::ras::RasConfig;

use super::error::{parse_json, Api, ApiError, Kind};
use super::http::{body, collect, Collected};
use super::order::{Ask, Order, RasFields};
use super::Shared;

const API: Api = Api::A1111;
/// What every sampler name is answered with: the models are flow-matching
/// models and ras samples them with flow-match Euler.
const SAMPLER: &str = "Euler";
const SCHEDULER: &str = "Flow matching";

/// The fields ras uses; the others A1111 clients send (`sampler_name`,
/// `scheduler`, `restore_faces`, …) are accepted and ignored, and the
/// answer reports flow-match Euler.
#[derive(Debug, Deserialize)]
struct Txt2Img {
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    negative_prompt: String,
    steps: Option<usize>,
    cfg_scale: Option<f32>,
    width: Option<usize>,
    height: Option<usize>,
    seed: Option<i64>,
    batch_size: Option<usize>,
    n_iter: Option<usize>,
    override_settings: Option<OverrideSettings>,
    #[serde(flatten)]
    ras: RasFields,
}

#[derive(Debug, Default, Deserialize)]
struct OverrideSettings {
    sd_model_checkpoint: Option<String>,
}

pub(crate) async fn txt2img(
    State(shared): State<Arc<Shared>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let t: Txt2Img = parse_json(API, &body(API, raw, &shared)?)?;
    let ask = Ask {
        model: t.override_settings.and_then(|o| o.sd_model_checkpoint),
        model_field: "override_settings.sd_model_checkpoint",
        prompt: t.prompt,
        negative_prompt: t.negative_prompt,
        width: t.width,
        height: t.height,
        size_fields: ["width", "height"],
        steps: t.steps,
        guidance: t.cfg_scale,
        seed: t.seed,
        batch_size: t.batch_size.unwrap_or(1),
        n_iter: t.n_iter.unwrap_or(1),
        count_field: "batch_size",
        ras: t.ras,
    };
    let order = ask.check(&shared, API)?;
    let receivers = order.enqueue(&shared, API)?;
    let done = collect(API, receivers).await?;
    let infotexts: Vec<String> = (0..done.images.len())
        .map(|i| image_parameters(&shared, &order, i))
        .collect();
    let info = info(&shared, &order, &done, &infotexts, started);
    let images = encode_images(done.images, infotexts).await?;
    Ok(Json(json!({
        "images": images,
        "parameters": echo(&shared, &order),
        "info": info.to_string(),
    })))
}

/// The `parameters` PNG text of image `i`: as `ras generate --seed <its
/// seed>` writes it, which makes that image again.
pub(crate) fn image_parameters(shared: &Shared, order: &Order, i: usize) -> String {
    let model = &shared.models[order.model];
    let row = GenerateRequest {
        seed: order.seeds[i],
        num_images: 1,
        ..order.req.clone()
    };
    let t5 = (model.config.family() == Family::Sd3).then_some(model.config.dir.has_t5);
    parameters(&row, &model.name, t5, 0)
}

/// Base64 PNGs with their `parameters` chunks (encoded off the async threads).
pub(crate) async fn encode_images(images: Vec<Image>, texts: Vec<String>) -> Result<Vec<String>, ApiError> {
    tokio::task::spawn_blocking(move || {
        images
            .iter()
            .zip(&texts)
            .map(|(image, text)| {
                let mut png = Vec::new();
                encode_png(&mut png, image, text)
                    .map_err(|e| ApiError::new(API, Kind::Internal, format!("encoding a PNG: {e}")))?;
                Ok(base64::engine::general_purpose::STANDARD.encode(png))
            })
            .collect()
    })
    .await
    .map_err(|e| ApiError::new(API, Kind::Internal, format!("encoding the PNGs: {e}")))?
}

fn ras_json(r: &RasConfig, precision: &str) -> Value {
    json!({
        "ras_dense": r.is_dense(),
        "ras_sample_ratio": r.sample_ratio,
        "ras_metric": r.metric.name(),
        "ras_high_ratio": r.high_ratio,
        "ras_starvation_scale": r.starvation_scale,
        "ras_scheduler_start_step": r.scheduler_start_step,
        "ras_scheduler_end_step": r.scheduler_end_step,
        "ras_error_reset_steps": r.error_reset_steps,
        "ras_skip_num_step": r.skip_num_step,
        "ras_skip_num_step_length": r.skip_num_step_length,
        "ras_precision": precision,
    })
}

fn precision_name(order: &Order) -> &'static str {
    match order.req.precision {
        crate::models::Precision::F32 => "f32",
        crate::models::Precision::F16 => "f16",
    }
}

/// The request as it ran: every default filled in, the seed resolved.
fn echo(shared: &Shared, order: &Order) -> Value {
    let r = &order.req;
    let mut v = json!({
        "prompt": r.prompt,
        "negative_prompt": r.negative_prompt,
        "steps": r.steps,
        "cfg_scale": r.guidance,
        "width": r.width,
        "height": r.height,
        "seed": order.seeds[0],
        "batch_size": order.batch_size,
        "n_iter": order.seeds.len() / order.batch_size,
        "sampler_name": SAMPLER,
        "scheduler": SCHEDULER,
        "override_settings": {"sd_model_checkpoint": shared.models[order.model].name},
    });
    merge(&mut v, ras_json(&r.ras, precision_name(order)));
    v
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

fn info(shared: &Shared, order: &Order, done: &Collected, infotexts: &[String], started: Instant) -> Value {
    let r = &order.req;
    let n = done.images.len();
    let mut v = json!({
        "prompt": r.prompt,
        "all_prompts": vec![&r.prompt; n],
        "negative_prompt": r.negative_prompt,
        "all_negative_prompts": vec![&r.negative_prompt; n],
        "seed": order.seeds[0],
        "all_seeds": &order.seeds[..n],
        "subseed": -1,
        "all_subseeds": vec![-1; n],
        "width": r.width,
        "height": r.height,
        "sampler_name": SAMPLER,
        "scheduler": SCHEDULER,
        "cfg_scale": r.guidance,
        "steps": r.steps,
        "batch_size": order.batch_size,
        "n_iter": order.seeds.len() / order.batch_size,
        "sd_model_name": shared.models[order.model].name,
        "sd_model_hash": Value::Null,
        "infotexts": infotexts,
        "job_timestamp": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).to_string(),
        "interrupted": done.interrupted,
        "timings": {
            "queued_s": done.queued_s,
            "run_s": done.run_s,
            "total_s": started.elapsed().as_secs_f64(),
        },
        "batch_images": done.batch_images,
        "version": concat!("ras ", env!("CARGO_PKG_VERSION")),
    });
    merge(&mut v, ras_json(&r.ras, precision_name(order)));
    v
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ProgressQuery {
    skip_current_image: Option<bool>,
}

/// The oldest running batch's progress (every worker's when several run).
pub(crate) async fn progress(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<ProgressQuery>,
) -> Json<Value> {
    let running = shared
        .workers
        .iter()
        .filter_map(|w| w.running().map(|r| (w, r)))
        .min_by_key(|(_, r)| r.started);
    let queued = shared.queue.depth();
    let Some((worker, r)) = running else {
        return Json(json!({
            "progress": 0.0,
            "eta_relative": 0.0,
            "state": {
                "skipped": false, "interrupted": false, "job": "", "job_count": queued,
                "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0,
            },
            "current_image": Value::Null,
            "textinfo": Value::Null,
        }));
    };
    if !q.skip_current_image.unwrap_or(false) {
        worker
            .want_preview
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let progress = r.step as f64 / r.steps.max(1) as f64;
    let elapsed = r.started.elapsed().as_secs_f64();
    let eta = if progress > 0.0 {
        elapsed / progress - elapsed
    } else {
        0.0
    };
    Json(json!({
        "progress": progress,
        "eta_relative": eta,
        "state": {
            "skipped": false,
            "interrupted": worker.interrupt.load(std::sync::atomic::Ordering::SeqCst),
            "job": format!("{} image(s) of {} request(s)", r.images, r.requests),
            "job_count": queued + r.requests,
            "job_timestamp": r.timestamp.to_string(),
            "job_no": 0,
            "sampling_step": r.step,
            "sampling_steps": r.steps,
        },
        "current_image": r.preview,
        "textinfo": format!("step {}/{}", r.step, r.steps),
    }))
}

/// Stops every running batch at its next step; their requests answer with
/// the images finished so far (`info.interrupted` is true).
pub(crate) async fn interrupt(State(shared): State<Arc<Shared>>) -> Json<Value> {
    for w in &shared.workers {
        if w.running().is_some() {
            w.interrupt.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    Json(json!({}))
}

pub(crate) async fn sd_models(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let models: Vec<Value> = shared
        .models
        .iter()
        .map(|m| {
            json!({
                "title": m.name,
                "model_name": m.name,
                "hash": Value::Null,
                "sha256": Value::Null,
                // A name, not a path: no response reveals the server's files.
                "filename": m.name,
                "config": Value::Null,
                "family": m.config.family().name(),
                "native_size": m.config.native_size(),
            })
        })
        .collect();
    Json(Value::Array(models))
}

pub(crate) async fn options(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let default = shared.model(None).expect("the default model exists");
    Json(json!({
        "sd_model_checkpoint": shared.models[default].name,
        "samples_format": "png",
        "sd_checkpoint_hash": Value::Null,
    }))
}

/// A1111 clients switch models by setting `sd_model_checkpoint`; here it
/// picks the default for requests that name no model (every model is
/// loaded already, so nothing is loaded or unloaded). Other options are
/// accepted and ignored.
#[derive(Debug, Deserialize)]
struct SetOptions {
    sd_model_checkpoint: Option<String>,
}

pub(crate) async fn set_options(
    State(shared): State<Arc<Shared>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let o: SetOptions = parse_json(API, &body(API, raw, &shared)?)?;
    if let Some(name) = o.sd_model_checkpoint {
        let model = shared.model(Some(&name)).ok_or_else(|| {
            ApiError::field(
                API,
                "sd_model_checkpoint",
                format!(
                    "unknown model '{name}'; this server has: {}",
                    shared.model_names()
                ),
            )
        })?;
        shared
            .default_model
            .store(model, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(model = name, "default model changed");
    }
    Ok(Json(Value::Null))
}

pub(crate) async fn samplers() -> Json<Value> {
    Json(json!([{
        "name": SAMPLER,
        "aliases": ["flow_match_euler", "FlowMatchEulerDiscreteScheduler"],
        "options": {"scheduler": SCHEDULER},
    }]))
}
