//! The router and what every route shares: auth, request metrics and logs,
//! body limits, health checks, and waiting for a request's images.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use crate::pipeline::Image;

use super::error::{Api, ApiError, Kind};
use super::queue::{Reply, UnitError};
use super::{a1111, openai, Shared};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let limit = shared.config.limits.max_body_bytes;
    Router::new()
        .route("/sdapi/v1/txt2img", post(a1111::txt2img))
        .route("/sdapi/v1/progress", get(a1111::progress))
        .route("/sdapi/v1/interrupt", post(a1111::interrupt))
        .route("/sdapi/v1/sd-models", get(a1111::sd_models))
        .route("/sdapi/v1/options", get(a1111::options).post(a1111::set_options))
        .route("/sdapi/v1/samplers", get(a1111::samplers))
        .route("/v1/images/generations", post(openai::generations))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(shared.clone(), track))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), auth))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
}

/// With an API key set, every route but the health checks needs
/// `Authorization: Bearer <key>` (compared in constant time).
async fn auth(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if let Some(key) = &shared.config.api_key {
        let path = req.uri().path();
        if !matches!(path, "/healthz" | "/readyz") {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if !given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(key.as_bytes()))) {
                return ApiError::new(
                    Api::of_path(path),
                    Kind::Unauthorized,
                    "missing or wrong API key: send the header `Authorization: Bearer <key>`",
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// Counts a request dropped before it answered (its client went away), as
/// nginx logs it: 499.
struct Unanswered<'a> {
    shared: &'a Shared,
    route: &'a str,
    start: Instant,
    answered: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.shared.metrics.request(self.route, 499, self.start.elapsed());
            tracing::info!(route = self.route, "client went away before the answer");
        }
    }
}

/// Metrics and a log line per request.
async fn track(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    let mut guard = Unanswered {
        shared: &shared,
        route: &route,
        start: Instant::now(),
        answered: false,
    };
    let response = next.run(req).await;
    guard.answered = true;
    let status = response.status().as_u16();
    shared.metrics.request(&route, status, guard.start.elapsed());
    if route != "/sdapi/v1/progress" && route != "/metrics" {
        tracing::info!(%method, route, status, ms = guard.start.elapsed().as_millis() as u64, "request");
    }
    response
}

async fn not_found(req: Request) -> ApiError {
    let path = req.uri().path();
    ApiError::new(
        Api::of_path(path),
        Kind::NotFound,
        format!("no route {} {path}", req.method()),
    )
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    match shared.ready() {
        true => "ready".into_response(),
        false => (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        shared.metrics.render(shared.queue.depth()),
    )
        .into_response()
}

/// The body, or the 413 / 400 its extraction failed with.
pub(crate) fn body(
    api: Api,
    body: Result<Bytes, BytesRejection>,
    shared: &Shared,
) -> Result<Bytes, ApiError> {
    body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            api,
            Kind::TooLarge,
            format!(
                "the body is larger than this server's {} bytes",
                shared.config.limits.max_body_bytes
            ),
        ),
        _ => ApiError::new(api, Kind::Malformed, format!("could not read the body: {e}")),
    })
}

/// A request's images, in order, once its units are done.
pub(crate) struct Collected {
    pub images: Vec<Image>,
    pub interrupted: bool,
    pub queued_s: f64,
    pub run_s: f64,
    /// The largest batch one of its units ran in.
    pub batch_images: usize,
}

/// Waits for each unit; an interrupted one ends the request (the rest,
/// dropped here, are skipped by the workers).
pub(crate) async fn collect(
    api: Api,
    receivers: Vec<oneshot::Receiver<Reply>>,
) -> Result<Collected, ApiError> {
    let mut c = Collected {
        images: Vec::new(),
        interrupted: false,
        queued_s: 0.0,
        run_s: 0.0,
        batch_images: 0,
    };
    for (i, rx) in receivers.into_iter().enumerate() {
        let out = match rx.await {
            Ok(Ok(out)) => out,
            Ok(Err(UnitError::Refused(m))) => return Err(ApiError::new(api, Kind::Refused, m)),
            Ok(Err(UnitError::Failed(m))) => return Err(ApiError::new(api, Kind::Internal, m)),
            Ok(Err(e @ UnitError::ShuttingDown)) => {
                return Err(ApiError::new(api, Kind::ShuttingDown, e.to_string()))
            }
            Err(_) => {
                return Err(ApiError::new(
                    api,
                    Kind::Internal,
                    "the worker stopped without an answer (see the server log)",
                ))
            }
        };
        if i == 0 {
            c.queued_s = out.queued_s;
        }
        c.run_s += out.run_s;
        c.batch_images = c.batch_images.max(out.batch_images);
        c.images.extend(out.images);
        if out.interrupted {
            c.interrupted = true;
            break;
        }
    }
    Ok(c)
}
