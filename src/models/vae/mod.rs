//! The VAE decoder of SD3 (and SDXL-style VAEs).

pub mod config;
pub mod decoder;
mod tiled;

pub use config::VaeConfig;
pub use decoder::{to_rgb8, VaeDecoder};
