//! Text encoders: SD3's CLIP-L, OpenCLIP bigG and T5-XXL; Lumina's Gemma.

pub mod clip;
pub mod gemma;
pub mod t5;

pub use clip::{ClipOutput, ClipTextModel};
pub use gemma::GemmaEncoder;
pub use t5::T5Encoder;
