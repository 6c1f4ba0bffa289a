//! Models, one folder each. A model's `forward` reads top to bottom like the
//! paper's diagram, with the shape of each intermediate in a comment.

pub mod dit;
pub mod lumina;
pub mod sd3;
pub mod text;
pub mod vae;

pub use dit::{Conditioning, Dit, DitCall, GuidanceRule, KvCache};
