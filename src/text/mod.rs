//! The text side of the pipelines: prompt tokenizers (the text encoders follow).

pub mod gemma;
pub mod tokenizer;

pub use gemma::{GemmaTokenizer, GemmaTokens};
pub use tokenizer::{ClipTokenizer, T5Tokenizer, CLIP_MAX_LEN, T5_MAX_LEN};
