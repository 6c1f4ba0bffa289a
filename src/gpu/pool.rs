//! Activation buffer pool: buffers are recycled by exact (256-byte rounded)
//! size, so the repeated shapes of a forward pass allocate once.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Bytes of GPU memory the engine holds, as tracked by the runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryStats {
    /// Activation buffers in use by live tensors.
    pub live_bytes: u64,
    /// Highest `live_bytes + cached_bytes + weight_bytes` seen: what the
    /// engine held on the device at its peak.
    pub peak_bytes: u64,
    /// Released activation buffers kept for reuse.
    pub cached_bytes: u64,
    /// Weight tensors (not pooled).
    pub weight_bytes: u64,
}

impl MemoryStats {
    /// Bytes held on the device now.
    pub fn held(&self) -> u64 {
        self.live_bytes + self.cached_bytes + self.weight_bytes
    }
}

pub(crate) struct Pool {
    free: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    stats: Mutex<MemoryStats>,
    pub poison: bool,
}

pub(crate) const ALIGN: u64 = 256;

pub(crate) fn rounded(bytes: u64) -> u64 {
    bytes.max(4).div_ceil(ALIGN) * ALIGN
}

impl Pool {
    pub fn new(poison: bool) -> Self {
        Pool {
            free: Mutex::new(HashMap::new()),
            stats: Mutex::default(),
            poison,
        }
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, MemoryStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A cached buffer of exactly `size` bytes, if one is free.
    pub fn take(&self, size: u64) -> Option<wgpu::Buffer> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let buffer = free.get_mut(&size)?.pop()?;
        let mut s = self.stats();
        s.cached_bytes -= size;
        Some(buffer)
    }

    pub fn note_live(&self, size: u64) {
        let mut s = self.stats();
        s.live_bytes += size;
        s.peak_bytes = s.peak_bytes.max(s.held());
    }

    pub fn note_weight(&self, size: i64) {
        let mut s = self.stats();
        s.weight_bytes = s.weight_bytes.saturating_add_signed(size);
        s.peak_bytes = s.peak_bytes.max(s.held());
    }

    pub fn give_back(&self, buffer: wgpu::Buffer) {
        let size = buffer.size();
        // The free lists and `cached_bytes` change together under the free
        // lock (taken first, as `take` and `trim` do): threads share the
        // pool, and a `trim` between the two would zero the count while
        // this buffer was still to be cached, and a later `take` of it
        // would subtract past zero.
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut s = self.stats();
            s.live_bytes -= size;
            s.cached_bytes += size;
        }
        free.entry(size).or_default().push(buffer);
    }

    /// Drops every cached buffer (e.g. between pipeline stages).
    pub fn trim(&self) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        free.clear();
        self.stats().cached_bytes = 0;
    }

    /// Checks that `size` more bytes keep the engine within `budget`,
    /// dropping cached buffers first if that makes room.
    pub fn reserve(&self, size: u64, budget: Option<u64>, context: &str) -> Result<()> {
        let Some(budget) = budget else {
            return Ok(());
        };
        if self.snapshot().held() + size > budget {
            self.trim();
        }
        let held = self.snapshot().held();
        if held + size <= budget {
            return Ok(());
        }
        Err(Error::OutOfMemory {
            context: context.into(),
            message: format!(
                "{} MiB more would exceed the GPU memory budget of {} MiB ({} MiB held)",
                size.div_ceil(1 << 20),
                budget >> 20,
                held.div_ceil(1 << 20)
            ),
        })
    }

    pub fn snapshot(&self) -> MemoryStats {
        *self.stats()
    }

    pub fn reset_peak(&self) {
        let mut s = self.stats();
        s.peak_bytes = s.held();
    }
}
