//! `ras bench serve`: a load test of the HTTP server. N clients send
//! txt2img requests back to back until M are answered; reported: latency
//! percentiles, images per second and the mean batch the images ran in.
//! Against an in-process server it runs once per `--max-batch` value in
//! one go, so batching's effect is measured in one run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::serve::{Handle, ServeConfig};

/// Prompts in the demo model's caption grammar, used in turn.
const PROMPTS: [&str; 6] = [
    "a red circle on a blue background",
    "a large yellow star in the top left, on a black background",
    "two green triangles on a white background",
    "a small white cross in the center, on a purple background",
    "a blue square at the bottom right, on an orange background",
    "a pink diamond on a gray background",
];

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub clients: usize,
    pub requests: usize,
    /// Fields added to every txt2img request (steps, size, RAS settings…).
    pub extra: Value,
}

#[derive(Debug, Clone)]
pub struct LoadFigure {
    pub requests: usize,
    pub images: usize,
    pub failures: usize,
    pub seconds: f64,
    /// Seconds per answered request, sorted.
    pub latencies: Vec<f64>,
    /// Mean images per batch that the answered images ran in.
    pub mean_batch: f64,
}

impl LoadFigure {
    pub fn images_per_s(&self) -> f64 {
        self.images as f64 / self.seconds
    }

    /// The `q` quantile (0..=1) of the latencies (nearest rank).
    pub fn latency(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = (q * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("load test: {e}"))
}

/// Runs the load against `base` (e.g. `http://127.0.0.1:7860`).
pub async fn load(base: &str, api_key: Option<&str>, cfg: &LoadConfig) -> Result<LoadFigure> {
    let client = reqwest::Client::new();
    let target = format!("{}/sdapi/v1/txt2img", base.trim_end_matches('/'));
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let tasks: Vec<_> = (0..cfg.clients.max(1))
        .map(|_| {
            let (client, target, next, results) =
                (client.clone(), target.clone(), next.clone(), results.clone());
            let (extra, total, key) = (cfg.extra.clone(), cfg.requests, api_key.map(str::to_owned));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let mut body = json!({"prompt": PROMPTS[i % PROMPTS.len()], "seed": i});
                    if let (Value::Object(b), Value::Object(e)) = (&mut body, &extra) {
                        b.extend(e.clone());
                    }
                    let mut request = client.post(&target).json(&body);
                    if let Some(k) = &key {
                        request = request.bearer_auth(k);
                    }
                    let sent = Instant::now();
                    let outcome = match request.send().await {
                        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok().map(|v| {
                            let info: Value = v["info"]
                                .as_str()
                                .and_then(|s| serde_json::from_str(s).ok())
                                .unwrap_or_default();
                            let images = v["images"].as_array().map_or(0, Vec::len);
                            (images, info["batch_images"].as_u64().unwrap_or(1) as usize)
                        }),
                        _ => None,
                    };
                    let took = sent.elapsed().as_secs_f64();
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((took, outcome));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(failed)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let results = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
    let mut latencies: Vec<f64> = results.iter().filter(|r| r.1.is_some()).map(|r| r.0).collect();
    latencies.sort_by(f64::total_cmp);
    let ok: Vec<(usize, usize)> = results.iter().filter_map(|r| r.1).collect();
    let images = ok.iter().map(|o| o.0).sum::<usize>();
    Ok(LoadFigure {
        requests: results.len(),
        images,
        failures: results.len() - ok.len(),
        seconds,
        latencies,
        mean_batch: ok.iter().map(|o| (o.0 * o.1) as f64).sum::<f64>() / images.max(1) as f64,
    })
}

/// Starts an in-process server per `max_batch` value (the rest of `config`
/// as given, any free port) and load-tests each in turn.
pub fn bench_serve(
    config: &ServeConfig,
    max_batches: &[usize],
    cfg: &LoadConfig,
) -> Result<Vec<(usize, LoadFigure)>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(failed)?;
    let mut figures = Vec::new();
    for &max_batch in max_batches {
        let server = Handle::spawn(ServeConfig {
            max_batch,
            port: 0,
            warmup: true,
            ..config.clone()
        })?;
        let base = format!("http://{}", server.addr());
        // Wait for the warm-up: the first request would otherwise pay for it.
        runtime.block_on(async {
            while !reqwest::get(format!("{base}/readyz"))
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        });
        let figure = runtime.block_on(load(&base, config.api_key.as_deref(), cfg))?;
        server.shutdown()?;
        figures.push((max_batch, figure));
    }
    Ok(figures)
}
