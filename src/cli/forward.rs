//! `ras forward`: one transformer call from and to files, for parity
//! debugging and regression tests.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use ras::models::load_transformer;
use ras::pipeline::forward_files;

#[derive(Args, Debug)]
pub struct ForwardArgs {
    /// A diffusers `transformer/` folder (config.json + safetensors); its
    /// `_class_name` picks the model.
    #[arg(long)]
    pub transformer: PathBuf,
    /// Input tensors (safetensors, diffusers' argument names).
    #[arg(long)]
    pub inputs: PathBuf,
    /// Where to write `sample` (safetensors, f32).
    #[arg(long)]
    pub output: PathBuf,
}

pub fn run(gpu: &ras::gpu::Gpu, args: &ForwardArgs) -> Result<()> {
    let model = load_transformer(gpu, &args.transformer)
        .with_context(|| format!("loading the transformer from {}", args.transformer.display()))?;
    forward_files(gpu, model.as_ref(), &args.inputs, &args.output)?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
