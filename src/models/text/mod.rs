//! SD3's text encoders: CLIP-L, OpenCLIP bigG and T5-XXL.

pub mod clip;
pub mod t5;

pub use clip::{ClipOutput, ClipTextModel};
pub use t5::T5Encoder;
