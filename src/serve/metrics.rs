//! Prometheus metrics (`GET /metrics`, text exposition format).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::pipeline::StepInfo;
use crate::ras::StepKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    /// dense or ras
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdapterLabels {
    /// Workers are numbered: two cards of one model share a name.
    worker: String,
    adapter: String,
}

pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram>,
    step_seconds: Family<StepLabels, Histogram>,
    batch_images: Histogram,
    images: Counter,
    queue_depth: Gauge,
    gpu_memory: Family<AdapterLabels, Gauge>,
    tokens_computed: Counter,
    tokens_skipped: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("ras"),
            requests: Family::default(),
            // 10 ms to about 3 h.
            request_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 20))
            }),
            // 1 ms to about 16 s.
            step_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 15))
            }),
            batch_images: Histogram::new(exponential_buckets(1.0, 2.0, 7)),
            images: Counter::default(),
            queue_depth: Gauge::default(),
            gpu_memory: Family::default(),
            tokens_computed: Counter::default(),
            tokens_skipped: Counter::default(),
        };
        {
            let r = &mut m.registry;
            r.register(
                "http_requests",
                "HTTP requests by route and status",
                m.requests.clone(),
            );
            r.register(
                "http_request_duration_seconds",
                "HTTP request latency by route, queueing included",
                m.request_seconds.clone(),
            );
            r.register(
                "step_duration_seconds",
                "Wall time of one denoising step (a whole batch) by kind",
                m.step_seconds.clone(),
            );
            r.register("batch_images", "Images per batch run", m.batch_images.clone());
            r.register("images_generated", "Images generated", m.images.clone());
            r.register(
                "queue_depth",
                "Requests waiting for a worker",
                m.queue_depth.clone(),
            );
            r.register(
                "gpu_memory_bytes",
                "GPU memory held by the engine per worker and adapter (weights, activations, cached buffers)",
                m.gpu_memory.clone(),
            );
            r.register(
                "tokens_computed",
                "Image tokens sent through the transformer (per image and step)",
                m.tokens_computed.clone(),
            );
            r.register(
                "tokens_skipped",
                "Image tokens RAS skipped (their last output reused), per image and step",
                m.tokens_skipped.clone(),
            );
        }
        m
    }

    pub fn request(&self, route: &str, status: u16, latency: Duration) {
        let route = route.to_owned();
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabels { route })
            .observe(latency.as_secs_f64());
    }

    pub fn step(&self, info: &StepInfo, images: usize, took: Duration) {
        let kind = match info.kind {
            StepKind::Ras => "ras",
            StepKind::Dense { .. } => "dense",
        };
        self.step_seconds
            .get_or_create(&StepLabels { kind: kind.into() })
            .observe(took.as_secs_f64());
        self.tokens_computed.inc_by((info.active_tokens * images) as u64);
        self.tokens_skipped
            .inc_by((info.total_tokens.saturating_sub(info.active_tokens) * images) as u64);
    }

    pub fn batch(&self, images: usize) {
        self.batch_images.observe(images as f64);
    }

    pub fn images(&self, n: usize) {
        self.images.inc_by(n as u64);
    }

    pub fn gpu_memory(&self, worker: usize, adapter: &str, bytes: u64) {
        self.gpu_memory
            .get_or_create(&AdapterLabels {
                worker: worker.to_string(),
                adapter: adapter.into(),
            })
            .set(bytes.min(i64::MAX as u64) as i64);
    }

    /// The exposition text, with the queue depth as of now.
    pub fn render(&self, queue_depth: usize) -> String {
        self.queue_depth.set(queue_depth as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
