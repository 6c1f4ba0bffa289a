//! The kernel profiler behind `--profile`: while it is on, every recorded
//! kernel launch is timed on the GPU with timestamp queries (inside one
//! compute pass where the adapter allows timestamps between dispatches,
//! one pass per launch otherwise) or, on adapters without timestamps, by
//! submitting each launch alone and waiting for it (wall clock). Each
//! launch is tagged with its kernel family, the layer kind and the step
//! kind that were current when it was recorded (see [`Gpu::region`] and
//! [`Gpu::step_scope`]). Dispatch and submit counts are kept always, so
//! figures of an unprofiled run can quote them too.

use std::collections::HashMap;
use std::time::Instant;

use super::context::Gpu;
use crate::error::{Error, Result};

/// What one kernel launch does, for the profiler's rates.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    /// Floating-point operations (2 per multiply-add); 0 where a kernel's
    /// work is not counted in FLOPs.
    pub flops: f64,
    /// Bytes the launch must move at least; `None` = the sizes of the
    /// buffers it binds (right for kernels that stream their buffers once).
    pub bytes: Option<f64>,
}

impl Cost {
    pub fn new(flops: f64, bytes: f64) -> Self {
        Cost {
            flops,
            bytes: Some(bytes),
        }
    }
}

/// How the profiler measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// GPU timestamps around each launch.
    Timestamps { inside_passes: bool },
    /// Each launch submitted alone and waited for: includes the submit and
    /// wake-up latency, so short kernels read long.
    WallClock,
}

impl Timer {
    pub fn describe(self) -> &'static str {
        match self {
            Timer::Timestamps { inside_passes: true } => "GPU timestamps between dispatches",
            Timer::Timestamps { inside_passes: false } => "GPU timestamps, one compute pass per dispatch",
            Timer::WallClock => {
                "wall clock, each dispatch submitted and waited for alone (no timestamp queries)"
            }
        }
    }
}

/// One timed kernel launch.
#[derive(Debug, Clone)]
pub struct Record {
    /// The shader file (kernel family).
    pub family: &'static str,
    pub entry: &'static str,
    /// The layer kind that was current ("" outside any).
    pub region: &'static str,
    /// The step kind that was current ("" outside any).
    pub step: &'static str,
    pub seconds: f64,
    pub flops: f64,
    pub bytes: f64,
}

/// Launches and submits recorded under one step kind.
#[derive(Debug, Clone, Default)]
pub struct StepCount {
    /// Times the step kind was entered.
    pub steps: u64,
    pub dispatches: u64,
    pub submits: u64,
}

/// Everything measured between [`Gpu::start_profile`] and
/// [`Gpu::take_profile`].
#[derive(Debug, Clone)]
pub struct Profile {
    pub timer: Timer,
    pub records: Vec<Record>,
    /// By step kind ("" = outside any step).
    pub steps: HashMap<&'static str, StepCount>,
}

/// Dispatches and submits since the device was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub dispatches: u64,
    pub submits: u64,
}

/// The launch a profiled entry came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tag {
    pub family: &'static str,
    pub entry: &'static str,
    pub region: &'static str,
    pub step: &'static str,
    pub flops: f64,
    pub bytes: f64,
}

/// What the recorder keeps about the current scope and the profile being
/// taken.
#[derive(Default)]
pub(crate) struct ProfileState {
    pub region: &'static str,
    pub step: &'static str,
    pub counters: Counters,
    pub profile: Option<Profile>,
}

impl ProfileState {
    pub fn count_dispatch(&mut self) {
        self.counters.dispatches += 1;
        let step = self.step;
        if let Some(p) = &mut self.profile {
            p.steps.entry(step).or_default().dispatches += 1;
        }
    }

    pub fn count_submit(&mut self) {
        self.counters.submits += 1;
        let step = self.step;
        if let Some(p) = &mut self.profile {
            p.steps.entry(step).or_default().submits += 1;
        }
    }
}

/// Which scope a [`ScopeGuard`] restores.
enum Which {
    Region,
    Step,
}

/// Restores the previous layer or step kind when dropped.
#[must_use = "the scope ends when the guard is dropped"]
pub struct ScopeGuard {
    gpu: Gpu,
    which: Which,
    previous: &'static str,
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        let mut rec = self.gpu.recorder();
        match self.which {
            Which::Region => rec.state.region = self.previous,
            Which::Step => rec.state.step = self.previous,
        }
    }
}

impl Gpu {
    /// Tags the kernels recorded until the guard drops with a layer kind
    /// ("joint block", "vae decoder", …) for the profile.
    pub fn region(&self, name: &'static str) -> ScopeGuard {
        let previous = std::mem::replace(&mut self.recorder().state.region, name);
        ScopeGuard {
            gpu: self.clone(),
            which: Which::Region,
            previous,
        }
    }

    /// Tags the kernels and submits until the guard drops with a step kind
    /// ("dense step", "RAS step") and counts one such step.
    pub fn step_scope(&self, name: &'static str) -> ScopeGuard {
        let mut rec = self.recorder();
        if let Some(p) = &mut rec.state.profile {
            p.steps.entry(name).or_default().steps += 1;
        }
        let previous = std::mem::replace(&mut rec.state.step, name);
        drop(rec);
        ScopeGuard {
            gpu: self.clone(),
            which: Which::Step,
            previous,
        }
    }

    pub fn counters(&self) -> Counters {
        self.recorder().state.counters
    }

    /// How a profile would be measured on this device.
    pub fn profile_timer(&self) -> Timer {
        let features = self.inner.device.features();
        if !features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            return Timer::WallClock;
        }
        Timer::Timestamps {
            inside_passes: features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
        }
    }

    /// Starts timing every kernel launch (after finishing the work recorded
    /// so far, which is not timed). Profiling serialises the GPU's work and
    /// reads timestamps back at every flush: use it to see where time goes,
    /// not for end-to-end figures.
    pub fn start_profile(&self) -> Result<()> {
        self.start_profile_with(self.profile_timer())
    }

    /// [`start_profile`](Self::start_profile) with a chosen way of timing
    /// (tests exercise each); an error when the device lacks the features.
    pub fn start_profile_with(&self, timer: Timer) -> Result<()> {
        let supported = match (timer, self.profile_timer()) {
            (Timer::WallClock, _) => true,
            (Timer::Timestamps { inside_passes }, Timer::Timestamps { inside_passes: has }) => {
                has || !inside_passes
            }
            (Timer::Timestamps { .. }, Timer::WallClock) => false,
        };
        if !supported {
            return Err(Error::Invalid(format!(
                "this device cannot profile with {}; it supports {}",
                timer.describe(),
                self.profile_timer().describe()
            )));
        }
        self.sync()?;
        self.recorder().state.profile = Some(Profile {
            timer,
            records: Vec::new(),
            steps: HashMap::new(),
        });
        Ok(())
    }

    /// Finishes the recorded work and returns what was measured since
    /// [`start_profile`](Self::start_profile).
    pub fn take_profile(&self) -> Result<Profile> {
        self.sync()?;
        self.recorder()
            .state
            .profile
            .take()
            .ok_or_else(|| Error::Invalid("take_profile without start_profile".into()))
    }

    /// Runs `encode` with a fresh query set of `2 * n` timestamps, submits,
    /// and returns each launch's seconds (end − begin of pair i).
    pub(crate) fn timestamped(
        &self,
        n: usize,
        encode: impl FnOnce(&mut wgpu::CommandEncoder, &wgpu::QuerySet),
    ) -> Result<Vec<f64>> {
        let device = &self.inner.device;
        let count = (2 * n) as u32;
        let bytes = count as u64 * wgpu::QUERY_SIZE as u64;
        let staging = self.scoped("timing kernels with timestamp queries", || {
            let set = device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count,
            });
            let resolve = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let staging = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile read-back"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut encoder = device.create_command_encoder(&Default::default());
            encode(&mut encoder, &set);
            encoder.resolve_query_set(&set, 0..count, &resolve, 0);
            encoder.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
            self.submit(encoder.finish());
            staging
        })?;
        let raw = self.map_read(&staging)?;
        let ticks: &[u64] = bytemuck::cast_slice(&raw);
        let period = self.inner.queue.get_timestamp_period() as f64 * 1e-9;
        Ok(ticks
            .chunks_exact(2)
            .map(|t| t[1].saturating_sub(t[0]) as f64 * period)
            .collect())
    }

    /// Submits each of `n` launches alone (`encode(encoder, i)`) and waits
    /// for it; returns each one's wall-clock seconds.
    pub(crate) fn wall_clocked(
        &self,
        n: usize,
        mut encode: impl FnMut(&mut wgpu::CommandEncoder, usize),
    ) -> Result<Vec<f64>> {
        let device = &self.inner.device;
        let mut seconds = Vec::with_capacity(n);
        for i in 0..n {
            let start = Instant::now();
            self.scoped("running a profiled kernel", || {
                let mut encoder = device.create_command_encoder(&Default::default());
                encode(&mut encoder, i);
                self.submit(encoder.finish());
            })?;
            self.wait_idle()?;
            seconds.push(start.elapsed().as_secs_f64());
        }
        Ok(seconds)
    }
}
