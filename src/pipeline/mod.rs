//! End-to-end pipelines over the models.

pub mod defaults;
pub mod encode;
pub mod files;
pub mod generate;
pub mod job;
pub mod lumina_encode;
mod memory;
mod model_config;
pub mod model_dir;
mod model_info;
pub mod png;
mod preview;
mod request;
pub mod sample;
mod text;

pub use defaults::{defaults, ras_defaults, Defaults};
pub use encode::{PromptEmbeds, TextEncoders};
pub use files::{forward_files, read_latents_init, sample_files, SampleFiles};
pub use generate::{Event, Generation, Image, Pipeline, PipelineOptions};
pub use job::{Advance, Job};
pub use lumina_encode::LuminaTextEncoder;
pub use memory::MemoryEstimate;
pub use model_config::{ModelConfig, RAS_DEFAULTS_FILE};
pub use model_dir::{ModelDir, ModelIndex, DEMO_MODEL};
pub use model_info::TransformerInfo;
pub use png::{encode_png, parameters, read_parameters, write_png};
pub use request::{BatchPrompt, GenerateRequest};
pub use sample::{sample, Denoiser, SampleOutput, SampleRequest, StepInfo};
