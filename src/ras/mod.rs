//! Region-Adaptive Sampling (arXiv 2502.10389; `../shared/docs/ras-spec.md`):
//! the host-side planner. [`Schedule`] decides what each step is,
//! [`Planner`] picks the tokens of each RAS step from GPU-computed scores.

pub mod config;
mod overrides;
pub mod planner;
pub mod schedule;

pub use config::RasConfig;
pub use overrides::RasOverrides;
pub use planner::{Planner, Selection};
pub use schedule::{Schedule, StepKind};

#[cfg(test)]
mod tests;
