//! The device handle every kernel launcher works through.

use std::sync::{Arc, Mutex};

use super::adapter;
use super::budget::SubmitBudget;
use super::pipelines::PipelineCache;
use super::pool::Pool;
use super::recorder::Recorder;
use crate::error::{Error, Result};

/// How to open a device.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Substring of the adapter name; falls back to `RAS_ADAPTER`, then `WGPU_ADAPTER_NAME`.
    pub adapter: Option<String>,
    /// The adapter at this position in [`list_adapters`](super::list_adapters)
    /// (best first), instead of `adapter`: a server opens one device per card.
    pub adapter_index: Option<usize>,
    /// Cap the storage-binding size below the adapter's (tests use this to
    /// exercise weight splitting without gigabyte tensors).
    pub max_binding_bytes: Option<u64>,
    /// Fill every buffer the pool hands out with NaN first, so a kernel that
    /// leaves an element unwritten is caught by the tests.
    pub poison: bool,
    /// Estimated GPU milliseconds one submit may carry (see
    /// [`SubmitBudget`]); `None` = [`DEFAULT_MAX_SUBMIT_MS`], infinity =
    /// one submit per flush however large.
    ///
    /// [`SubmitBudget`]: super::SubmitBudget
    /// [`DEFAULT_MAX_SUBMIT_MS`]: super::DEFAULT_MAX_SUBMIT_MS
    pub max_submit_ms: Option<f64>,
    /// A budget for the GPU memory the engine holds (weights, activations,
    /// caches): a request whose estimate exceeds it is refused before any
    /// work, and an allocation past it is an `OutOfMemory` error.
    pub max_memory_bytes: Option<u64>,
    /// Open the device with low limits (storage bindings 32 MiB, buffers
    /// 256 MiB, workgroup memory 16 KiB) and without shader-f16 and
    /// subgroups, to prove that every path tiles or falls back. Also set by
    /// `RAS_LOW_LIMITS=1`.
    pub low_limits: bool,
}

/// The limits of [`GpuOptions::low_limits`].
const LOW_BINDING: u64 = 32 << 20;
const LOW_BUFFER: u64 = 256 << 20;
const LOW_WORKGROUP_MEMORY: u32 = 16 << 10;

/// Optional capabilities the kernels may use.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    pub shader_f16: bool,
    pub subgroups: bool,
    pub timestamps: bool,
    pub cooperative_matrix: bool,
}

/// A wgpu device plus the engine's per-device state (pipelines, buffer pool,
/// pending commands). Cheap to clone; all clones share the state.
#[derive(Clone)]
pub struct Gpu {
    pub(crate) inner: Arc<GpuInner>,
}

pub(crate) struct GpuInner {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub max_binding: u64,
    pub caps: Capabilities,
    pub pipelines: Mutex<PipelineCache>,
    pub pool: Arc<Pool>,
    pub recorder: Mutex<Recorder>,
    /// Set for good once the device is lost.
    pub lost: Arc<Mutex<Option<String>>>,
    /// An error raised outside any error scope, reported once.
    pub uncaptured: Arc<Mutex<Option<String>>>,
    /// Kernel variants, chosen on first use (see `kernels::variant`).
    pub variants: Mutex<Option<Arc<super::variant::Variants>>>,
    /// The user's memory budget (`GpuOptions::max_memory_bytes`);
    /// `u64::MAX` = none.
    pub memory_budget: std::sync::atomic::AtomicU64,
    /// The device's memory, where the backend tells.
    pub device_memory: Option<u64>,
}

impl Gpu {
    /// Picks an adapter (see [`adapter`](super::adapter)) and opens a device
    /// with the adapter's real limits and every optional feature the
    /// kernels can use.
    pub fn new(options: &GpuOptions) -> Result<Gpu> {
        let instance = adapter::instance();
        let adapter = adapter::select(&instance, options.adapter.as_deref(), options.adapter_index)?;
        let info = adapter.get_info();
        let wanted = wgpu::Features::SHADER_F16
            | wgpu::Features::SUBGROUP
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        // Cooperative matrices only where the 16×16×16 f16 → f32 shape the
        // coopmat kernels use exists.
        let coop = adapter
            .features()
            .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
            && adapter.cooperative_matrix_properties().iter().any(|p| {
                (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
                    && p.ab_type == wgpu::CooperativeScalarType::F16
                    && p.cr_type == wgpu::CooperativeScalarType::F32
            });
        let wanted = match coop {
            true => wanted | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
            false => wanted,
        };
        let low = options.low_limits || std::env::var("RAS_LOW_LIMITS").is_ok_and(|v| v == "1");
        let (wanted, limits) = match low {
            false => (wanted, adapter.limits()),
            true => {
                let l = adapter.limits();
                let limits = wgpu::Limits {
                    max_storage_buffer_binding_size: l.max_storage_buffer_binding_size.min(LOW_BINDING),
                    max_buffer_size: l.max_buffer_size.min(LOW_BUFFER),
                    max_compute_workgroup_storage_size: l
                        .max_compute_workgroup_storage_size
                        .min(LOW_WORKGROUP_MEMORY),
                    ..l
                };
                let without = wgpu::Features::SHADER_F16
                    | wgpu::Features::SUBGROUP
                    | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
                (wanted - without, limits)
            }
        };
        let desc = wgpu::DeviceDescriptor {
            label: Some("ras"),
            required_features: adapter.features() & wanted,
            required_limits: limits,
            // SAFETY: the only experimental feature asked for is cooperative
            // matrices, used by kernels that run only after passing a
            // self-test against the portable kernels on this device.
            experimental_features: match coop {
                true => unsafe { wgpu::ExperimentalFeatures::enabled() },
                false => wgpu::ExperimentalFeatures::disabled(),
            },
            ..Default::default()
        };
        let (device, queue) =
            pollster::block_on(adapter.request_device(&desc)).map_err(|e| Error::Device {
                adapter: info.name.clone(),
                message: e.to_string(),
            })?;
        Ok(Self::build(device, queue, info, options))
    }

    /// Wraps a device that a host application (a game, a creative tool)
    /// already owns. The engine uses only the features and limits the device
    /// was created with.
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        options: &GpuOptions,
    ) -> Gpu {
        Self::build(device, queue, info, options)
    }

    fn build(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo, options: &GpuOptions) -> Gpu {
        let limits = device.limits();
        let features = device.features();
        let lost = Arc::new(Mutex::new(None));
        let uncaptured = Arc::new(Mutex::new(None));
        // Errors outside our error scopes must not abort the host process:
        // remember the first one and report it (once) from the next flush.
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        let sink = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| match msg.is_empty() {
                true => format!("{reason:?}"),
                false => format!("{reason:?}: {msg}"),
            });
        });
        // Bindings are limited both by the binding limit and the buffer size.
        let mut max_binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        if let Some(cap) = options.max_binding_bytes {
            max_binding = max_binding.min(cap);
        }
        let device_memory = adapter::device_memory(&device);
        let caps = Capabilities {
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            cooperative_matrix: features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
        };
        let alignment = limits.min_uniform_buffer_offset_alignment;
        let budget = SubmitBudget::for_device(info.device_type, options.max_submit_ms);
        Gpu {
            inner: Arc::new(GpuInner {
                pool: Arc::new(Pool::new(options.poison)),
                recorder: Mutex::new(Recorder::new(alignment, budget)),
                pipelines: Mutex::new(PipelineCache::default()),
                device,
                queue,
                info,
                limits,
                max_binding,
                caps,
                lost,
                uncaptured,
                variants: Mutex::new(None),
                memory_budget: options.max_memory_bytes.unwrap_or(u64::MAX).into(),
                device_memory,
            }),
        }
    }

    pub fn adapter_name(&self) -> &str {
        &self.inner.info.name
    }

    pub fn backend(&self) -> String {
        format!("{:?}", self.inner.info.backend)
    }

    /// True for software rasterisers such as lavapipe.
    pub fn is_software(&self) -> bool {
        self.inner.info.device_type == wgpu::DeviceType::Cpu
    }

    pub fn capabilities(&self) -> Capabilities {
        self.inner.caps
    }

    /// The largest buffer a single shader binding may cover.
    pub fn max_binding_bytes(&self) -> u64 {
        self.inner.max_binding
    }

    /// The user's budget for the GPU memory the engine holds, if any.
    pub fn memory_budget(&self) -> Option<u64> {
        let b = self
            .inner
            .memory_budget
            .load(std::sync::atomic::Ordering::Relaxed);
        (b != u64::MAX).then_some(b)
    }

    /// Changes the memory budget (`None`: no budget) for allocations and
    /// requests from now on.
    pub fn set_memory_budget(&self, bytes: Option<u64>) {
        let b = bytes.unwrap_or(u64::MAX);
        self.inner
            .memory_budget
            .store(b, std::sync::atomic::Ordering::Relaxed);
    }

    /// The device's memory (its largest device-local heap), where the
    /// backend reports it (Vulkan); shared with the host on integrated GPUs.
    pub fn device_memory(&self) -> Option<u64> {
        self.inner.device_memory
    }

    /// How much estimated work one submit carries.
    pub fn submit_budget(&self) -> SubmitBudget {
        self.recorder().budget
    }

    /// Changes the submit budget (`None`: the default) for work recorded
    /// from now on, e.g. a host adapting it to its frame time.
    pub fn set_max_submit_ms(&self, max_ms: Option<f64>) {
        self.recorder().budget = SubmitBudget::for_device(self.inner.info.device_type, max_ms);
    }

    pub fn max_buffer_bytes(&self) -> u64 {
        self.inner.limits.max_buffer_size
    }

    pub(crate) fn check_lost(&self) -> Result<()> {
        // Runs pending device callbacks without waiting, so a loss (the
        // driver's, or a host's `destroy`) is seen before more work is sent.
        let _ = self.inner.device.poll(wgpu::PollType::Poll);
        if let Some(msg) = self.inner.lost.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Err(Error::DeviceLost { message: msg.clone() });
        }
        match self
            .inner
            .uncaptured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            Some(message) => Err(Error::Validation {
                context: "earlier GPU work (an error outside any error scope)".into(),
                message,
            }),
            None => Ok(()),
        }
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns a
    /// captured error into a `Result`.
    pub(crate) fn scoped<T>(&self, context: &str, f: impl FnOnce() -> T) -> Result<T> {
        let device = &self.inner.device;
        // Internal errors (a driver failing to compile a pipeline) too, or
        // they would escape to the uncaptured-error handler.
        let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        let internal = pollster::block_on(internal.pop());
        if let Some(e) = internal {
            return Err(Error::Validation {
                context: format!("{context} (internal error of the GPU driver)"),
                message: e.to_string(),
            });
        }
        if let Some(e) = oom {
            return Err(Error::OutOfMemory {
                context: context.into(),
                message: e.to_string(),
            });
        }
        if let Some(e) = validation {
            return Err(Error::Validation {
                context: context.into(),
                message: e.to_string(),
            });
        }
        Ok(value)
    }
}
