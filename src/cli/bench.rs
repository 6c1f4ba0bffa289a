//! `ras bench`: kernel, transformer and RAS timings on the selected adapter.

use crate::cli::ras_args::PrecisionArg;
use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use ras::bench::profile::render;
use ras::bench::{ras as ras_bench, sd3, Figure};
use ras::models::Family;
use ras::pipeline::defaults;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BenchModel {
    /// Stable Diffusion 3 medium.
    Sd3,
    /// Lumina-Next-SFT (2B).
    Lumina,
}

impl BenchModel {
    fn family(self) -> Family {
        match self {
            BenchModel::Sd3 => Family::Sd3,
            BenchModel::Lumina => Family::Lumina,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
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
    /// Dense vs RAS sampling loops on the same transformer, in one run:
    /// prints each time, the speed-up (dense time / RAS time) and the ideal
    /// speed-up from image token-steps. SD3: SD3-medium widths, 333 text
    /// tokens, the original's SD3 schedule; Lumina: Lumina-Next-SFT widths
    /// (2304 wide, 32 heads / 8 KV heads of 72), a 64-token caption, the
    /// original's Lumina schedule (dynamic). Synthetic f16 weights.
    Ras {
        /// Which model's widths and RAS schedule.
        #[arg(long, value_enum, default_value = "sd3")]
        model: BenchModel,
        /// Transformer blocks (24 in SD3-medium and Lumina-Next-SFT).
        #[arg(long, default_value_t = 2)]
        layers: usize,
        /// Image side in pixels (1024 = 4096 image tokens).
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Default: the model's (SD3 28, Lumina 30).
        #[arg(long)]
        steps: Option<usize>,
        /// Run without classifier-free guidance (batch 1 instead of 2).
        #[arg(long = "no-cfg")]
        no_cfg: bool,
        /// Sample ratios to compare against dense.
        #[arg(long, value_delimiter = ',', default_value = "0.5,0.25,0.125")]
        ratios: Vec<f64>,
        /// Run each loop a second time under the kernel profiler and print
        /// where the GPU time of a dense and of a RAS step goes, and the
        /// RAS-step overhead (its GPU time beyond its token share of a
        /// dense step's).
        #[arg(long)]
        profile: bool,
        /// f16: the K/V cache and the activations in f16 (needs
        /// shader-f16).
        #[arg(long, value_enum, default_value = "f32")]
        precision: PrecisionArg,
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
        /// Run one more forward under the kernel profiler and print time,
        /// share, GFLOP/s, GB/s and launches by kernel family and by layer
        /// kind (GPU timestamps where the adapter has them).
        #[arg(long)]
        profile: bool,
        /// f16: activations in f16 (needs shader-f16).
        #[arg(long, value_enum, default_value = "f32")]
        precision: PrecisionArg,
    },
    /// Load test of `ras serve`: --clients concurrent clients send
    /// txt2img requests (demo-grammar prompts, seeds 0, 1, …) back to back
    /// until --requests are answered; prints latency p50/p95/max, images/s
    /// and the mean batch size. Without --url it starts an in-process
    /// server per --max-batch value, one after the other, so batching's
    /// effect is measured in one run.
    #[cfg(feature = "serve")]
    Serve(Box<super::bench_serve::BenchServeArgs>),
}

pub fn run(device: &super::DeviceArgs, what: BenchWhat) -> Result<()> {
    #[cfg(feature = "serve")]
    if let BenchWhat::Serve(args) = what {
        return super::bench_serve::run(device, &args);
    }
    let gpu = &super::open(device)?;
    println!("adapter: {} ({})", gpu.adapter_name(), gpu.backend());
    let variants = ras::kernels::variant::variants(gpu)?;
    println!(
        "kernels: linear {} ({}), attention {}",
        variants.linear.variant.name(),
        variants.linear.reason,
        variants.attention.variant.name()
    );
    match what {
        BenchWhat::Kernels { reps, tokens } => {
            let shapes = [(1024, 1024, 1024), (tokens, 1536, 1536), (tokens, 6144, 1536)];
            for (m, n, k) in shapes {
                report(&ras::bench::bench_linear(gpu, m, n, k, reps)?);
            }
            // 1024² SD3: 4096 image queries against 4096 + 333 keys.
            report(&ras::bench::bench_attention(
                gpu,
                tokens,
                tokens + 333,
                24,
                64,
                reps,
            )?);
        }
        BenchWhat::Ras {
            model,
            layers,
            size,
            steps,
            no_cfg,
            ratios,
            profile,
            precision,
        } => {
            let family = model.family();
            let steps = steps.unwrap_or(defaults(family).steps);
            let cfg = ras_bench::RasBenchConfig {
                family,
                layers,
                size,
                steps,
                cfg: !no_cfg,
                ratios,
                profile,
                precision: precision.precision(),
            };
            println!(
                "{}: {layers} layers, {size}px ({} image + {} text tokens), {steps} steps, cfg {}, precision {}",
                family.name(),
                (size / 16) * (size / 16),
                cfg.text_tokens(),
                !no_cfg,
                cfg.precision.name()
            );
            let mut dense: Option<ras_bench::RunFigure> = None;
            ras_bench::bench_ras(gpu, &cfg, |f| {
                let d = dense.get_or_insert_with(|| f.clone());
                println!(
                    "ratio {:<6} ramp {:<4} {:>9.2} s  speed-up {:>5.2}x  ideal {:>5.2}x  K/V cache {:>7.1} MiB",
                    f.ratio,
                    f.skip_num_step,
                    f.seconds,
                    d.seconds / f.seconds,
                    d.token_steps as f64 / f.token_steps as f64,
                    f.kv_cache_bytes as f64 / (1 << 20) as f64
                );
                if let Some(p) = &f.profile {
                    print!("{}", render(p));
                }
                if let Some((overhead, ras, dense)) = f.ras_step_overhead(d) {
                    println!(
                        "RAS step: GPU {:.3} ms, ideal {:.3} ms ({:.1}% of the image tokens of a {:.3} ms dense step): overhead {:.3} ms = {:.1}% of a dense step",
                        ras * 1e3,
                        dense * f.ras_step_fraction * 1e3,
                        100.0 * f.ras_step_fraction,
                        dense * 1e3,
                        overhead * 1e3,
                        100.0 * overhead / dense
                    );
                }
            })?;
        }
        #[cfg(feature = "serve")]
        BenchWhat::Serve(_) => unreachable!("handled above: it opens no device here"),
        BenchWhat::Sd3 {
            layers,
            size,
            batch,
            reps,
            profile,
            precision,
        } => {
            let (figure, profile) =
                sd3::bench_sd3(gpu, layers, size, batch, reps, profile, precision.precision())?;
            report(&figure);
            if let Some(p) = profile {
                print!("{}", render(&p));
            }
        }
    }
    Ok(())
}

fn report(f: &Figure) {
    println!(
        "{:<44} {:>10.1} ms {:>9.1} GFLOP/s",
        f.name,
        f.seconds * 1e3,
        f.gflops()
    );
}
