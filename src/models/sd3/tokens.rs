//! Which image tokens one transformer call computes, and where their rows
//! live: the dense call computes all of them; a RAS step only the active
//! ones, with keys and values of the others taken from the per-layer cache.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::rows::Indices;

/// Row routing for one forward. Keys and values of layer `i` live in
/// `[batch · (N + L), D]` buffers, image rows first then text, per batch
/// row; queries (and attention outputs) in `[batch · (n_q + L), D]`.
pub struct TokenPlan {
    pub batch: usize,
    /// Image tokens of the full latent.
    pub n_img: usize,
    /// Image tokens computed by this call.
    pub n_q: usize,
    pub n_txt: usize,
    /// Rows of the full `[batch · N]` token tensor to compute (`None` = all).
    pub gather: Option<Indices>,
    /// K/V buffer rows of the computed image tokens and of the text tokens.
    pub kv_img: Indices,
    pub kv_txt: Indices,
    /// Query buffer rows of the computed image tokens and of the text tokens.
    pub q_img: Indices,
    pub q_txt: Indices,
}

impl TokenPlan {
    /// Every image token computed.
    pub fn dense(gpu: &Gpu, batch: usize, n_img: usize, n_txt: usize) -> Result<TokenPlan> {
        let all: Vec<u32> = (0..n_img as u32).collect();
        Self::build(gpu, batch, n_img, n_txt, &vec![all; batch], false)
    }

    /// Only `active[r]` (ascending token indices, the same count for every
    /// row) of batch row `r` computed.
    pub fn sparse(gpu: &Gpu, n_img: usize, n_txt: usize, active: &[Vec<u32>]) -> Result<TokenPlan> {
        Self::build(gpu, active.len(), n_img, n_txt, active, true)
    }

    fn build(
        gpu: &Gpu,
        batch: usize,
        n: usize,
        l: usize,
        active: &[Vec<u32>],
        sparse: bool,
    ) -> Result<TokenPlan> {
        let n_q = active.first().map_or(0, Vec::len);
        if active
            .iter()
            .any(|a| a.len() != n_q || a.iter().any(|&t| t as usize >= n))
        {
            return Err(Error::Invalid(format!(
                "active token lists must have equal lengths and indices below {n}"
            )));
        }
        let (kv, q) = (n + l, n_q + l);
        let rows = |f: &dyn Fn(usize, usize) -> usize, count: usize| -> Vec<u32> {
            (0..batch)
                .flat_map(|b| (0..count).map(move |j| (b, j)))
                .map(|(b, j)| f(b, j) as u32)
                .collect()
        };
        let gather: Vec<u32> = (0..batch)
            .flat_map(|b| active[b].iter().map(move |&t| (b * n) as u32 + t))
            .collect();
        let kv_img: Vec<u32> = (0..batch)
            .flat_map(|b| active[b].iter().map(move |&t| (b * kv) as u32 + t))
            .collect();
        Ok(TokenPlan {
            batch,
            n_img: n,
            n_q,
            n_txt: l,
            gather: if sparse {
                Some(Indices::upload(gpu, &gather)?)
            } else {
                None
            },
            kv_img: Indices::upload(gpu, &kv_img)?,
            kv_txt: Indices::upload(gpu, &rows(&|b, j| b * kv + n + j, l))?,
            q_img: Indices::upload(gpu, &rows(&|b, j| b * q + j, n_q))?,
            q_txt: Indices::upload(gpu, &rows(&|b, j| b * q + n_q + j, l))?,
        })
    }
}
