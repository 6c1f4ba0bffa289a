//! Stable Diffusion 3's MMDiT transformer.

pub mod block;
pub mod config;
pub mod embed;
pub mod files;
pub mod model;
pub mod tokens;

pub use config::Sd3Config;
pub use files::forward_files;
pub use model::{Sd3Inputs, Sd3Transformer};
pub use tokens::TokenPlan;
