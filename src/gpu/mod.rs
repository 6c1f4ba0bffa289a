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

    /// What the backend's allocator has handed out for this device:
    /// everything [`memory`](Self::memory) counts plus what the pool never
    /// sees (upload, read-back and kernel-parameter buffers, wgpu's own). A
    /// freed buffer counts until wgpu reclaims it after its last
    /// submission, so [`sync`](Self::sync) first for a settled figure.
    /// `None` where the backend keeps no report (only Vulkan and D3D12 do).
    pub fn allocations(&self) -> Option<Allocations> {
        self.inner
            .device
            .generate_allocator_report()
            .map(|r| Allocations {
                count: r.allocations.len(),
                bytes: r.total_allocated_bytes,
            })
    }
}

/// The backend allocator's figures (see [`Gpu::allocations`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocations {
    /// Live allocations: one per buffer the allocator placed.
    pub count: usize,
    /// Their bytes, each with the alignment padding in front of it. Where a
    /// buffer lands, and so its padding, depends on when wgpu reclaimed
    /// the buffers of finished submits and on the allocator's free-list
    /// order (a hash set), so the same buffers can total a few bytes more
    /// or less from one run to the next; `count` is exact.
    pub bytes: u64,
}
