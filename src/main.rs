mod cli;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Diffusion Transformers on any GPU through WebGPU, with Region-Adaptive Sampling.
#[derive(Parser)]
#[command(name = "ras", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    device: cli::DeviceArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters, their backends, optional features and limits,
    /// and which one ras would pick.
    Info,
    /// Run one transformer forward from files (for parity debugging and
    /// regression tests), with diffusers' argument names as keys, all f32.
    /// SD3: `hidden_states` [B,C,H,W], `encoder_hidden_states` [B,L,D],
    /// `pooled_projections` [B,P], `timestep` [B] (0-1000 scale).
    /// Lumina-Next: `hidden_states` [B,C,H,W], `timestep` [B] (0 = noise,
    /// 1 = image), `encoder_hidden_states` [B,L,D], `encoder_mask` [B,L]
    /// (1 = real token); RoPE scaling and proportional attention as
    /// LuminaPipeline sets them for this size. Output: `sample`
    /// [B,C_out,H,W] (Lumina: 2C, the learned-sigma half included).
    Forward(cli::forward::ForwardArgs),
    /// Run the sampling loop (flow-match Euler, classifier-free guidance,
    /// Region-Adaptive Sampling) from files, without text encoders or VAE.
    /// Inputs: `latents_init` [B,C,H,W], `prompt_embeds` and
    /// `negative_prompt_embeds` [B,L,D], and the model's extra conditioning:
    /// SD3 `pooled_prompt_embeds` and `negative_pooled_prompt_embeds` [B,P];
    /// Lumina `prompt_attention_mask` and `negative_prompt_attention_mask`
    /// [B,L]. Output: `latents_final` [B,C,H,W] (no VAE scaling) and, with
    /// --save-active, `active_step_{i}` (i32 [B, n_active], ascending token
    /// indices) for every RAS step.
    Sample(Box<cli::sample::SampleArgs>),
    /// Generate images from a prompt with a diffusers SD3 or Lumina-Next
    /// folder (text encoders, transformer with Region-Adaptive Sampling,
    /// VAE) and write PNGs that carry the settings as metadata. RAS is on
    /// by default (--sample-ratio 0.5); --dense turns it off.
    Generate(Box<cli::generate::GenerateArgs>),
    /// Visual regression of RAS against dense sampling: both from the same
    /// seed and noise; writes dense.png, ras.png, a difference heat map and
    /// a map of where RAS spent compute; prints PSNR, SSIM, both denoising
    /// times and the speed-up. With --min-ssim / --min-psnr it exits with
    /// status 1 when a prompt falls below (for CI jobs); --json for machines.
    Compare(Box<cli::compare::CompareArgs>),
    /// Serve the AUTOMATIC1111 (`/sdapi/v1/txt2img`, progress, interrupt,
    /// models, options, samplers) and OpenAI (`/v1/images/generations`)
    /// image APIs over HTTP, with a bounded queue, batching of requests that
    /// share their settings, Prometheus metrics (/metrics), health checks
    /// (/healthz, /readyz) and bearer-token auth. Loopback only unless
    /// --api-key is given. SIGTERM or Ctrl-C drains it gracefully.
    #[cfg(feature = "serve")]
    Serve(Box<cli::serve::ServeArgs>),
    /// Benchmarks (times are wall clock per launch on the selected adapter).
    Bench {
        #[command(subcommand)]
        what: cli::bench::BenchWhat,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) if is_cancelled(&e) => {
            eprintln!("interrupted: stopped after the current step; no output was written");
            ExitCode::from(130)
        }
        // The error and its causes, without anyhow's backtrace: these are
        // the user's errors (a bad argument, a broken file), whose messages
        // say what to do. Panics, the real bugs, keep theirs.
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_cancelled(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref::<ras::Error>(), Some(ras::Error::Cancelled)))
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    let open = || cli::open(&cli.device);
    match cli.command {
        Command::Info => cli::info::run(&cli.device)?,
        Command::Forward(args) => cli::forward::run(&open()?, &args)?,
        Command::Sample(args) => cli::sample::run(&open()?, &args)?,
        Command::Generate(args) => cli::generate::run(&open()?, &args)?,
        Command::Compare(args) => {
            if !cli::compare::run(&open()?, &args)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        #[cfg(feature = "serve")]
        Command::Serve(args) => cli::serve::run(&cli.device, &args)?,
        Command::Bench { what } => cli::bench::run(&cli.device, what)?,
    }
    Ok(ExitCode::SUCCESS)
}
