//! Sampling math on the host: the flow-matching Euler schedule. The
//! per-element update (CFG combine, RAS velocity merge, Euler step) runs on
//! the GPU (`kernels::sampler`).

pub mod scheduler;

pub use scheduler::FlowMatchEuler;
