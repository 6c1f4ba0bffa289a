//! Sampling math on the host: the flow-matching Euler schedule. The
//! per-element update (CFG combine, RAS velocity merge, Euler step) runs on
//! the GPU (`kernels::sampler`).

pub mod scheduler;

pub mod noise;

pub use noise::gaussian_noise;
pub use scheduler::{FlowMatchEuler, SchedulerConfig};

/// Whether a guidance scale turns classifier-free guidance on (diffusers'
/// `do_classifier_free_guidance`: scales ≤ 1 run the prompt alone).
pub fn guided(guidance: f32) -> bool {
    guidance > 1.0
}
