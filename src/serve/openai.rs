//! OpenAI's images API (`POST /v1/images/generations`), as the official
//! client libraries call it.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::a1111::{encode_images, image_parameters};
use super::error::{parse_json, Api, ApiError, Kind};
use super::http::{body, collect};
use super::order::{Ask, RasFields};
use super::Shared;

const API: Api = Api::OpenAi;

/// OpenAI's fields (`quality`, `style`, `user`, … are accepted and
/// ignored), plus ras's: `seed`, `steps`, `negative_prompt`, `guidance` and
/// the `ras_*` settings.
#[derive(Debug, Deserialize)]
struct Generations {
    prompt: Option<String>,
    model: Option<String>,
    n: Option<usize>,
    size: Option<String>,
    response_format: Option<String>,
    seed: Option<i64>,
    steps: Option<usize>,
    guidance: Option<f32>,
    #[serde(default)]
    negative_prompt: String,
    #[serde(flatten)]
    ras: RasFields,
}

/// `"WxH"`, or `"auto"`/absent for the model's native size.
fn parse_size(size: Option<&str>) -> Result<(Option<usize>, Option<usize>), ApiError> {
    let Some(s) = size.filter(|s| *s != "auto") else {
        return Ok((None, None));
    };
    let parsed = s
        .split_once('x')
        .and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)));
    match parsed {
        Some((w, h)) => Ok((Some(w), Some(h))),
        None => Err(ApiError::field(
            API,
            "size",
            format!("'{s}' is not WIDTHxHEIGHT (e.g. \"256x256\") or \"auto\""),
        )),
    }
}

pub(crate) async fn generations(
    State(shared): State<Arc<Shared>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let g: Generations = parse_json(API, &body(API, raw, &shared)?)?;
    let prompt = g
        .prompt
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| ApiError::field(API, "prompt", "is required"))?;
    match g.response_format.as_deref() {
        None | Some("b64_json") => {}
        Some("url") => {
            return Err(ApiError {
                field: Some("response_format".into()),
                ..ApiError::new(
                    API,
                    Kind::Unsupported,
                    "response_format: \"url\" is not supported: ras serve keeps no files to link to; \
                     ask for \"b64_json\"",
                )
            })
        }
        Some(other) => {
            return Err(ApiError::field(
                API,
                "response_format",
                format!("'{other}' is not b64_json"),
            ))
        }
    }
    let (width, height) = parse_size(g.size.as_deref())?;
    let ask = Ask {
        model: g.model,
        model_field: "model",
        prompt,
        negative_prompt: g.negative_prompt,
        width,
        height,
        size_fields: ["size", "size"],
        steps: g.steps,
        guidance: g.guidance,
        seed: g.seed,
        batch_size: g.n.unwrap_or(1),
        n_iter: 1,
        count_field: "n",
        ras: g.ras,
    };
    let order = ask.check(&shared, API)?;
    let receivers = order.enqueue(&shared, API)?;
    let done = collect(API, receivers).await?;
    if done.interrupted && done.images.is_empty() {
        return Err(ApiError::new(
            API,
            Kind::Internal,
            "the job was interrupted before any image was done",
        ));
    }
    let texts = (0..done.images.len())
        .map(|i| image_parameters(&shared, &order, i))
        .collect();
    let images = encode_images(done.images, texts).await?;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let data: Vec<Value> = images
        .into_iter()
        .map(|b64| json!({"b64_json": b64, "revised_prompt": order.req.prompt}))
        .collect();
    Ok(Json(json!({"created": created, "data": data})))
}
