//! The GPU runtime: the only module that talks to wgpu.

mod adapter;
mod budget;
mod context;
mod pipelines;
mod pool;
mod profiler;
mod readback;
mod recorder;
mod shaders;
mod submit;
mod tensor;
mod texture;
mod variant;

pub use adapter::{list_adapters, AdapterSummary};
pub use budget::{SubmitBudget, DEFAULT_MAX_SUBMIT_MS};
pub use context::{Capabilities, Gpu, GpuOptions};
pub use pipelines::Kernel;
pub use pool::MemoryStats;
pub use profiler::{Cost, Counters, Profile, Record, ScopeGuard, StepCount, Timer};
pub use shaders::{all_sources, FRAGMENTS, STORAGE_TYPES, TEMPLATES};
pub use tensor::{Arg, DType, PendingRead, Tensor};
pub use variant::{Choice, Variant, Variants};

impl Gpu {
    pub fn memory(&self) -> MemoryStats {
        self.inner.pool.snapshot()
    }

    /// Starts a new peak measurement from what is held now.
    pub fn reset_peak(&self) {
        self.inner.pool.reset_peak()
    }

    /// Frees cached activation buffers.
    pub fn trim(&self) {
        self.inner.pool.trim()
    }

    /// Bytes of device memory the backend's allocator has handed out for
    /// this device: everything [`memory`](Self::memory) counts plus what
    /// the pool never sees (upload, read-back and kernel-parameter buffers,
    /// wgpu's own). A freed buffer counts until wgpu reclaims it after its
    /// last submission, so [`sync`](Self::sync) first for a settled figure.
    /// `None` where the backend keeps no report (only Vulkan and D3D12 do).
    pub fn allocated_bytes(&self) -> Option<u64> {
        self.inner
            .device
            .generate_allocator_report()
            .map(|r| r.total_allocated_bytes)
    }
}
