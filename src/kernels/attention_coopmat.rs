//! The cooperative-matrix attention kernel (`shaders/attention_coopmat.wgsl`):
//! tensor cores for QKᵀ and PV, f16 products and f32 sums. Same contract
//! and parameters as the portable kernel (`attention` builds them and
//! launches the chosen variant) for heads of at most 64 dims without a
//! causal mask or score bias.

use super::attention::HeadsView;
use super::storage_type;
use crate::error::Result;
use crate::gpu::{Gpu, Kernel};

/// Queries per workgroup (16 per subgroup, four subgroups).
pub(crate) const QUERIES: usize = 64;
/// The widest head the kernel's tiles hold.
const MAX_D: usize = 64;

const OP: &str = "attention";

/// Whether a call can take this kernel.
pub(crate) fn applies(head_dim: usize, causal: bool, score_bias: bool) -> bool {
    head_dim <= MAX_D && !causal && !score_bias
}

/// The kernel for these views; the workgroup is four of the adapter's
/// (fixed) subgroups.
pub(crate) fn kernel(gpu: &Gpu, q: &HeadsView, k: &HeadsView, key_biased: bool) -> Result<Kernel> {
    let sg = gpu.fixed_subgroup_size().unwrap_or(32);
    Ok(Kernel::new("attention_coopmat")
        .template("Q_T", storage_type(gpu, OP, q.tensor)?)
        .template("KV_T", storage_type(gpu, OP, k.tensor)?)
        .template("O_T", storage_type(gpu, OP, q.tensor)?)
        .constant("D", q.head_dim as u32)
        .constant("WG", 4 * sg)
        .constant("KEY_BIASED", key_biased as u32))
}
