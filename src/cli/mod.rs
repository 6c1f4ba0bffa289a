//! The `ras` command line: one file per subcommand.

pub mod bench;
pub mod compare;
pub mod forward;
pub mod generate;
pub mod info;
pub mod ras_args;
pub mod sample;

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
