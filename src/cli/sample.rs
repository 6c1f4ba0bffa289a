//! `ras sample`: the denoising loop with RAS from files, without text
//! encoders or VAE, for any supported transformer.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use ras::models::load_transformer;
use ras::pipeline::{defaults, ras_defaults, sample_files, SampleFiles};
use ras::ras::StepKind;
use ras::sampling::SchedulerConfig;
use ras::weights::Weights;

use super::ras_args::RasArgs;

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A diffusers `transformer/` folder; its `_class_name` picks the model.
    #[arg(long)]
    pub transformer: PathBuf,
    /// Input tensors (safetensors; the names are in the command's help above).
    #[arg(long)]
    pub inputs: PathBuf,
    /// Where to write `latents_final` (and the active sets).
    #[arg(long)]
    pub output: PathBuf,
    /// Denoising steps. Default: the model's pipeline default (SD3 28,
    /// Lumina 30).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Classifier-free guidance scale (≤ 1 = no guidance). Default: SD3 7,
    /// Lumina 4.
    #[arg(long)]
    pub guidance: Option<f32>,
    /// Timestep shift; default: `shift` from ../scheduler/scheduler_config.json
    /// next to the transformer folder, else the model's (SD3 3.0, Lumina 1.0).
    #[arg(long)]
    pub shift: Option<f64>,
    /// Also save the active token indices of every RAS step.
    #[arg(long = "save-active")]
    pub save_active: bool,
    #[command(flatten)]
    pub ras: RasArgs,
}

pub fn run(gpu: &ras::gpu::Gpu, args: &SampleArgs) -> Result<()> {
    let model = load_transformer(gpu, &args.transformer)
        .with_context(|| format!("loading the transformer from {}", args.transformer.display()))?;
    let family = model.family();
    let d = defaults(family);
    let steps = args.steps.unwrap_or(d.steps);
    let tokens = image_tokens(&args.inputs, model.patch_size())?;
    let job = SampleFiles {
        inputs: &args.inputs,
        output: &args.output,
        steps,
        guidance: args.guidance.unwrap_or(d.guidance),
        shift: match args.shift {
            Some(s) => s,
            None => scheduler_shift(&args.transformer, d.shift)?,
        },
        ras: args
            .ras
            .config(steps, tokens, ras_defaults(family, steps, tokens))?,
        precision: args.ras.precision.precision(),
        save_active: args.save_active,
    };
    let cache = sample_files(gpu, model.as_ref(), &job, |s| {
        let kind = match s.kind {
            StepKind::Ras => "ras",
            StepKind::Dense { .. } => "dense",
        };
        eprintln!(
            "step {:>3}/{} {kind:<5} {}/{} tokens",
            s.step + 1,
            s.steps,
            s.active_tokens,
            s.total_tokens
        );
    })?;
    eprintln!(
        "wrote {} (K/V cache peak {:.1} MiB)",
        args.output.display(),
        cache as f64 / (1 << 20) as f64
    );
    Ok(())
}

/// Image tokens of the inputs' `latents_init` [B, C, H, W].
fn image_tokens(inputs: &Path, patch: usize) -> Result<usize> {
    let file = Weights::from_files(&[inputs.to_owned()])?;
    match file.shape("latents_init").as_deref() {
        Some(&[_, _, h, w]) => Ok((h / patch) * (w / patch)),
        Some(s) => anyhow::bail!("latents_init in {} is {s:?}, not [B, C, H, W]", inputs.display()),
        None => anyhow::bail!("{} has no latents_init tensor", inputs.display()),
    }
}

/// `shift` from the scheduler config beside a transformer folder, else `fallback`.
fn scheduler_shift(transformer: &Path, fallback: f64) -> Result<f64> {
    let path = transformer.join("../scheduler/scheduler_config.json");
    if !path.exists() {
        return Ok(fallback);
    }
    Ok(SchedulerConfig::from_file(&path)?.shift)
}
