//! The device handle every kernel launcher works through.

use std::sync::{Arc, Mutex};

use super::adapter;
use super::pipelines::PipelineCache;
use super::pool::Pool;
use super::recorder::Recorder;
use crate::error::{Error, Result};

/// How to open a device.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Substring of the adapter name; falls back to `RAS_ADAPTER`, then `WGPU_ADAPTER_NAME`.
    pub adapter: Option<String>,
    /// Cap the storage-binding size below the adapter's (tests use this to
    /// exercise weight splitting without gigabyte tensors).
    pub max_binding_bytes: Option<u64>,
    /// Fill every buffer the pool hands out with NaN first, so a kernel that
    /// leaves an element unwritten is caught by the tests.
    pub poison: bool,
}

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
    /// Held by a flush from taking the recorded work to submitting it (see
    /// `Gpu::flush`).
    pub flushing: Mutex<()>,
    /// Set for good once the device is lost.
    pub lost: Arc<Mutex<Option<String>>>,
    /// An error raised outside any error scope, reported once.
    pub uncaptured: Arc<Mutex<Option<String>>>,
    /// Kernel variants, chosen on first use (see `kernels::variant`).
    pub variants: Mutex<Option<Arc<super::variant::Variants>>>,
}

impl Gpu {
    /// Picks an adapter (see [`adapter`](super::adapter)) and opens a device
    /// with the adapter's real limits and every optional feature the
    /// kernels can use.
    pub fn new(options: &GpuOptions) -> Result<Gpu> {
        let instance = adapter::instance();
        let adapter = adapter::select(&instance, options.adapter.as_deref())?;
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
        let desc = wgpu::DeviceDescriptor {
            label: Some("ras"),
            required_features: adapter.features() & wanted,
            required_limits: adapter.limits(),
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
        let caps = Capabilities {
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            cooperative_matrix: features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
        };
        let alignment = limits.min_uniform_buffer_offset_alignment;
        Gpu {
            inner: Arc::new(GpuInner {
                pool: Arc::new(Pool::new(options.poison)),
                recorder: Mutex::new(Recorder::new(alignment)),
                flushing: Mutex::new(()),
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
