//! End-to-end pipelines over the models.

pub mod files;
pub mod sample;

pub use files::{sample_files, SampleFiles};
pub use sample::{sample, SampleOutput, SampleRequest, StepInfo};
