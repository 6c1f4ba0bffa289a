mod cli;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// Diffusion Transformers on any GPU through WebGPU, with Region-Adaptive Sampling.
#[derive(Parser)]
#[command(name = "ras", version, about, long_about = None)]
struct Cli {
    /// Use the adapter whose name contains this text (case-insensitive).
    /// Also read from RAS_ADAPTER; WGPU_BACKEND=vulkan|metal|dx12|gl limits the backends.
    #[arg(long, global = true, env = "RAS_ADAPTER")]
    adapter: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters, their backends, optional features and limits,
    /// and which one ras would pick.
    Info,
    /// Run one SD3 transformer forward from files (for parity debugging and
    /// regression tests). The inputs file holds `hidden_states` [B,C,H,W],
    /// `encoder_hidden_states` [B,L,joint_attention_dim], `pooled_projections`
    /// [B,pooled_projection_dim] and `timestep` [B] (diffusers' 0-1000 scale),
    /// all f32; the output file gets `sample` [B,C,H,W] in f32.
    Forward {
        /// A diffusers `transformer/` folder (config.json + safetensors).
        #[arg(long)]
        transformer: PathBuf,
        /// Input tensors (safetensors).
        #[arg(long)]
        inputs: PathBuf,
        /// Where to write `sample` (safetensors).
        #[arg(long)]
        output: PathBuf,
    },
    /// Run the SD3 sampling loop (flow-match Euler, classifier-free guidance,
    /// Region-Adaptive Sampling) from files, without text encoders or VAE.
    /// The inputs file holds `latents_init` [B,C,H,W], `prompt_embeds` and
    /// `negative_prompt_embeds` [B,L,D], `pooled_prompt_embeds` and
    /// `negative_pooled_prompt_embeds` [B,P] (f32); the output gets
    /// `latents_final` [B,C,H,W] and, with --save-active, `active_step_{i}`
    /// (i32 [B, n_active], ascending token indices) for every RAS step.
    Sample {
        /// A diffusers `transformer/` folder.
        #[arg(long)]
        transformer: PathBuf,
        #[arg(long)]
        inputs: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// Denoising steps.
        #[arg(long, default_value_t = 28)]
        steps: usize,
        /// Classifier-free guidance scale (1 = no guidance).
        #[arg(long, default_value_t = 7.0)]
        guidance: f32,
        /// Timestep shift; default: `shift` from ../scheduler/scheduler_config.json
        /// next to the transformer folder, else 3.0 (SD3).
        #[arg(long)]
        shift: Option<f64>,
        /// Also save the active token indices of every RAS step.
        #[arg(long = "save-active")]
        save_active: bool,
        #[command(flatten)]
        ras: cli::ras_args::RasArgs,
    },
    /// Generate images from a prompt with a diffusers SD3 folder (text
    /// encoders, MMDiT with Region-Adaptive Sampling, VAE) and write PNGs
    /// that carry the settings as metadata. RAS is on by default
    /// (--sample-ratio 0.5); --dense turns it off.
    Generate(Box<cli::generate::GenerateArgs>),
    /// Visual regression of RAS against dense sampling: both from the same
    /// seed and noise; writes dense.png, ras.png, a difference heat map and
    /// a map of where RAS spent compute; prints PSNR, SSIM, both denoising
    /// times and the speed-up. With --min-ssim / --min-psnr it exits with
    /// status 1 when a prompt falls below (for CI jobs); --json for machines.
    Compare(Box<cli::compare::CompareArgs>),
    /// Benchmarks (times are wall clock per launch on the selected adapter).
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Linear and attention kernels at DiT shapes (SD3-medium widths).
    Kernels {
        /// Timed repetitions per kernel (the best is reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Token count M of the linear shapes and query count of attention
        /// (4096 = a 1024×1024 SD3 image). Smaller values finish sooner on
        /// software adapters.
        #[arg(long, default_value_t = 4096)]
        tokens: usize,
    },
    /// Dense vs RAS sampling loops on the same transformer (SD3-medium widths,
    /// synthetic f16 weights, 333 text tokens, the original's SD3 schedule),
    /// in one run: prints each time, the speed-up (dense time / RAS time) and
    /// the ideal speed-up from image token-steps.
    Ras {
        /// Transformer blocks (24 in SD3-medium).
        #[arg(long, default_value_t = 2)]
        layers: usize,
        /// Image side in pixels (1024 = 4096 image tokens).
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long, default_value_t = 28)]
        steps: usize,
        /// Run without classifier-free guidance (batch 1 instead of 2).
        #[arg(long = "no-cfg")]
        no_cfg: bool,
        /// Sample ratios to compare against dense.
        #[arg(long, value_delimiter = ',', default_value = "0.5,0.25,0.125")]
        ratios: Vec<f64>,
    },
    /// One dense SD3 transformer forward at SD3-medium widths (1536 wide,
    /// 24 heads × 64) with synthetic f16 weights and 333 text tokens.
    Sd3 {
        /// Transformer blocks (24 in SD3-medium; fewer finish sooner on
        /// software adapters).
        #[arg(long, default_value_t = 24)]
        layers: usize,
        /// Image side in pixels (the latent is size/8, tokens (size/16)²).
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Batch size (2 = one classifier-free-guidance step).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Timed repetitions (the best is reported).
        #[arg(long, default_value_t = 2)]
        reps: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info => info(cli.adapter.as_deref()),
        Command::Bench { what } => bench(cli.adapter.as_deref(), what),
        Command::Generate(args) => cli::generate::run(&open(cli.adapter.as_deref())?, &args),
        Command::Compare(args) => {
            if !cli::compare::run(&open(cli.adapter.as_deref())?, &args)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Sample {
            transformer,
            inputs,
            output,
            steps,
            guidance,
            shift,
            save_active,
            ras,
        } => {
            let gpu = open(cli.adapter.as_deref())?;
            let model = ras::models::sd3::Sd3Transformer::load_dir(&gpu, &transformer)
                .with_context(|| format!("loading the transformer from {}", transformer.display()))?;
            let job = ras::pipeline::SampleFiles {
                inputs: &inputs,
                output: &output,
                steps,
                guidance,
                shift: shift.unwrap_or(scheduler_shift(&transformer)?),
                ras: ras.config(steps)?,
                save_active,
            };
            let cache = ras::pipeline::sample_files(&gpu, &model, &job, |s| {
                let kind = match s.kind {
                    ras::ras::StepKind::Ras => "ras",
                    ras::ras::StepKind::Dense { .. } => "dense",
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
                output.display(),
                cache as f64 / (1 << 20) as f64
            );
            Ok(())
        }
        Command::Forward {
            transformer,
            inputs,
            output,
        } => {
            let gpu = open(cli.adapter.as_deref())?;
            let model = ras::models::sd3::Sd3Transformer::load_dir(&gpu, &transformer)
                .with_context(|| format!("loading the transformer from {}", transformer.display()))?;
            ras::models::sd3::forward_files(&gpu, &model, &inputs, &output)?;
            eprintln!("wrote {}", output.display());
            Ok(())
        }
    }
}

fn info(filter: Option<&str>) -> Result<()> {
    let adapters = ras::gpu::list_adapters();
    if adapters.is_empty() {
        anyhow::bail!(
            "no GPU adapter found. Without a GPU install Mesa's software Vulkan driver: \
             `apt-get install -y mesa-vulkan-drivers`"
        );
    }
    println!(
        "{:<40} {:<7} {:<13} {:<8} {:>10} {:>10} {:>8} {:>9}  features",
        "adapter", "backend", "type", "compute", "binding", "buffer", "wg mem", "subgroup"
    );
    for a in &adapters {
        println!(
            "{:<40} {:<7} {:<13} {:<8} {:>10} {:>10} {:>8} {:>9}  {}",
            truncate(&a.name, 40),
            a.backend,
            a.device_type,
            if a.compute { "yes" } else { "no" },
            mib(a.max_storage_binding),
            mib(a.max_buffer),
            format!("{}K", a.max_workgroup_storage / 1024),
            format!("{}-{}", a.subgroup_size.0, a.subgroup_size.1),
            a.features.join(",")
        );
    }
    let gpu = ras::gpu::Gpu::new(&ras::gpu::GpuOptions {
        adapter: filter.map(str::to_owned),
        ..Default::default()
    })?;
    println!("\nselected: {} ({})", gpu.adapter_name(), gpu.backend());
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{}M", bytes >> 20)
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn open(filter: Option<&str>) -> Result<ras::gpu::Gpu> {
    Ok(ras::gpu::Gpu::new(&ras::gpu::GpuOptions {
        adapter: filter.map(str::to_owned),
        ..Default::default()
    })?)
}

fn bench(filter: Option<&str>, what: BenchWhat) -> Result<()> {
    let gpu = open(filter)?;
    println!("adapter: {} ({})", gpu.adapter_name(), gpu.backend());
    match what {
        BenchWhat::Kernels { reps, tokens } => {
            let shapes = [(1024, 1024, 1024), (tokens, 1536, 1536), (tokens, 6144, 1536)];
            for (m, n, k) in shapes {
                report(&ras::bench::bench_linear(&gpu, m, n, k, reps)?);
            }
            // 1024² SD3: 4096 image queries against 4096 + 333 keys.
            report(&ras::bench::bench_attention(
                &gpu,
                tokens,
                tokens + 333,
                24,
                64,
                reps,
            )?);
        }
        BenchWhat::Ras {
            layers,
            size,
            steps,
            no_cfg,
            ratios,
        } => {
            let cfg = ras::bench::ras::RasBenchConfig {
                layers,
                size,
                steps,
                cfg: !no_cfg,
                ratios,
            };
            println!(
                "{layers} layers, {size}px ({} image + 333 text tokens), {steps} steps, cfg {}",
                (size / 16) * (size / 16),
                !no_cfg
            );
            let mut dense: Option<ras::bench::ras::RunFigure> = None;
            ras::bench::ras::bench_ras(&gpu, &cfg, |f| {
                let d = dense.get_or_insert_with(|| f.clone());
                println!(
                    "ratio {:<6} {:>9.2} s  speed-up {:>5.2}x  ideal {:>5.2}x  K/V cache {:>7.1} MiB",
                    f.ratio,
                    f.seconds,
                    d.seconds / f.seconds,
                    d.token_steps as f64 / f.token_steps as f64,
                    f.kv_cache_bytes as f64 / (1 << 20) as f64
                );
            })?;
        }
        BenchWhat::Sd3 {
            layers,
            size,
            batch,
            reps,
        } => {
            report(&ras::bench::sd3::bench_sd3(&gpu, layers, size, batch, reps)?);
        }
    }
    Ok(())
}

fn report(f: &ras::bench::Figure) {
    println!(
        "{:<44} {:>10.1} ms {:>9.1} GFLOP/s",
        f.name,
        f.seconds * 1e3,
        f.gflops()
    );
}

/// `shift` from the scheduler config beside a transformer folder, else SD3's 3.0.
fn scheduler_shift(transformer: &Path) -> Result<f64> {
    let path = transformer.join("../scheduler/scheduler_config.json");
    if !path.exists() {
        return Ok(3.0);
    }
    Ok(ras::sampling::SchedulerConfig::from_file(&path)?.shift)
}
