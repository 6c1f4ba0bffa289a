//! Lumina-Next's `LuminaNextDiT2DModel` (Next-DiT): dense and RAS-sparse.

pub mod block;
pub mod config;
pub mod embed;
pub mod files;
pub mod model;
pub mod rope;

pub use config::LuminaConfig;
pub use files::forward_files;
pub use model::{LuminaOptions, LuminaTransformer};
