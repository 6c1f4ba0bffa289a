//! `ras bench serve`: the HTTP server under load (see [`ras::bench::serve`]).

use anyhow::{Context, Result};
use clap::Args;
use ras::bench::serve::{bench_serve, load, LoadConfig, LoadFigure};
use ras::serve::ServeConfig;
use serde_json::json;

#[derive(Args, Debug)]
pub struct BenchServeArgs {
    /// Load-test a running server (e.g. http://127.0.0.1:7860, or a load
    /// balancer in front of several) instead of starting one.
    #[arg(long)]
    pub url: Option<String>,
    /// The server's API key, if it has one.
    #[arg(long = "api-key", env = "RAS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Requests in all (one image each).
    #[arg(long, default_value_t = 24)]
    pub requests: usize,
    /// Denoising steps per request. Default: the model's.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Image side in pixels. Default: the model's native size.
    #[arg(long)]
    pub size: Option<usize>,
    /// In-process servers: the --max-batch values to compare.
    #[arg(long = "max-batch", value_delimiter = ',', default_value = "1,4")]
    pub max_batch: Vec<usize>,
    /// In-process servers: the model (default: the built-in demo model).
    #[arg(long)]
    pub model: Option<String>,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(device: &super::DeviceArgs, args: &BenchServeArgs) -> Result<()> {
    let mut extra = json!({});
    if let Some(steps) = args.steps {
        extra["steps"] = json!(steps);
    }
    if let Some(size) = args.size {
        extra["width"] = json!(size);
        extra["height"] = json!(size);
    }
    let cfg = LoadConfig {
        clients: args.clients,
        requests: args.requests,
        extra,
    };
    let figures = match &args.url {
        Some(url) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            vec![(None, runtime.block_on(load(url, args.api_key.as_deref(), &cfg))?)]
        }
        None => {
            let config = ServeConfig {
                models: vec![args
                    .model
                    .clone()
                    .unwrap_or_else(|| super::generate::DEFAULT_MODEL.to_owned())],
                api_key: args.api_key.clone(),
                max_queue: args.requests.max(1),
                gpu: device.gpu_options(),
                ..ServeConfig::default()
            };
            bench_serve(&config, &args.max_batch, &cfg)?
                .into_iter()
                .map(|(b, f)| (Some(b), f))
                .collect()
        }
    };
    if args.json {
        let rows: Vec<_> = figures
            .iter()
            .map(|(b, f)| row_json(*b, f, args.clients))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{} clients, {} requests{}",
        args.clients,
        args.requests,
        match (&cfg.extra["steps"], &cfg.extra["width"]) {
            (s, w) if s.is_null() && w.is_null() => String::new(),
            (s, w) => format!(" (steps {s}, size {w})"),
        }
    );
    let base = figures.first().map(|f| f.1.images_per_s());
    for (max_batch, f) in &figures {
        println!(
            "{:<14} {:>7.3} images/s{}  latency p50 {:>6.2} s  p95 {:>6.2} s  max {:>6.2} s  mean batch {:.2}  failed {}",
            max_batch.map_or("server".to_owned(), |b| format!("max-batch {b}")),
            f.images_per_s(),
            match base {
                Some(b) if figures.len() > 1 => format!(" ({:.2}x)", f.images_per_s() / b),
                _ => String::new(),
            },
            f.latency(0.5),
            f.latency(0.95),
            f.latency(1.0),
            f.mean_batch,
            f.failures
        );
    }
    Ok(())
}

fn row_json(max_batch: Option<usize>, f: &LoadFigure, clients: usize) -> serde_json::Value {
    json!({
        "max_batch": max_batch,
        "clients": clients,
        "requests": f.requests,
        "failures": f.failures,
        "images": f.images,
        "seconds": f.seconds,
        "images_per_s": f.images_per_s(),
        "latency_p50_s": f.latency(0.5),
        "latency_p95_s": f.latency(0.95),
        "latency_max_s": f.latency(1.0),
        "mean_batch": f.mean_batch,
    })
}
