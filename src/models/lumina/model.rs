//! `LuminaNextDiT2DModel`, Zhuo et al. 2024, "Lumina-Next: Making
//! Lumina-T2X Stronger and Faster with Next-DiT" (arXiv 2406.18583);
//! reference: diffusers `models/transformers/lumina_nextdit2d.py` (v0.42.1,
//! which the fixtures in tests/fixtures/lumina were generated with), with
//! the RoPE table and proportional attention as `LuminaPipeline` sets them.

use std::path::Path;

use super::block::{LuminaBlock, Step, Tokens};
use super::config::LuminaConfig;
use super::embed::TimeCaptionEmbed;
use super::rope::{rope_table, RopeScaling};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Tensor};
use crate::kernels::elementwise::{unary, Unary};
use crate::kernels::modulate::Chunk;
use crate::kernels::norm::{layer_norm_modulated, Modulation};
use crate::kernels::patch::{patchify, unpatchify};
use crate::kernels::rows::{convert, gather_as, scatter, Indices};
use crate::models::dit::{memoized, Conditioning, Dit, DitCall, GuidanceRule, KvCache};
use crate::models::Family;
use crate::nn::Linear;
use crate::weights::Weights;

/// Pipeline settings that change the transformer's computation
/// (`LuminaPipeline.__call__` arguments), with diffusers' defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LuminaOptions {
    /// Model timestep below which RoPE is scaled linearly, at and above
    /// which NTK-aware (decided by the first batch row).
    pub scaling_watershed: f32,
    /// Scale self-attention by `sqrt(ln N / ln base_sequence_length)`.
    pub proportional_attn: bool,
}

impl Default for LuminaOptions {
    fn default() -> Self {
        LuminaOptions {
            scaling_watershed: 1.0,
            proportional_attn: true,
        }
    }
}

/// What a call computes before its token selection matters.
struct StepInputs {
    /// Every token's patch embedding `[B, N, D]`.
    x_all: Tensor,
    /// Each layer's modulation vectors `[B, 4D]`.
    layers: Vec<Tensor>,
    /// The final layer's scale `[B, D]`.
    out: Tensor,
}

pub struct LuminaTransformer {
    pub config: LuminaConfig,
    /// Settable at any time; read by every call.
    pub options: LuminaOptions,
    patch_embedder: Linear,
    time_caption_embed: TimeCaptionEmbed,
    layers: Vec<LuminaBlock>,
    norm_out_scale: Linear,
    norm_out_proj: Linear,
}

impl LuminaTransformer {
    /// Loads a diffusers `transformer/` folder (config.json plus one or
    /// sharded safetensors files).
    pub fn load_dir(gpu: &Gpu, dir: &Path) -> Result<LuminaTransformer> {
        let config = LuminaConfig::from_file(&dir.join("config.json"))?;
        let weights = Weights::from_dir(dir, "diffusion_pytorch_model")?;
        Self::load(gpu, &weights, config)
    }

    pub fn load(gpu: &Gpu, w: &Weights, config: LuminaConfig) -> Result<LuminaTransformer> {
        let (d, p) = (config.hidden_size, config.patch_size);
        // Learned for training-time padding; never read at inference.
        if w.contains("pad_token") {
            w.get_host("pad_token", &[d])?;
        }
        let layers = (0..config.num_layers)
            .map(|i| LuminaBlock::load(gpu, &w.pp("layers").pp(i), &config))
            .collect::<Result<Vec<_>>>()?;
        let norm_out = w.pp("norm_out");
        let model = LuminaTransformer {
            patch_embedder: Linear::load(
                gpu,
                &w.pp("patch_embedder").pp("proj"),
                d,
                p * p * config.in_channels,
            )?,
            time_caption_embed: TimeCaptionEmbed::load(gpu, &w.pp("time_caption_embed"), &config)?,
            layers,
            norm_out_scale: Linear::load(gpu, &norm_out.pp("linear_1"), d, config.temb_dim())?,
            norm_out_proj: Linear::load(gpu, &norm_out.pp("linear_2"), p * p * config.out_channels(), d)?,
            options: LuminaOptions::default(),
            config,
        };
        let unused = w.unused();
        if !unused.is_empty() {
            return Err(Error::WeightFile {
                path: "transformer".into(),
                message: format!(
                    "tensors this model does not use (wrong model type?): {}",
                    unused.join(", ")
                ),
            });
        }
        Ok(model)
    }

    /// Whether every layer's cross-attention reuses its self-attention
    /// query (attn2.to_q and norm_q equal to attn1's).
    pub fn shares_query(&self) -> bool {
        self.layers.iter().all(LuminaBlock::shares_query)
    }

    /// A K/V cache for `rows` batch rows of `n_img` image tokens: per layer,
    /// keys (normed and rotated) and values `[rows·N, kv_heads·head_dim]`
    /// in f32, kv heads un-repeated. Caption keys are never cached.
    pub fn kv_cache(&self, gpu: &Gpu, rows: usize, n_img: usize) -> Result<KvCache> {
        self.kv_cache_in(gpu, rows, n_img, DType::F32)
    }

    /// [`kv_cache`](Self::kv_cache) in f32 or f16.
    pub fn kv_cache_in(&self, gpu: &Gpu, rows: usize, n_img: usize, dtype: DType) -> Result<KvCache> {
        let shape = self.cache_shape(rows, n_img);
        let layers = (0..self.layers.len())
            .map(|_| Ok(vec![gpu.empty(&shape, dtype)?, gpu.empty(&shape, dtype)?]))
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache { layers })
    }

    fn cache_shape(&self, rows: usize, n_img: usize) -> [usize; 2] {
        [rows * n_img, self.config.kv_heads() * self.config.head_dim()]
    }

    /// What a call computes before its token selection matters, each value
    /// taken from the step memo when there (filled by [`Dit::prepare`]).
    fn step_inputs(&self, gpu: &Gpu, call: &DitCall, caption_bias: &Tensor) -> Result<StepInputs> {
        let _region = gpu.region("embed");
        let memo = call.memo.step;
        let p = self.config.patch_size;
        let x_all = memoized(memo, ("patch embedding", 0), || {
            let x = self
                .patch_embedder
                .forward(gpu, &patchify(gpu, call.latents, p)?)?; // [B, N, D]
            convert(gpu, &x, call.precision.dtype())
        })?;
        // Every modulation linear consumes silu(temb).
        let cond = memoized(memo, ("silu(temb)", 0), || {
            let temb =
                self.time_caption_embed
                    .forward(gpu, call.timestep, &call.cond.tokens, caption_bias)?; // [B, D_t]
            unary(gpu, Unary::Silu, &temb)
        })?;
        let layers = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| memoized(memo, ("norm1", i), || layer.norm1(gpu, &cond))) // [B, 4D]
            .collect::<Result<Vec<_>>>()?;
        let out = memoized(memo, ("norm_out", 0), || self.norm_out_scale.forward(gpu, &cond))?; // [B, D]
        Ok(StepInputs { x_all, layers, out })
    }

    /// One denoiser call: the prediction `[B, 2C, H, W]` (learned variance
    /// in the second half). Dense when `call.active` is `None` (filling
    /// `call.cache` when given); otherwise only the active tokens, with
    /// the other tokens' keys and values read from the cache.
    pub fn forward(&self, gpu: &Gpu, call: &DitCall) -> Result<Tensor> {
        let cfg = &self.config;
        let (b, h, w, l) = self.check(call)?;
        let (p, d) = (cfg.patch_size, cfg.hidden_size);
        let (n, grid_w) = ((h / p) * (w / p), w / p);
        let tokens = self.tokens(gpu, b, n, call.active)?;
        self.check_cache(call.cache, &tokens)?;

        // 1. patch embedding (channel-major patches), the conditioning
        // (timestep + pooled caption) and every layer's modulation: all
        // before the selection; then the computed tokens
        let caption_bias = caption_bias(gpu, call.cond.mask.as_deref(), b, l)?; // [B, L]
        let pre = self.step_inputs(gpu, call, &caption_bias)?;
        let region = gpu.region("embed");
        let mut x = if tokens.sparse {
            let rows = &tokens.rows;
            gather_as(gpu, &pre.x_all.reshape(&[b * n, d])?, rows, pre.x_all.dtype())?
                .reshape(&[b, tokens.n_q, d])?
        } else {
            pre.x_all.clone()
        }; // [B, n_q, D]

        // 2. RoPE of the computed tokens at this step's scaling
        let scaling = RopeScaling::for_step(cfg, h, w, call.timestep[0], self.options.scaling_watershed);
        let (cos, sin) = self.rope(gpu, call.active, n, grid_w, scaling)?; // [(B,) n_q, dh/2]

        // 3. blocks
        let step = Step {
            modulation: &pre.layers,
            caption: &call.cond.tokens,
            caption_bias: &caption_bias,
            cos: &cos,
            sin: &sin,
            self_scale: self.self_attention_scale(n)?,
            tokens: &tokens,
            memo: call.memo.run,
        };
        drop(region);
        let region = gpu.region("layer");
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(gpu, i, &x, &step, call.cache.map(|c| &c.layers[i][..]))?;
        }

        // 4. LayerNorm (no affine) × (1 + scale), projection, unpatchify
        drop(region);
        let _region = gpu.region("final layer");
        let modulation = Modulation {
            emb: &pre.out, // [B, D]
            shift: None,
            scale: Chunk { index: 0, count: 1 },
        };
        let x = layer_norm_modulated(gpu, &x, modulation, 1e-6)?;
        let y = self.norm_out_proj.forward_as(gpu, &x, DType::F32)?; // [B, n_q, p²·2C]
        let f = y.cols();
        let y = if tokens.sparse {
            let full = gpu.empty(&[b * n, f], DType::F32)?;
            scatter(gpu, &y.reshape(&[b * tokens.n_q, f])?, &tokens.rows, &full)?;
            full.reshape(&[b, n, f])?
        } else {
            y
        }; // [B, N, p²·2C]
        unpatchify(gpu, &y, cfg.out_channels(), h, w, p) // [B, 2C, H, W]
    }

    /// The computed tokens of a call: all, or each row's active ones.
    fn tokens(&self, gpu: &Gpu, b: usize, n: usize, active: Option<&[Vec<u32>]>) -> Result<Tokens> {
        let Some(active) = active else {
            let rows: Vec<u32> = (0..(b * n) as u32).collect();
            return Ok(Tokens {
                batch: b,
                n_img: n,
                n_q: n,
                rows: Indices::upload(gpu, &rows)?,
                sparse: false,
            });
        };
        let n_q = active.first().map_or(0, Vec::len);
        let valid = |a: &Vec<u32>| {
            a.len() == n_q && a.windows(2).all(|p| p[0] < p[1]) && a.iter().all(|&t| (t as usize) < n)
        };
        if active.len() != b || n_q == 0 || !active.iter().all(valid) {
            return Err(Error::Invalid(format!(
                "lumina: active tokens must be one non-empty ascending list per batch row ({b}), \
                 all of the same length, with indices below {n}"
            )));
        }
        let rows: Vec<u32> = (0..b)
            .flat_map(|r| active[r].iter().map(move |&t| (r * n) as u32 + t))
            .collect();
        Ok(Tokens {
            batch: b,
            n_img: n,
            n_q,
            rows: Indices::upload(gpu, &rows)?,
            sparse: true,
        })
    }

    /// Cosine and sine tables of the computed tokens: `[N, dh/2]` shared by
    /// the batch on a dense call, `[B, n_q, dh/2]` at each row's active
    /// positions on a sparse one.
    fn rope(
        &self,
        gpu: &Gpu,
        active: Option<&[Vec<u32>]>,
        n: usize,
        grid_w: usize,
        scaling: RopeScaling,
    ) -> Result<(Tensor, Tensor)> {
        let half = self.config.head_dim() / 2;
        let (cos, sin, shape) = match active {
            None => {
                let (cos, sin) = rope_table(self.config.head_dim(), grid_w, 0..n, scaling);
                (cos, sin, vec![n, half])
            }
            Some(active) => {
                let positions = active.iter().flatten().map(|&t| t as usize);
                let (cos, sin) = rope_table(self.config.head_dim(), grid_w, positions, scaling);
                (cos, sin, vec![active.len(), active[0].len(), half])
            }
        };
        Ok((gpu.upload_f32(&cos, &shape)?, gpu.upload_f32(&sin, &shape)?))
    }

    /// `head_dim^-1/2`, times `sqrt(log_base N)` with the pipeline's
    /// `base_sequence_length = (default_image_size / 16)²` under
    /// proportional attention (1 at the training resolution).
    fn self_attention_scale(&self, n: usize) -> Result<f32> {
        let scale = 1.0 / (self.config.head_dim() as f64).sqrt();
        if !self.options.proportional_attn {
            return Ok(scale as f32);
        }
        let base = (self.config.default_image_size() / 16).pow(2);
        if base < 2 {
            return Err(Error::Invalid(format!(
                "lumina: proportional attention needs base_sequence_length ≥ 2, but sample_size {} \
                 gives {base}; turn options.proportional_attn off",
                self.config.sample_size
            )));
        }
        Ok(((n as f64).ln() / (base as f64).ln()).sqrt() as f32 * scale as f32)
    }

    /// `(batch, latent height, latent width, caption length)` of a valid call.
    fn check(&self, call: &DitCall) -> Result<(usize, usize, usize, usize)> {
        let cfg = &self.config;
        let bad = |message: String| Err(Error::shape("lumina", message));
        let &[b, c, h, w] = call.latents.shape() else {
            return bad(format!("latents {:?} must be [B, C, H, W]", call.latents.shape()));
        };
        if c != cfg.in_channels || !h.is_multiple_of(cfg.patch_size) || !w.is_multiple_of(cfg.patch_size) {
            return bad(format!(
                "latents {:?} must have {} channels and sides divisible by {}",
                call.latents.shape(),
                cfg.in_channels,
                cfg.patch_size
            ));
        }
        if call.timestep.len() != b {
            return bad(format!("{} timesteps for batch {b}", call.timestep.len()));
        }
        let e = call.cond.tokens.shape();
        if e.len() != 3 || e[0] != b || e[2] != cfg.cross_attention_dim || e[1] == 0 {
            return bad(format!(
                "caption features {e:?} must be [{b}, L, {}] with L > 0",
                cfg.cross_attention_dim
            ));
        }
        if call.cond.text_weights.is_some() {
            return Err(Error::Invalid(
                "lumina: text_weights (deduplicated text rows) are an SD3 feature; pass every caption token"
                    .into(),
            ));
        }
        Ok((b, h, w, e[1]))
    }

    fn check_cache(&self, cache: Option<&KvCache>, tokens: &Tokens) -> Result<()> {
        let Some(cache) = cache else {
            if tokens.sparse {
                return Err(Error::Invalid(
                    "lumina: a sparse call needs the K/V cache a dense call filled".into(),
                ));
            }
            return Ok(());
        };
        let shape = self.cache_shape(tokens.batch, tokens.n_img);
        let ok = cache.layers.len() == self.layers.len()
            && cache.layers.iter().all(|layer| {
                let [k, v] = &layer[..] else {
                    return false;
                };
                k.shape() == shape
                    && v.shape() == shape
                    && k.dtype() == v.dtype()
                    && matches!(k.dtype(), DType::F32 | DType::F16)
            });
        if !ok {
            return Err(Error::shape(
                "lumina",
                format!(
                    "the K/V cache must hold {} layers of f32 or f16 [{}, {}] keys and values \
                     (make it with kv_cache for this batch and latent size)",
                    self.layers.len(),
                    shape[0],
                    shape[1]
                ),
            ));
        }
        Ok(())
    }
}

/// Caption key bias `[B, L]`: 0 for real tokens, −∞ for padding (mask
/// `[B·L]`, 1 = real; `None` = all real).
fn caption_bias(gpu: &Gpu, mask: Option<&[f32]>, b: usize, l: usize) -> Result<Tensor> {
    let bias: Vec<f32> = match mask {
        None => vec![0.0; b * l],
        Some(m) => {
            if m.len() != b * l || m.iter().any(|&v| v != 0.0 && v != 1.0) {
                return Err(Error::Invalid(format!(
                    "lumina: the caption mask must hold {b}×{l} values, each 1 (real token) or 0 (padding)"
                )));
            }
            if let Some(row) = m.chunks(l).position(|r| r.iter().all(|&v| v == 0.0)) {
                return Err(Error::Invalid(format!(
                    "lumina: caption row {row} has no real token (its mask is all 0)"
                )));
            }
            m.iter()
                .map(|&v| if v == 1.0 { 0.0 } else { f32::NEG_INFINITY })
                .collect()
        }
    };
    gpu.upload_f32(&bias, &[b, l])
}

impl Dit for LuminaTransformer {
    fn family(&self) -> Family {
        Family::Lumina
    }

    fn patch_size(&self) -> usize {
        self.config.patch_size
    }

    fn latent_channels(&self) -> usize {
        self.config.in_channels
    }

    fn guidance_rule(&self) -> GuidanceRule {
        GuidanceRule {
            cond_first: true,
            guided_channels: Some(3),
            negate: true,
        }
    }

    /// `1 − t/1000` in f32 as the pipeline computes it: Lumina's time runs
    /// from 0 (noise) to 1 (image).
    fn model_timestep(&self, t: f32) -> f32 {
        1.0 - t / 1000.0
    }

    fn kv_cache(
        &self,
        gpu: &Gpu,
        rows: usize,
        n_img: usize,
        _cond: &Conditioning,
        dtype: DType,
    ) -> Result<KvCache> {
        self.kv_cache_in(gpu, rows, n_img, dtype)
    }

    fn forward(&self, gpu: &Gpu, call: &DitCall) -> Result<Tensor> {
        LuminaTransformer::forward(self, gpu, call)
    }

    fn prepare(&self, gpu: &Gpu, call: &DitCall) -> Result<()> {
        let (b, _, _, l) = self.check(call)?;
        let caption_bias = caption_bias(gpu, call.cond.mask.as_deref(), b, l)?;
        self.step_inputs(gpu, call, &caption_bias).map(drop)
    }
}
