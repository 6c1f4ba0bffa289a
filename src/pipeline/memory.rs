//! Admission: before any weight is loaded, an estimate of the GPU memory a
//! request needs at its peak, stage by stage (text encoders, transformer
//! with its activations and RAS K/V cache, VAE decode), checked against the
//! user's budget (`--max-gpu-memory`) and the device's memory where the
//! backend reports it. A request that cannot fit is refused with what to
//! change, instead of failing (or swapping the whole system) mid-run.
//!
//! The estimate is an upper bound of the right order, not an exact figure:
//! weights by their files' sizes, activations by a count of the live
//! full-width tensors of a block.

use std::path::Path;

use crate::error::{Error, Result};
use crate::models::{Family, Precision};

use super::generate::Pipeline;
use super::request::GenerateRequest;

/// Live tensors of hidden width per token row in a transformer block (the
/// residual stream, norm output, Q, K, V, attention output, MLP hidden of
/// 4 widths, the model output), with room for the pool's cached buffers.
const ACTIVATION_WIDTHS: u64 = 16;
/// A VAE decode holds up to six activations of its largest shape (a
/// resnet's input, two norm and conv temporaries, its output, the
/// upsampler's, and the pool's cached copies of those shapes): measured
/// 47 MiB for the demo model's 8 MiB largest activation.
const VAE_ACTIVATIONS: u64 = 6;

/// Estimated bytes by stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryEstimate {
    pub text_weights: u64,
    pub transformer_weights: u64,
    pub activations: u64,
    pub kv_cache: u64,
    pub vae_weights: u64,
    pub vae_activations: u64,
    /// The most held at once: one stage's, or all weights with
    /// `keep_loaded`.
    pub peak: u64,
}

impl MemoryEstimate {
    fn stages(&self) -> [u64; 3] {
        [
            self.text_weights,
            self.transformer_weights + self.activations + self.kv_cache,
            self.vae_weights + self.vae_activations,
        ]
    }
}

/// Bytes of the `.safetensors` files in a component folder.
fn weight_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

impl Pipeline {
    /// The estimated peak GPU memory of `req` (see the module notes).
    pub fn estimate_memory(&self, req: &GenerateRequest) -> MemoryEstimate {
        let dir = &self.dir;
        let mut text = vec!["text_encoder", "text_encoder_2"];
        if dir.family == Family::Sd3 && dir.has_t5 && !self.options.no_t5 {
            text.push("text_encoder_3");
        }
        let info = &self.transformer_info;
        let rows = (req.num_images
            * if crate::sampling::guided(req.guidance) {
                2
            } else {
                1
            }) as u64;
        let text_rows = match dir.family {
            // CLIP's context (77 at most) beside T5's (zeros without T5).
            Family::Sd3 => crate::text::CLIP_MAX_LEN + req.max_sequence_length,
            Family::Lumina => req.max_sequence_length,
        } as u64;
        let tokens = self.image_tokens(req) as u64 + text_rows;
        let act_bytes = match req.precision {
            Precision::F32 => 4,
            Precision::F16 => 2,
        };
        let kv_cache = match !req.ras.is_dense() {
            true => info.layers as u64 * rows * tokens * 2 * info.hidden as u64 * act_bytes,
            false => 0,
        };
        let f = self.vae_config.scale_factor();
        let (h, w) = (req.height / f, req.width / f);
        let largest = self.vae_config.largest_activation_bytes(h, w);
        let mut e = MemoryEstimate {
            text_weights: text.iter().map(|c| weight_bytes(&dir.component(c))).sum(),
            transformer_weights: weight_bytes(&dir.component("transformer")),
            activations: rows * tokens * ACTIVATION_WIDTHS * info.hidden as u64 * act_bytes,
            kv_cache,
            vae_weights: weight_bytes(&dir.component("vae")),
            // A decode larger than one binding is tiled to fit one.
            vae_activations: VAE_ACTIVATIONS * largest.min(self.gpu().max_binding_bytes()),
            peak: 0,
        };
        e.peak = match self.options.keep_loaded {
            true => {
                e.text_weights
                    + e.transformer_weights
                    + e.vae_weights
                    + (e.activations + e.kv_cache).max(e.vae_activations)
            }
            false => e.stages().into_iter().max().unwrap_or(0),
        };
        e
    }

    /// Refuses `req` when its estimate exceeds the memory budget, or
    /// without a budget the device's memory (a budget overrides the
    /// device's figure: drivers of shared-memory GPUs may report less than
    /// they can use).
    pub(crate) fn admit(&self, req: &GenerateRequest) -> Result<()> {
        let gpu = self.gpu();
        let limit = match (gpu.memory_budget(), gpu.device_memory()) {
            (Some(b), _) => Some((b, "the GPU memory budget (--max-gpu-memory)")),
            (None, Some(d)) => Some((d, "the device's memory (give --max-gpu-memory to set a budget)")),
            (None, None) => None,
        };
        let Some((limit, what)) = limit else {
            return Ok(());
        };
        let e = self.estimate_memory(req);
        if e.peak <= limit {
            return Ok(());
        }
        let mut hints = vec![format!(
            "a smaller size than {}x{} or fewer images",
            req.width, req.height
        )];
        if req.precision == Precision::F32 {
            hints.push("--precision f16 (halves activations and the K/V cache)".into());
        }
        if self.dir.has_t5 && !self.options.no_t5 {
            hints.push("--no-t5 (T5 is the largest text encoder)".into());
        }
        if self.options.keep_loaded {
            hints.push("not keeping every component loaded".into());
        }
        Err(Error::MemoryBudget {
            needed_mib: mib(e.peak),
            limit_mib: limit >> 20,
            what: what.into(),
            breakdown: format!(
                "text encoders {} MiB, transformer {} MiB + activations {} MiB + K/V cache {} MiB, \
                 VAE {} MiB + decode {} MiB",
                mib(e.text_weights),
                mib(e.transformer_weights),
                mib(e.activations),
                mib(e.kv_cache),
                mib(e.vae_weights),
                mib(e.vae_activations)
            ),
            hint: hints.join(", "),
        })
    }
}
