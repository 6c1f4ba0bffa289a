use anyhow::Result;
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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info => info(cli.adapter.as_deref()),
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
