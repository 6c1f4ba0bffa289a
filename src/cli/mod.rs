//! The `ras` command line: one file per subcommand.

pub mod bench;
pub mod compare;
pub mod forward;
pub mod generate;
pub mod info;
pub mod ras_args;
pub mod sample;

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

/// Opens the adapter `filter` names (a case-insensitive substring), or the
/// best one, and picks its kernel variants (saying so when a faster one
/// failed its self-test).
pub fn open(filter: Option<&str>) -> anyhow::Result<ras::gpu::Gpu> {
    let gpu = ras::gpu::Gpu::new(&ras::gpu::GpuOptions {
        adapter: filter.map(str::to_owned),
        ..Default::default()
    })?;
    let variants = ras::kernels::variant::variants(&gpu)?;
    for (family, choice) in [("linear", &variants.linear), ("attention", &variants.attention)] {
        if let Some(warning) = &choice.warning {
            eprintln!("warning: {family} kernel: {warning}");
        }
    }
    Ok(gpu)
}
