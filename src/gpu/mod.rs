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
}
