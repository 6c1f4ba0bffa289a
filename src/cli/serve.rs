//! `ras serve`: the HTTP server (AUTOMATIC1111 and OpenAI image APIs) over
//! [`ras::serve`].

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use ras::serve::{Adapters, Limits, ServeConfig, Server};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A model to serve: a diffusers SD3 or Lumina-Next folder or a cached
    /// Hugging Face repo id (as `ras generate --model`). Repeat for several;
    /// the first is the default. Requests pick one by name (the folder's
    /// name or the repo id; `GET /sdapi/v1/sd-models` lists them). Default:
    /// the built-in demo model.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// Address to listen on. Anything but loopback needs --api-key (or --insecure).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 7860)]
    pub port: u16,
    /// Bearer token every API call must carry (`Authorization: Bearer
    /// KEY`); /healthz and /readyz stay open for load balancers. At least 8
    /// characters.
    #[arg(long = "api-key", env = "RAS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Serve a non-loopback address without an API key (only behind a
    /// proxy that authenticates).
    #[arg(long)]
    pub insecure: bool,
    /// Most requests waiting for a GPU; beyond it requests get 503 with
    /// Retry-After (a load balancer can send them elsewhere).
    #[arg(long = "max-queue", default_value_t = 64)]
    pub max_queue: usize,
    /// Most images per batch: waiting requests with the same model, size,
    /// steps, guidance and RAS settings run together as one batch (each
    /// with its own prompt and seed). 1 turns batching off.
    #[arg(long = "max-batch", default_value_t = 4)]
    pub max_batch: usize,
    /// One worker per adapter: `all` (every Vulkan/Metal/DX12 adapter with
    /// compute), or a comma-separated list of name substrings or numbers
    /// from `ras info`'s # column (two cards of one model share a name).
    /// Default: the one adapter --adapter picks.
    #[arg(long)]
    pub adapters: Option<String>,
    /// Most pixels (width × height) per image.
    #[arg(long = "max-pixels", default_value_t = Limits::default().max_pixels)]
    pub max_pixels: usize,
    /// Most denoising steps per request.
    #[arg(long = "max-steps", default_value_t = Limits::default().max_steps)]
    pub max_steps: usize,
    /// Most images per request (batch_size × n_iter, or n).
    #[arg(long = "max-images", default_value_t = Limits::default().max_images)]
    pub max_images: usize,
    /// Largest request body in bytes.
    #[arg(long = "max-body-bytes", default_value_t = Limits::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Seconds running jobs get to finish after SIGTERM or Ctrl-C before
    /// they are cancelled (queued ones are answered 503 at once).
    #[arg(long = "shutdown-timeout", default_value_t = 30.0)]
    pub shutdown_timeout: f64,
    /// Skip the warm-up generation (each model's first request then pays
    /// for loading its weights and compiling kernels).
    #[arg(long = "no-warmup")]
    pub no_warmup: bool,
    /// Log lines as JSON objects (for log collectors) instead of text.
    /// RUST_LOG filters them (default: info).
    #[arg(long = "log-json")]
    pub log_json: bool,
}

pub fn run(device: &super::DeviceArgs, args: &ServeArgs) -> Result<()> {
    init_logs(args.log_json);
    if !(args.shutdown_timeout >= 0.0 && args.shutdown_timeout.is_finite()) {
        anyhow::bail!("--shutdown-timeout must be a number of seconds ≥ 0");
    }
    let config = ServeConfig {
        models: match args.models.is_empty() {
            true => vec![super::generate::DEFAULT_MODEL.to_owned()],
            false => args.models.clone(),
        },
        host: args.host,
        port: args.port,
        api_key: args.api_key.clone(),
        insecure: args.insecure,
        max_queue: args.max_queue,
        max_batch: args.max_batch,
        limits: Limits {
            max_pixels: args.max_pixels,
            max_steps: args.max_steps,
            max_images: args.max_images,
            max_body_bytes: args.max_body_bytes,
        },
        adapters: match args.adapters.as_deref() {
            None => Adapters::Default,
            Some("all") => Adapters::All,
            Some(list) => Adapters::Named(list.split(',').map(|s| s.trim().to_owned()).collect()),
        },
        gpu: device.gpu_options(),
        warmup: !args.no_warmup,
        shutdown_timeout: Duration::from_secs_f64(args.shutdown_timeout),
    };
    let server = Server::start(config).context("starting the server")?;
    let addr = server.local_addr();
    tracing::info!(
        adapters = server.adapters().join(", "),
        "listening on http://{addr} (A1111: /sdapi/v1/txt2img, OpenAI: /v1/images/generations, /metrics)"
    );
    // Tests and scripts read the address from this line when --port is 0.
    eprintln!("listening on http://{addr}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(server.run(shutdown_signal()))?;
    Ok(())
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
}

/// SIGTERM (what container runtimes and systemd send) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
