//! Lumina-Next's `LuminaNextDiT2DModel` (Next-DiT): dense and RAS-sparse.

pub mod block;
pub mod config;
pub mod embed;
pub mod model;
pub mod rope;

pub use config::LuminaConfig;
pub use model::{LuminaOptions, LuminaTransformer};
