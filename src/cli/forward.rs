//! `ras forward`: one transformer call from and to files, for parity
//! debugging and regression tests.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use ras::models::{lumina, sd3, Family};

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
    let loading = || format!("loading the transformer from {}", args.transformer.display());
    match Family::of_transformer(&args.transformer)? {
        Family::Sd3 => {
            let model = sd3::Sd3Transformer::load_dir(gpu, &args.transformer).with_context(loading)?;
            sd3::forward_files(gpu, &model, &args.inputs, &args.output)?;
        }
        Family::Lumina => {
            let model = lumina::LuminaTransformer::load_dir(gpu, &args.transformer).with_context(loading)?;
            lumina::forward_files(gpu, &model, &args.inputs, &args.output)?;
        }
    }
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
