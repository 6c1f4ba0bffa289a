//! Sampling math on the host: the flow-matching Euler schedule. The
//! per-element update (CFG combine, RAS velocity merge, Euler step) runs on
//! the GPU (`kernels::sampler`).

pub mod scheduler;

pub mod noise;

pub use noise::gaussian_noise;
pub use scheduler::{FlowMatchEuler, SchedulerConfig};
