//! The `ras` command line: one file per subcommand.

pub mod bench;
pub mod compare;
pub mod forward;
pub mod generate;
pub mod info;
pub mod ras_args;
pub mod sample;

/// Opens the adapter `filter` names (a case-insensitive substring), or the best one.
pub fn open(filter: Option<&str>) -> anyhow::Result<ras::gpu::Gpu> {
    Ok(ras::gpu::Gpu::new(&ras::gpu::GpuOptions {
        adapter: filter.map(str::to_owned),
        ..Default::default()
    })?)
}
