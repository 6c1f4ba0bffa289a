//! `ras`: Diffusion Transformers on any GPU through WebGPU, made faster with
//! Region-Adaptive Sampling (arXiv 2502.10389).
//!
//! Layers, bottom up: [`gpu`] (device, tensors, buffer pool, pipeline cache,
//! command recording — the only module that touches wgpu), [`kernels`]
//! (host launchers of the WGSL kernels in `shaders/`), [`reference`] (CPU
//! oracles for every kernel).

pub mod bench;
mod config;
pub mod error;
pub mod eval;
pub mod gpu;
pub mod kernels;
pub mod models;
pub mod nn;
pub mod output;
pub mod pipeline;
pub mod ras;
pub mod reference;
pub mod sampling;
#[cfg(feature = "serve")]
pub mod serve;
pub mod text;
pub mod weights;

pub use error::{Error, Result};
