//! What the denoising loop and the RAS engine need from a Diffusion
//! Transformer, and nothing more: patch geometry, the model's timestep
//! convention and guidance rule, a per-layer K/V cache in the model's own
//! layout, and a forward that computes only the image tokens it is given.
//! SD3 and Lumina-Next implement it; a new DiT is a new model folder that
//! implements it, never a copy of the loop (`pipeline::sample`).

use crate::error::Result;
use crate::gpu::{DType, Gpu, Tensor};
use crate::models::Family;

/// The text side of a call, for every batch row. Each model reads the
/// fields it has and rejects a call that lacks one it needs.
#[derive(Clone)]
pub struct Conditioning {
    /// Text tokens `[B, L, D]`.
    pub tokens: Tensor,
    /// Pooled text embedding `[B, P]` (SD3).
    pub pooled: Option<Tensor>,
    /// `[B·L]` row-major, 1 = real token, 0 = padding (Lumina's caption
    /// mask). Host-side: the model derives its key mask and pooling weights
    /// from it.
    pub mask: Option<Vec<f32>>,
    /// How many identical copies each text token stands for (`[L]`, shared
    /// by all rows); see `sd3::Sd3Inputs::text_weights`.
    pub text_weights: Option<Vec<f32>>,
}

/// How conditional and unconditional predictions combine, and what the
/// model predicts (model-spec §C.4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GuidanceRule {
    /// Batch order of a guided call: conditional rows first (Lumina) or
    /// unconditional rows first (SD3).
    pub cond_first: bool,
    /// Leading latent channels that are guided; the others take the
    /// conditional prediction (Lumina: 3). `None` = all.
    pub guided_channels: Option<usize>,
    /// The model predicts `data − noise`: the loop negates it into the
    /// flow-matching velocity `noise − data` (Lumina).
    pub negate: bool,
}

/// What a model derives from the conditioning alone (SD3's projected text
/// tokens, say), computed at the first step of a sampling run and reused
/// at the others. One memo serves one conditioning: the loop keeps it
/// beside its conditioning and drops both together.
#[derive(Default)]
pub struct RunMemo {
    slots: std::sync::Mutex<std::collections::HashMap<(&'static str, usize), Tensor>>,
}

impl RunMemo {
    /// The value under `key`, computing it with `f` the first time.
    pub fn get_or_compute(
        &self,
        key: (&'static str, usize),
        f: impl FnOnce() -> Result<Tensor>,
    ) -> Result<Tensor> {
        if let Some(t) = self.slots.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(t.clone());
        }
        let t = f()?;
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, t.clone());
        Ok(t)
    }

    /// GPU memory held, in bytes.
    pub fn bytes(&self) -> u64 {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.values().map(|t| t.dtype().bytes(t.numel())).sum()
    }
}

/// Numeric precision of a run. `F16` keeps the RAS K/V cache in f16 (half
/// its memory) and the activations between kernels (hidden states,
/// attention inputs and outputs, the MLP's hidden layer); sums,
/// norm statistics, softmax and the sampler's state stay f32. Needs an
/// adapter with shader-f16. `F32` is the reference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    F32,
    F16,
}

impl Precision {
    /// Element type of activations and of the K/V cache.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

/// Per-layer keys and values of the image tokens (and whatever else the
/// model keeps beside them), kept across the steps of one RAS generation
/// (ras-spec §5.3). The layout of each tensor is the model's.
pub struct KvCache {
    /// Each layer's tensors (SD3: one fused K|V tensor; Lumina: K and V).
    pub layers: Vec<Vec<Tensor>>,
}

impl KvCache {
    /// GPU memory held, in bytes.
    pub fn bytes(&self) -> u64 {
        self.layers
            .iter()
            .flatten()
            .map(|t| t.dtype().bytes(t.numel()))
            .sum()
    }
}

/// One denoiser call.
pub struct DitCall<'a> {
    /// Latents `[B, C, H, W]` (the CFG rows already stacked).
    pub latents: &'a Tensor,
    /// One timestep per batch row, in the model's own convention (see
    /// [`Dit::model_timestep`]).
    pub timestep: &'a [f32],
    pub cond: &'a Conditioning,
    /// Image tokens to compute, per batch row: ascending indices, the same
    /// count in every row. `None` = all (a dense call).
    pub active: Option<&'a [Vec<u32>]>,
    /// This generation's K/V cache: dense calls fill it, sparse calls write
    /// their active rows and read the rest.
    pub cache: Option<&'a KvCache>,
    /// Values computed ahead of the call; `Memos::default()` computes all.
    pub memo: Memos<'a>,
    /// Activation precision (the K/V cache's is the cache tensors' own).
    pub precision: Precision,
}

/// The memos a call may reuse.
#[derive(Clone, Copy, Default)]
pub struct Memos<'a> {
    /// The run's: what depends on the conditioning alone.
    pub run: Option<&'a RunMemo>,
    /// The step's: what does not depend on the token selection (filled
    /// ahead by [`Dit::prepare`]).
    pub step: Option<&'a RunMemo>,
}

/// `f()`, or the value `memo` holds under `key` (computed by `f` once).
pub fn memoized(
    memo: Option<&RunMemo>,
    key: (&'static str, usize),
    f: impl FnOnce() -> Result<Tensor>,
) -> Result<Tensor> {
    match memo {
        Some(memo) => memo.get_or_compute(key, f),
        None => f(),
    }
}

/// A Diffusion Transformer the denoising loop can drive with RAS.
pub trait Dit {
    /// Which model family this is (for its pipeline defaults).
    fn family(&self) -> Family;
    /// Latent pixels per token side.
    fn patch_size(&self) -> usize;
    /// Latent channels in (and out, after dropping any learned variance).
    fn latent_channels(&self) -> usize;
    fn guidance_rule(&self) -> GuidanceRule;
    /// The model's timestep for the scheduler's `t = σ·1000`.
    fn model_timestep(&self, t: f32) -> f32;
    /// An empty cache for `rows` batch rows of `n_img` image tokens with
    /// this conditioning.
    fn kv_cache(
        &self,
        gpu: &Gpu,
        rows: usize,
        n_img: usize,
        cond: &Conditioning,
        dtype: DType,
    ) -> Result<KvCache>;
    /// Records the part of the call that does not depend on its token
    /// selection (embeddings, per-layer modulation vectors) into
    /// `call.step_memo`, so the loop can submit it while the previous
    /// step's scores are read back; `forward` then reuses it. The default
    /// prepares nothing.
    fn prepare(&self, gpu: &Gpu, call: &DitCall) -> Result<()> {
        let _ = (gpu, call);
        Ok(())
    }
    /// The prediction `[B, C_out, H, W]` (`C_out ≥ latent_channels`; extra
    /// channels, such as a learned variance, are ignored by the loop). On a
    /// sparse call the rows of tokens not computed may hold anything.
    fn forward(&self, gpu: &Gpu, call: &DitCall) -> Result<Tensor>;
}
