//! Stable Diffusion 3's MMDiT transformer.

pub mod block;
pub mod config;
pub mod embed;
pub mod model;
pub mod projections;
pub mod tokens;

pub use config::Sd3Config;
pub use model::{Sd3Inputs, Sd3Transformer};
pub use tokens::TokenPlan;
