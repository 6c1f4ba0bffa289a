//! Adapter discovery and ranking.
//!
//! Default choice: the best hardware adapter (discrete, then integrated,
//! virtual, software), preferring the native compute APIs (Vulkan, Metal,
//! DX12) over GL. A name substring (`--adapter`, `RAS_ADAPTER`, or wgpu's own
//! `WGPU_ADAPTER_NAME`) and `WGPU_BACKEND` narrow the candidates.

use crate::error::{AdapterFilter, Error, Result};

/// What `ras info` shows for one adapter.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub compute: bool,
    pub features: Vec<&'static str>,
    pub max_storage_binding: u64,
    pub max_buffer: u64,
    pub max_workgroup_storage: u32,
    pub max_invocations: u32,
    pub subgroup_size: (u32, u32),
}

pub(crate) fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

pub(crate) fn all_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    pollster::block_on(instance.enumerate_adapters(backends))
}

fn has_compute(adapter: &wgpu::Adapter) -> bool {
    adapter
        .get_downlevel_capabilities()
        .flags
        .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
}

/// Higher is better.
fn rank(info: &wgpu::AdapterInfo) -> u32 {
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 40,
        wgpu::DeviceType::IntegratedGpu => 30,
        wgpu::DeviceType::VirtualGpu => 20,
        wgpu::DeviceType::Cpu => 10,
        wgpu::DeviceType::Other => 0,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 2,
        _ => 0,
    };
    device + backend
}

/// The filter from the argument, else `RAS_ADAPTER`, else `WGPU_ADAPTER_NAME`.
pub(crate) fn effective_filter(explicit: Option<&str>) -> Option<String> {
    explicit
        .map(str::to_owned)
        .or_else(|| std::env::var("RAS_ADAPTER").ok())
        .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
        .filter(|s| !s.is_empty())
}

/// Every adapter, best first (the order `ras info` lists them in).
fn ranked_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let mut adapters = all_adapters(instance);
    adapters.sort_by_key(|a| std::cmp::Reverse(rank(&a.get_info())));
    adapters
}

/// The best adapter with compute whose name contains `filter`, or with
/// `index`, the one at that position in [`list_adapters`]'s order (two
/// cards of one model share a name).
pub(crate) fn select(
    instance: &wgpu::Instance,
    filter: Option<&str>,
    index: Option<usize>,
) -> Result<wgpu::Adapter> {
    if let Some(i) = index {
        let adapters = ranked_adapters(instance);
        let count = adapters.len();
        return adapters
            .into_iter()
            .nth(i)
            .filter(has_compute)
            .ok_or_else(|| Error::NoAdapter {
                filter: AdapterFilter(Some(format!("#{i}"))),
                hint: format!("there are {count} adapters (`ras info` lists them, numbered from 0) and #{i} must have compute shaders"),
            });
    }
    let filter = effective_filter(filter);
    let adapters = all_adapters(instance);
    let names: Vec<String> = adapters
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?})", i.name, i.backend)
        })
        .collect();
    let wanted = filter.as_deref().map(str::to_lowercase);
    adapters
        .into_iter()
        .filter(has_compute)
        .filter(|a| match &wanted {
            Some(w) => a.get_info().name.to_lowercase().contains(w.as_str()),
            None => true,
        })
        .max_by_key(|a| rank(&a.get_info()))
        .ok_or_else(|| Error::NoAdapter {
            filter: AdapterFilter(filter.clone()),
            hint: if names.is_empty() {
                "no Vulkan, Metal or DX12 driver was found. On Linux without a GPU install \
                 the software driver: `apt-get install -y mesa-vulkan-drivers`"
                    .into()
            } else {
                format!(
                    "available adapters: {}. Pick one with --adapter <substring> or RAS_ADAPTER",
                    names.join(", ")
                )
            },
        })
}

pub(crate) fn feature_names(features: wgpu::Features) -> Vec<&'static str> {
    [
        (wgpu::Features::SHADER_F16, "shader-f16"),
        (wgpu::Features::SUBGROUP, "subgroup"),
        (wgpu::Features::TIMESTAMP_QUERY, "timestamp-query"),
        (
            wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
            "cooperative-matrix",
        ),
    ]
    .into_iter()
    .filter(|(f, _)| features.contains(*f))
    .map(|(_, n)| n)
    .collect()
}

pub(crate) fn summarize(adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info).trim().to_owned(),
        compute: has_compute(adapter),
        features: feature_names(adapter.features()),
        max_storage_binding: limits.max_storage_buffer_binding_size,
        max_buffer: limits.max_buffer_size,
        max_workgroup_storage: limits.max_compute_workgroup_storage_size,
        max_invocations: limits.max_compute_invocations_per_workgroup,
        subgroup_size: (info.subgroup_min_size, info.subgroup_max_size),
    }
}

/// Every adapter wgpu can see (respecting `WGPU_BACKEND`), best first.
pub fn list_adapters() -> Vec<AdapterSummary> {
    ranked_adapters(&instance()).iter().map(summarize).collect()
}

/// The size of the device's largest device-local memory heap, where the
/// backend tells (Vulkan; wgpu has no portable query). On an integrated GPU
/// or a software rasteriser that heap is system memory shared with the host.
pub(crate) fn device_memory(device: &wgpu::Device) -> Option<u64> {
    // SAFETY: the raw Vulkan handles are only used for a read-only query of
    // the physical device's memory heaps, while `device` keeps them alive.
    let hal = unsafe { device.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let instance = hal.shared_instance().raw_instance();
    let props = unsafe { instance.get_physical_device_memory_properties(hal.raw_physical_device()) };
    // VK_MEMORY_HEAP_DEVICE_LOCAL_BIT; named by value to avoid a direct ash dependency.
    const DEVICE_LOCAL: u32 = 1;
    props.memory_heaps[..props.memory_heap_count as usize]
        .iter()
        .filter(|h| h.flags.as_raw() & DEVICE_LOCAL != 0)
        .map(|h| h.size)
        .max()
}
