//! `ras serve`: the engine behind the HTTP APIs that creative tools already
//! speak — AUTOMATIC1111's `/sdapi/v1/*` and OpenAI's
//! `/v1/images/generations` — with a bounded queue, batching of requests
//! that share their settings, Prometheus metrics and bearer-token auth.
//!
//! Layout: [`ServeConfig`] → [`Server::start`] (checks the config, reads
//! the models' configs, binds, starts one GPU worker thread per adapter) →
//! [`Server::run`] (serves until the shutdown future resolves, then drains).
//! Requests are checked against the model's configs before they queue
//! (`order.rs`); workers (`worker.rs`) take batches from the queue
//! (`queue.rs`) and run them through [`Pipeline`](crate::pipeline::Pipeline).

mod a1111;
mod error;
mod handle;
mod http;
mod metrics;
mod openai;
mod order;
mod queue;
mod worker;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::gpu::GpuOptions;
use crate::pipeline::ModelConfig;

pub use handle::Handle;
use metrics::Metrics;
use queue::Queue;
use worker::WorkerStatus;

/// Per-request bounds (each a 4xx naming the field when exceeded).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most pixels (width × height) of one image.
    pub max_pixels: usize,
    pub max_steps: usize,
    /// Most images one request may ask for (batch_size × n_iter, or n).
    pub max_images: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_pixels: 1536 * 1536,
            max_steps: 150,
            max_images: 16,
            max_body_bytes: 1 << 20,
        }
    }
}

/// Which adapters get a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adapters {
    /// The one `--adapter` (or the default choice) names.
    Default,
    /// Every adapter with compute shaders on Vulkan, Metal or DX12 (GL when
    /// there is none), one worker each.
    All,
    /// One worker each: the adapter whose name contains the text, or for
    /// a number, the adapter at that position in `ras info`'s list.
    Named(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Model folders or cached Hugging Face repo ids; the first is the default.
    pub models: Vec<String>,
    pub host: IpAddr,
    /// 0 picks a free port (see [`Server::local_addr`]).
    pub port: u16,
    /// Bearer token every API call must carry (health checks excepted).
    pub api_key: Option<String>,
    /// Allow a non-loopback address without an API key.
    pub insecure: bool,
    /// Most requests waiting in the queue; more get 503 with Retry-After.
    pub max_queue: usize,
    /// Most images one batch may hold.
    pub max_batch: usize,
    pub limits: Limits,
    pub adapters: Adapters,
    /// Device options of every worker (the adapter fields are set per worker).
    pub gpu: GpuOptions,
    /// Run one tiny generation per model before reporting ready, so the
    /// first request does not pay for loading weights and compiling kernels.
    pub warmup: bool,
    /// How long running jobs may take to finish after a shutdown begins
    /// before they are cancelled.
    pub shutdown_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            models: vec![crate::pipeline::DEMO_MODEL.to_owned()],
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 7860,
            api_key: None,
            insecure: false,
            max_queue: 64,
            max_batch: 4,
            limits: Limits::default(),
            adapters: Adapters::Default,
            gpu: GpuOptions::default(),
            warmup: true,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

impl ServeConfig {
    /// Refuses settings that would be unsafe or could never serve a request.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if !self.host.is_loopback() && self.api_key.is_none() && !self.insecure {
            return bad(format!(
                "refusing to serve on {} without --api-key: anyone who can reach it could use \
                 the GPU. Give --api-key (or RAS_API_KEY), or --insecure if a proxy in front \
                 authenticates",
                self.host
            ));
        }
        if self.api_key.as_deref().is_some_and(|k| k.len() < 8) {
            return bad("--api-key must be at least 8 characters".into());
        }
        if self.models.is_empty() {
            return bad("give at least one --model".into());
        }
        for (what, v) in [
            ("--max-queue", self.max_queue),
            ("--max-batch", self.max_batch),
            ("--max-pixels", self.limits.max_pixels),
            ("--max-steps", self.limits.max_steps),
            ("--max-images", self.limits.max_images),
            ("--max-body-bytes", self.limits.max_body_bytes),
        ] {
            if v == 0 {
                return bad(format!("{what} must be at least 1"));
            }
        }
        Ok(())
    }
}

/// A model as the server offers it.
pub(crate) struct ServedModel {
    /// What requests call it: the repo id, or the folder's name (never a path).
    pub name: String,
    pub config: ModelConfig,
}

/// What the HTTP handlers and the workers share.
pub(crate) struct Shared {
    pub config: ServeConfig,
    pub models: Vec<ServedModel>,
    pub queue: Queue,
    pub workers: Vec<WorkerStatus>,
    pub metrics: Metrics,
    /// Set when a shutdown begins: `/readyz` fails, new requests get 503.
    pub draining: AtomicBool,
    /// Set when the shutdown deadline passes: running jobs stop.
    pub cancel_running: AtomicBool,
    pub next_request: AtomicU64,
    /// The model requests that name none get (`POST /sdapi/v1/options`
    /// changes it, as in A1111; the first `--model` at start).
    pub default_model: AtomicUsize,
    /// Seconds a batch took, smoothed (f64 bits), for Retry-After.
    pub batch_seconds: AtomicU64,
}

impl Shared {
    /// The model a request names, or the default one.
    pub fn model(&self, name: Option<&str>) -> Option<usize> {
        match name {
            None => Some(self.default_model.load(Ordering::Relaxed)),
            Some(n) => self.models.iter().position(|m| m.name == n),
        }
    }

    pub fn model_names(&self) -> String {
        let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
        names.join(", ")
    }

    pub fn ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed) && self.workers.iter().any(|w| w.ready.load(Ordering::Relaxed))
    }

    /// Seconds until a place in the queue is likely to free up.
    pub fn retry_after_s(&self) -> u64 {
        let batch = f64::from_bits(self.batch_seconds.load(Ordering::Relaxed));
        let waiting = self.queue.depth() as f64 / self.workers.len().max(1) as f64;
        (batch * waiting.max(1.0)).ceil().clamp(1.0, 120.0) as u64
    }
}

/// A started server: models opened, workers starting, address bound.
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
    workers: Vec<JoinHandle<()>>,
}

impl Server {
    /// Checks the config, reads every model's configs, binds the address
    /// and opens one device per worker (returning the first error). Weights
    /// load on the workers, in the background; `/readyz` says when.
    pub fn start(config: ServeConfig) -> Result<Server> {
        config.check()?;
        let mut models: Vec<ServedModel> = Vec::new();
        for spec in &config.models {
            let model = ModelConfig::open(spec)?;
            let name = served_name(spec, &model);
            if models.iter().any(|m| m.name == name) {
                return Err(Error::Invalid(format!(
                    "two models are both called '{name}'; serve folders with different names"
                )));
            }
            models.push(ServedModel { name, config: model });
        }
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr).map_err(|e| {
            Error::Invalid(format!(
                "cannot listen on {addr}: {e}; pick another --port or --host"
            ))
        })?;
        listener.set_nonblocking(true).map_err(|e| Error::Io {
            what: format!("listening on {addr}"),
            source: e,
        })?;
        let devices = worker::devices(&config)?;
        let shared = Arc::new(Shared {
            queue: Queue::new(config.max_queue),
            workers: devices.iter().map(|_| WorkerStatus::default()).collect(),
            metrics: Metrics::new(),
            draining: AtomicBool::new(false),
            cancel_running: AtomicBool::new(false),
            next_request: AtomicU64::new(1),
            default_model: AtomicUsize::new(0),
            batch_seconds: AtomicU64::new(1.0f64.to_bits()),
            models,
            config,
        });
        let (opened_tx, opened) = mpsc::channel();
        let workers = devices
            .into_iter()
            .enumerate()
            .map(|(i, gpu)| {
                let (shared, opened) = (shared.clone(), opened_tx.clone());
                std::thread::Builder::new()
                    .name(format!("ras-worker-{i}"))
                    .spawn(move || worker::run(shared, i, gpu, opened))
                    .expect("spawning a thread")
            })
            .collect::<Vec<_>>();
        drop(opened_tx);
        let mut first_error = None;
        for result in opened.iter() {
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            shared.queue.close();
            for w in workers {
                let _ = w.join();
            }
            return Err(e);
        }
        Ok(Server {
            shared,
            listener,
            workers,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Adapter names, one per worker.
    pub fn adapters(&self) -> Vec<String> {
        self.shared.workers.iter().map(|w| w.adapter()).collect()
    }

    /// Serves until `shutdown` resolves, then stops accepting, answers the
    /// queued requests with 503, gives running jobs `shutdown_timeout` to
    /// finish (then cancels them) and waits for the workers. Must run inside
    /// a Tokio runtime.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let io = |e: std::io::Error| Error::Io {
            what: "the server socket".into(),
            source: e,
        };
        let listener = tokio::net::TcpListener::from_std(self.listener).map_err(io)?;
        let app = http::router(self.shared.clone());
        let shared = self.shared.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: no new requests; queued ones get 503");
            shared.draining.store(true, Ordering::SeqCst);
            shared.queue.close();
            let deadline = shared.config.shutdown_timeout;
            tokio::spawn(async move {
                tokio::time::sleep(deadline).await;
                tracing::warn!("shutdown deadline passed: cancelling running jobs");
                shared.cancel_running.store(true, Ordering::SeqCst);
            });
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
            .map_err(io)?;
        let workers = self.workers;
        tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await
        .map_err(|e| Error::Invalid(format!("a worker thread failed: {e}")))?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// A repo id as given; a folder by its own name, so that no request or
/// response carries a path.
fn served_name(spec: &str, model: &ModelConfig) -> String {
    if std::path::Path::new(spec).is_dir() {
        model
            .dir
            .root
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| model.dir.name.clone())
    } else {
        model.dir.name.clone()
    }
}
