//! The `ras` command line: one file per subcommand.

pub mod bench;
#[cfg(feature = "serve")]
pub mod bench_serve;
pub mod compare;
pub mod forward;
pub mod generate;
pub mod info;
pub mod ras_args;
pub mod sample;
#[cfg(feature = "serve")]
pub mod serve;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Set by Ctrl-C (see [`catch_interrupts`]).
fn interrupt_flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(Arc::default)
}

/// Makes Ctrl-C stop a run after its current step instead of killing the
/// process: the flag goes into the pipeline's options, the run returns
/// `Error::Cancelled`, nothing is written, and `main` exits with 130. A
/// second Ctrl-C (or one where no handler could be set) kills as usual.
pub fn catch_interrupts() -> Arc<AtomicBool> {
    let flag = interrupt_flag().clone();
    let set = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if set.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    flag
}

/// How to open the device: options of every subcommand.
#[derive(clap::Args)]
pub struct DeviceArgs {
    /// Use the adapter whose name contains this text (case-insensitive).
    /// Also read from RAS_ADAPTER; WGPU_BACKEND=vulkan|metal|dx12|gl limits the backends.
    #[arg(long, global = true, env = "RAS_ADAPTER")]
    pub adapter: Option<String>,

    /// Most estimated GPU milliseconds one submit may carry: larger kernels
    /// are split so a shared GPU (a game, a desktop) keeps responding and
    /// no driver watchdog (Windows TDR, ~2 s) fires. Default: 200 on GPUs,
    /// no bound on software adapters; `inf` = no bound.
    #[arg(long, global = true, env = "RAS_MAX_SUBMIT_MS", value_name = "MS", value_parser = positive_ms)]
    pub max_submit_ms: Option<f64>,

    /// Budget for the GPU memory ras holds, e.g. 6GiB or 512MiB: a request
    /// estimated to need more is refused before it starts (with what to
    /// change), and an allocation past it is an out-of-memory error.
    /// Without it, requests are checked against the device's memory where
    /// the driver reports it (Vulkan).
    #[arg(long, global = true, env = "RAS_MAX_GPU_MEMORY", value_name = "SIZE")]
    pub max_gpu_memory: Option<bytesize::ByteSize>,
}

impl DeviceArgs {
    /// The device options these flags ask for (also each server worker's).
    pub fn gpu_options(&self) -> ras::gpu::GpuOptions {
        ras::gpu::GpuOptions {
            adapter: self.adapter.clone(),
            max_submit_ms: self.max_submit_ms,
            max_memory_bytes: self.max_gpu_memory.map(|b| b.as_u64()),
            ..Default::default()
        }
    }
}

fn positive_ms(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(ms) if ms > 0.0 => Ok(ms),
        _ => Err(format!("'{s}' is not a positive number of milliseconds (or inf)")),
    }
}

/// Opens the adapter `--adapter` names (a case-insensitive substring), or
/// the best one, and picks its kernel variants (saying so when a faster one
/// failed its self-test).
pub fn open(device: &DeviceArgs) -> anyhow::Result<ras::gpu::Gpu> {
    let gpu = ras::gpu::Gpu::new(&device.gpu_options())?;
    let variants = ras::kernels::variant::variants(&gpu)?;
    for (family, choice) in [("linear", &variants.linear), ("attention", &variants.attention)] {
        if let Some(warning) = &choice.warning {
            eprintln!("warning: {family} kernel: {warning}");
        }
    }
    Ok(gpu)
}
