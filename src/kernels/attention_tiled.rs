//! The workgroup-memory tiled attention kernel (`shaders/attention_tiled.wgsl`)
//! for hardware GPUs: same contract and parameters as the portable one
//! (`attention.rs` builds both and launches the chosen variant), for calls
//! without a causal mask or score bias.

use super::attention::HeadsView;
use super::storage_type;
use crate::error::Result;
use crate::gpu::{Gpu, Kernel};

/// Queries per workgroup (one per invocation).
pub(crate) const WG: usize = 64;

const OP: &str = "attention";

/// Whether a call can take this kernel.
pub(crate) fn applies(causal: bool, score_bias: bool) -> bool {
    !causal && !score_bias
}

/// The kernel for these views: private arrays sized for head dims ≤ 64
/// (SD3) or ≤ 128 (Lumina's 72), so small heads do not pay for big ones.
pub(crate) fn kernel(gpu: &Gpu, q: &HeadsView, k: &HeadsView, key_biased: bool) -> Result<Kernel> {
    let max_d = if q.head_dim <= 64 { 64 } else { 128 };
    Ok(Kernel::new("attention_tiled")
        .template("MAX_D_PLACEHOLDER", max_d)
        .template("Q_T", storage_type(gpu, OP, q.tensor)?)
        .template("KV_T", storage_type(gpu, OP, k.tensor)?)
        .template("O_T", storage_type(gpu, OP, q.tensor)?)
        .constant("D", q.head_dim as u32)
        .constant("WG", WG as u32)
        .constant("KEY_BIASED", key_biased as u32))
}
