//! `ras generate`: text to PNG through [`ras::pipeline::Pipeline`].

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ras::bench::profile::render;
use ras::models::Family;
use ras::pipeline::{parameters, read_latents_init, write_png, Event, Pipeline, PipelineOptions};
use ras::ras::StepKind;

use super::ras_args::RasArgs;

pub use ras::pipeline::DEMO_MODEL as DEFAULT_MODEL;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A diffusers StableDiffusion3Pipeline or LuminaPipeline folder (its
    /// model_index.json says which), or a Hugging Face repo id (e.g.
    /// stabilityai/stable-diffusion-3-medium-diffusers,
    /// Alpha-VLLM/Lumina-Next-SFT-diffusers) already in the local cache
    /// (HF_HUB_CACHE / HF_HOME / ~/.cache/huggingface). Default: the
    /// built-in demo model (models/ras-demo, SD3 format).
    #[arg(long, env = "RAS_MODEL")]
    pub model: Option<String>,
    /// What to draw (SD3: CLIP reads the first 75 tokens, T5
    /// --max-sequence-length; Lumina: Gemma reads --max-sequence-length
    /// tokens of the lower-cased, stripped prompt — diffusers' optional
    /// caption cleaner (clean_caption, needs bs4 and ftfy) is not applied).
    #[arg(long)]
    pub prompt: String,
    /// What to steer away from (used with --guidance > 1).
    #[arg(long = "negative-prompt", default_value = "")]
    pub negative_prompt: String,
    /// Image width in pixels (a multiple of 16 for SD3 and Lumina). Default:
    /// the model's native size (1024 for SD3 and Lumina-Next, 256 for the
    /// demo model). Any multiple is generated as asked, without resolution
    /// binning (diffusers' LuminaPipeline has none either): Lumina's
    /// time-aware RoPE scaling adapts the model to the size, as the
    /// pipeline does.
    #[arg(long)]
    pub width: Option<usize>,
    /// Image height in pixels. Default: the model's native size.
    #[arg(long)]
    pub height: Option<usize>,
    /// Denoising steps. Default: 28 for SD3, 30 for Lumina-Next (the
    /// diffusers pipelines' defaults).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Classifier-free guidance scale (≤ 1 turns guidance off). Default: 7
    /// for SD3, 4 for Lumina-Next (which guides latent channels 0-2 only,
    /// as its pipeline does).
    #[arg(long)]
    pub guidance: Option<f32>,
    /// Seed of the initial noise (ChaCha8 normal draws): the same seed,
    /// prompt and settings give the same PNG on the same adapter.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images of this prompt, denoised as one batch (files out-0.png, out-1.png, …).
    #[arg(long = "num-images")]
    pub num_images: Option<usize>,
    /// Text tokens: SD3's T5 length, Lumina's Gemma truncation length
    /// (diffusers' max_sequence_length; LuminaPipeline 0.42 ignores its
    /// call argument and always uses 256, ras uses this value).
    #[arg(long = "max-sequence-length", default_value_t = 256)]
    pub max_sequence_length: usize,
    /// SD3: leave the T5 encoder out (zeros in its place, as diffusers does
    /// without text_encoder_3): less memory and time, weaker prompts.
    #[arg(long = "no-t5")]
    pub no_t5: bool,
    /// A safetensors file whose `latents_init` [B, C, H/8, W/8] replaces the
    /// seeded noise (to compare with another implementation).
    #[arg(long = "latents-init")]
    pub latents_init: Option<PathBuf>,
    /// Keep every component on the GPU instead of releasing each after its stage.
    #[arg(long = "keep-loaded")]
    pub keep_loaded: bool,
    /// Print each stage, step and the memory figures as plain lines.
    #[arg(long, short)]
    pub verbose: bool,
    /// Time every kernel (GPU timestamps where the adapter has them) and
    /// print, per step kind (dense, RAS, outside steps), the time by kernel
    /// family and by layer kind with GFLOP/s, GB/s and dispatches and
    /// submits per step. Profiling serialises the GPU's work: the run is
    /// slower than without it.
    #[arg(long)]
    pub profile: bool,
    /// Output PNG.
    #[arg(long, short, default_value = "out.png")]
    pub output: PathBuf,
    #[command(flatten)]
    pub ras: RasArgs,
}

pub fn run(gpu: &ras::gpu::Gpu, args: &GenerateArgs) -> Result<()> {
    let model = match &args.model {
        Some(m) => m.clone(),
        None if Path::new(DEFAULT_MODEL).is_dir() => DEFAULT_MODEL.to_owned(),
        None => bail!("no --model given and the built-in demo model is missing at {DEFAULT_MODEL}"),
    };
    let options = PipelineOptions {
        keep_loaded: args.keep_loaded,
        no_t5: args.no_t5,
        cancel: Some(super::catch_interrupts()),
    };
    let mut pipeline =
        Pipeline::load(gpu, &model, options).with_context(|| format!("opening the model '{model}'"))?;
    let mut req = pipeline.request(&args.prompt);
    req.negative_prompt = args.negative_prompt.clone();
    req.width = args.width.unwrap_or(req.width);
    req.height = args.height.unwrap_or(req.height);
    req.steps = args.steps.unwrap_or(req.steps);
    req.guidance = args.guidance.unwrap_or(req.guidance);
    req.seed = args.seed;
    req.num_images = args.num_images.unwrap_or(1);
    req.max_sequence_length = args.max_sequence_length;
    req.precision = args.ras.precision.precision();
    req.ras = args.ras.config(
        req.steps,
        pipeline.image_tokens(&req),
        pipeline.ras_defaults(&req),
    )?;
    if let Some(path) = &args.latents_init {
        let (values, shape) = read_latents_init(path)?;
        match (args.num_images, shape.first()) {
            (Some(k), Some(&b)) if k != b => {
                bail!(
                    "--num-images {k} differs from the {b} images in {}",
                    path.display()
                )
            }
            _ => req.num_images = shape.first().copied().unwrap_or(1),
        }
        let expected = pipeline.latent_shape(&req);
        if shape != expected {
            bail!(
                "latents_init in {} has shape {shape:?}; {}x{} needs {expected:?}",
                path.display(),
                req.width,
                req.height
            );
        }
        req.latents_init = Some(values);
    }
    pipeline.validate(&req)?;
    let t5 = (pipeline.family() == Family::Sd3).then_some(pipeline.dir.has_t5 && !args.no_t5);
    if args.verbose {
        eprintln!(
            "adapter {} ({}), {} model {}{}",
            gpu.adapter_name(),
            gpu.backend(),
            pipeline.family().name(),
            pipeline.dir.root.display(),
            match t5 {
                Some(on) => format!(", T5 {}", if on { "on" } else { "off" }),
                None => String::new(),
            }
        );
    }
    let bar = ProgressBar::new(req.steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let start = Instant::now();
    let mut stage_start = Instant::now();
    let say = |line: String| {
        if args.verbose {
            bar.suspend(|| eprintln!("[{:7.2}s] {line}", start.elapsed().as_secs_f64()));
        }
    };
    if args.profile {
        gpu.start_profile()?;
    }
    let out = pipeline.generate(&req, |event| {
        match event {
            Event::Loading(what) => {
                bar.set_prefix("loading");
                bar.set_message(what.to_string());
                say(format!("loading {what}"));
            }
            Event::Encoding => {
                bar.set_prefix("encoding");
                bar.set_message(format!(
                    "{} prompt(s)",
                    if ras::sampling::guided(req.guidance) { 2 } else { 1 }
                ));
                say("encoding the prompt".into());
            }
            Event::Denoising => stage_start = Instant::now(),
            Event::Step(s) => {
                let kind = match s.kind {
                    StepKind::Ras => "ras",
                    StepKind::Dense { .. } => "dense",
                };
                bar.set_prefix("denoising");
                bar.set_position(s.step as u64 + 1);
                bar.set_message(format!("{kind} {}/{} tokens", s.active_tokens, s.total_tokens));
                say(format!(
                    "step {:>3}/{} {kind:<5} {}/{} tokens",
                    s.step + 1,
                    s.steps,
                    s.active_tokens,
                    s.total_tokens
                ));
            }
            Event::Decoding { tile } => {
                say(format!(
                    "denoising took {:.2}s; decoding{}",
                    stage_start.elapsed().as_secs_f64(),
                    tile.map_or(String::new(), |t| format!(" in {t}x{t} latent tiles"))
                ));
                bar.set_prefix("decoding");
                bar.set_message(match tile {
                    Some(t) => format!("VAE, {t}x{t} latent tiles"),
                    None => "VAE".into(),
                });
            }
        }
        ControlFlow::Continue(())
    })?;
    bar.finish_and_clear();
    if args.profile {
        eprint!("{}", render(&gpu.take_profile()?));
    }
    let mut written = Vec::new();
    for (i, image) in out.images.iter().enumerate() {
        let path = output_path(&args.output, i, out.images.len());
        write_png(&path, image, &parameters(&req, &pipeline.dir.name, t5, i))?;
        written.push(path.display().to_string());
    }
    eprintln!(
        "wrote {} in {:.1}s; peak GPU memory {:.1} MiB{}",
        written.join(", "),
        start.elapsed().as_secs_f64(),
        out.peak_bytes as f64 / (1 << 20) as f64,
        if out.kv_cache_bytes > 0 {
            format!(
                " (K/V cache {:.1} MiB)",
                out.kv_cache_bytes as f64 / (1 << 20) as f64
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `out.png` for one image, `out-0.png`, `out-1.png`, … for several.
fn output_path(path: &Path, index: usize, count: usize) -> PathBuf {
    if count == 1 {
        return path.to_owned();
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("png");
    path.with_file_name(format!("{stem}-{index}.{ext}"))
}
