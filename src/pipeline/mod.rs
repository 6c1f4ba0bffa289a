//! End-to-end pipelines over the models.

pub mod defaults;
pub mod encode;
pub mod files;
pub mod generate;
pub mod job;
pub mod lumina_encode;
mod memory;
pub mod model_dir;
pub mod png;
mod preview;
pub mod sample;
mod text;

pub use defaults::{defaults, ras_defaults, Defaults};
pub use encode::{PromptEmbeds, TextEncoders};
pub use files::{forward_files, read_latents_init, sample_files, SampleFiles};
pub use generate::{Event, GenerateRequest, Generation, Image, Pipeline, PipelineOptions};
pub use job::{Advance, Job};
pub use lumina_encode::LuminaTextEncoder;
pub use memory::MemoryEstimate;
pub use model_dir::{ModelDir, ModelIndex, DEMO_MODEL};
pub use png::{encode_png, parameters, read_parameters, write_png};
pub use sample::{sample, Denoiser, SampleOutput, SampleRequest, StepInfo};
