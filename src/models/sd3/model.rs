//! `SD3Transformer2DModel` (MMDiT), Esser et al. 2024, "Scaling Rectified
//! Flow Transformers for High-Resolution Image Synthesis"; reference:
//! diffusers `models/transformers/transformer_sd3.py` (v0.42.1, which the
//! fixtures in tests/fixtures/sd3 were generated with).

use std::path::Path;

use super::block::{JointBlock, Keys, LN_EPS};
use super::config::Sd3Config;
use super::embed::{PatchEmbed, TimeTextEmbed};
use super::projections::kv_buffer;
use super::tokens::TokenPlan;
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Tensor};
use crate::kernels::elementwise::{unary, Unary};
use crate::kernels::modulate::Chunk;
use crate::kernels::norm::{layer_norm_modulated, Modulation};
use crate::kernels::patch::unpatchify;
use crate::kernels::rows::{convert, gather_as, scatter};
use crate::models::dit::{
    memoized, Conditioning, Dit, DitCall, GuidanceRule, KvCache, Memos, Precision, RunMemo,
};
use crate::models::Family;
use crate::nn::Linear;
use crate::weights::Weights;

/// One denoiser call's inputs, as diffusers names them.
pub struct Sd3Inputs<'a> {
    /// Latents `[B, C, H, W]`.
    pub hidden_states: &'a Tensor,
    /// Text tokens `[B, L, joint_attention_dim]`.
    pub encoder_hidden_states: &'a Tensor,
    /// Pooled text embedding `[B, pooled_projection_dim]`.
    pub pooled_projections: &'a Tensor,
    /// Timesteps on diffusers' 0–1000 scale, one per batch element.
    pub timestep: &'a [f32],
    /// How many identical copies each text token stands for (`[L]`, all
    /// batch rows); `None` = one each. Identical text rows stay identical
    /// through every block (text tokens have no position), so m copies can
    /// be computed once and weighed by ln m in attention: exact, and the
    /// 256 zero T5 rows of a T5-less prompt become one.
    pub text_weights: Option<&'a [f32]>,
}

/// What a call computes before its token selection matters.
struct StepInputs {
    /// Every token's patch embedding `[B, N, D]`.
    x_all: Tensor,
    /// Each block's adaLN-Zero vectors (image, text).
    blocks: Vec<(Tensor, Tensor)>,
    /// The final AdaLayerNormContinuous vectors `[B, 2D]`.
    out: Tensor,
}

pub struct Sd3Transformer {
    pub config: Sd3Config,
    pos_embed: PatchEmbed,
    time_text_embed: TimeTextEmbed,
    context_embedder: Linear,
    blocks: Vec<JointBlock>,
    norm_out: Linear,
    proj_out: Linear,
}

impl Sd3Transformer {
    /// Loads a diffusers `transformer/` folder (config.json plus one or
    /// sharded safetensors files).
    pub fn load_dir(gpu: &Gpu, dir: &Path) -> Result<Sd3Transformer> {
        let config = Sd3Config::from_file(&dir.join("config.json"))?;
        let weights = Weights::from_dir(dir, "diffusion_pytorch_model")?;
        Self::load(gpu, &weights, config)
    }

    pub fn load(gpu: &Gpu, w: &Weights, config: Sd3Config) -> Result<Sd3Transformer> {
        let d = config.inner_dim();
        let out_features = config.patch_size * config.patch_size * config.out_channels();
        let blocks = (0..config.num_layers)
            .map(|i| {
                JointBlock::load(
                    gpu,
                    &w.pp("transformer_blocks").pp(i),
                    &config,
                    i + 1 == config.num_layers,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let model = Sd3Transformer {
            pos_embed: PatchEmbed::load(gpu, &w.pp("pos_embed"), &config)?,
            time_text_embed: TimeTextEmbed::load(gpu, &w.pp("time_text_embed"), &config)?,
            context_embedder: Linear::load(gpu, &w.pp("context_embedder"), d, config.joint_attention_dim)?,
            blocks,
            norm_out: Linear::load(gpu, &w.pp("norm_out").pp("linear"), 2 * d, d)?,
            proj_out: Linear::load(gpu, &w.pp("proj_out"), out_features, d)?,
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

    /// One dense denoiser call: the predicted velocity `[B, C_out, H, W]`.
    pub fn forward(&self, gpu: &Gpu, inputs: &Sd3Inputs) -> Result<Tensor> {
        let (b, n, l) = self.token_counts(inputs)?;
        self.forward_planned(
            gpu,
            inputs,
            &TokenPlan::dense(gpu, b, n, l)?,
            None,
            Memos::default(),
            Precision::F32,
        )
    }

    /// `(batch, image tokens, text tokens)` of a call, after checking the inputs.
    pub fn token_counts(&self, inputs: &Sd3Inputs) -> Result<(usize, usize, usize)> {
        let &[b, _, h, w] = inputs.hidden_states.shape() else {
            return Err(Error::shape("sd3", "hidden_states must be [B, C, H, W]"));
        };
        self.check_inputs(inputs, b)?;
        let p = self.config.patch_size;
        Ok((b, (h / p) * (w / p), inputs.encoder_hidden_states.shape()[1]))
    }

    /// What a call computes before its token selection matters, each value
    /// taken from `memo` when there (filled by [`Dit::prepare`]).
    fn step_inputs(
        &self,
        gpu: &Gpu,
        inputs: &Sd3Inputs,
        memo: Option<&RunMemo>,
        precision: Precision,
    ) -> Result<StepInputs> {
        let _region = gpu.region("embed");
        let x_all = memoized(memo, ("patch embedding", 0), || {
            let x = self.pos_embed.forward(gpu, inputs.hidden_states)?; // [B, N, D]
            convert(gpu, &x, precision.dtype())
        })?;
        // Every adaLN linear consumes silu(temb).
        let cond = memoized(memo, ("silu(temb)", 0), || {
            let temb = self
                .time_text_embed
                .forward(gpu, inputs.timestep, inputs.pooled_projections)?; // [B, D]
            unary(gpu, Unary::Silu, &temb)
        })?;
        let blocks = self
            .blocks
            .iter()
            .enumerate()
            .map(|(i, block)| {
                Ok((
                    memoized(memo, ("norm1", i), || block.norm1(gpu, &cond))?, // [B, 6D]
                    memoized(memo, ("norm1_context", i), || block.norm1_context(gpu, &cond))?, // [B, 6D] or [B, 2D]
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let out = memoized(memo, ("norm_out", 0), || self.norm_out.forward(gpu, &cond))?; // [B, 2D]
        Ok(StepInputs { x_all, blocks, out })
    }

    /// A denoiser call computing only the image tokens `plan` names (all of
    /// them on dense steps), with keys and values in `cache` when given,
    /// the projected text tokens kept in the run's memo and the step's
    /// selection-free values in the step's.
    /// Output rows of tokens not computed are left unwritten.
    pub fn forward_planned(
        &self,
        gpu: &Gpu,
        inputs: &Sd3Inputs,
        plan: &TokenPlan,
        cache: Option<&KvCache>,
        memo: Memos,
        precision: Precision,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let (b, n, l) = self.token_counts(inputs)?;
        if (plan.batch, plan.n_img, plan.n_txt) != (b, n, l) {
            return Err(Error::shape("sd3", "token plan does not match the inputs"));
        }
        let (h, w) = (inputs.hidden_states.shape()[2], inputs.hidden_states.shape()[3]);
        let (p, d) = (cfg.patch_size, cfg.inner_dim());

        // 1.-2. patch embedding + cropped position table, the conditioning
        // vector and every adaLN modulation: all before the selection
        let step = self.step_inputs(gpu, inputs, memo.step, precision)?;
        let region = gpu.region("embed");
        // the computed tokens
        let mut x = match &plan.gather {
            Some(rows) => gather_as(gpu, &step.x_all.reshape(&[b * n, d])?, rows, step.x_all.dtype())?
                .reshape(&[b, plan.n_q, d])?,
            None => step.x_all.clone(),
        }; // [B, n_q, D]
           // 3. text tokens
        let mut c = memoized(memo.run, ("context_embedder", 0), || {
            let ctx = inputs.encoder_hidden_states;
            self.context_embedder.forward_as(gpu, ctx, precision.dtype())
        })?; // [B, L, D]
        let key_bias = self.key_bias(gpu, b, n, l, inputs.text_weights)?; // [B, N + L] or none
        drop(region);
        // 4. joint blocks
        let region = gpu.region("joint block");
        for (i, (block, modulation)) in self.blocks.iter().zip(&step.blocks).enumerate() {
            let keys = Keys {
                cache: cache.map(|c| &c.layers[i][0]),
                bias: key_bias.as_ref(),
            };
            let (nx, nc) = block.forward(gpu, &x, &c, modulation, plan, keys)?;
            x = nx;
            if let Some(nc) = nc {
                c = nc;
            }
        }
        // 5. AdaLayerNormContinuous (scale first, then shift), projection, unpatchify
        drop(region);
        let _region = gpu.region("final layer");
        let emb = &step.out; // [B, 2D]
        let (scale, shift) = (Chunk { index: 0, count: 2 }, Chunk { index: 1, count: 2 });
        let modulation = Modulation {
            emb,
            shift: Some(shift),
            scale,
        };
        let x = layer_norm_modulated(gpu, &x, modulation, LN_EPS)?;
        let y = self.proj_out.forward_as(gpu, &x, DType::F32)?; // [B, n_q, p·p·C_out]
        let y = match &plan.gather {
            Some(rows) => {
                let full = gpu.empty(&[b * n, y.cols()], DType::F32)?;
                scatter(gpu, &y.reshape(&[b * plan.n_q, y.cols()])?, rows, &full)?;
                full.reshape(&[b, n, y.cols()])?
            }
            None => y,
        }; // [B, N, p·p·C_out]
        unpatchify(gpu, &y, cfg.out_channels(), h, w, p) // [B, C_out, H, W]
    }

    /// Attention key bias `[B, N + L]`: 0 for image keys, ln m for a text
    /// key standing for m identical rows.
    fn key_bias(
        &self,
        gpu: &Gpu,
        b: usize,
        n: usize,
        l: usize,
        weights: Option<&[f32]>,
    ) -> Result<Option<Tensor>> {
        let Some(w) = weights else {
            return Ok(None);
        };
        if w.len() != l || w.iter().any(|&m| !(m >= 1.0 && m.is_finite())) {
            return Err(Error::Invalid(format!(
                "text_weights must hold {l} finite values ≥ 1 (one per text token)"
            )));
        }
        let row: Vec<f32> = std::iter::repeat_n(0.0, n)
            .chain(w.iter().map(|m| m.ln()))
            .collect();
        gpu.upload_f32(&row.repeat(b), &[b, n + l]).map(Some)
    }

    /// A K/V cache for `batch` rows of `n_img` image and `n_txt` text
    /// tokens: per layer one fused `[batch · (N + L), 2D]` tensor in f32
    /// (keys in the first D columns, values in the last), image rows
    /// first, as the joint attention reads them.
    pub fn kv_cache(&self, gpu: &Gpu, batch: usize, n_img: usize, n_txt: usize) -> Result<KvCache> {
        self.kv_cache_in(gpu, batch, n_img, n_txt, DType::F32)
    }

    /// [`kv_cache`](Self::kv_cache) in f32 or f16.
    pub fn kv_cache_in(
        &self,
        gpu: &Gpu,
        batch: usize,
        n_img: usize,
        n_txt: usize,
        dtype: DType,
    ) -> Result<KvCache> {
        let rows = batch * (n_img + n_txt);
        let layers = (0..self.blocks.len())
            .map(|_| Ok(vec![kv_buffer(gpu, rows, self.config.inner_dim(), dtype)?]))
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache { layers })
    }

    fn check_inputs(&self, inputs: &Sd3Inputs, b: usize) -> Result<()> {
        let cfg = &self.config;
        let bad = |message: String| Err(Error::shape("sd3", message));
        let s = inputs.hidden_states.shape();
        if s[1] != cfg.in_channels
            || !s[2].is_multiple_of(cfg.patch_size)
            || !s[3].is_multiple_of(cfg.patch_size)
        {
            return bad(format!(
                "hidden_states {s:?} must have {} channels and sides divisible by {}",
                cfg.in_channels, cfg.patch_size
            ));
        }
        let e = inputs.encoder_hidden_states.shape();
        if e.len() != 3 || e[0] != b || e[2] != cfg.joint_attention_dim {
            return bad(format!(
                "encoder_hidden_states {e:?} must be [{b}, L, {}]",
                cfg.joint_attention_dim
            ));
        }
        if inputs.pooled_projections.shape() != [b, cfg.pooled_projection_dim] {
            return bad(format!(
                "pooled_projections {:?} must be [{b}, {}]",
                inputs.pooled_projections.shape(),
                cfg.pooled_projection_dim
            ));
        }
        if inputs.timestep.len() != b {
            return bad(format!("{} timesteps for batch {b}", inputs.timestep.len()));
        }
        Ok(())
    }
}

impl Sd3Transformer {
    /// A generic call as this model's inputs.
    fn inputs<'a>(&self, call: &DitCall<'a>) -> Result<Sd3Inputs<'a>> {
        let pooled = call
            .cond
            .pooled
            .as_ref()
            .ok_or_else(|| Error::Invalid("SD3 needs pooled text embeddings".into()))?;
        Ok(Sd3Inputs {
            hidden_states: call.latents,
            encoder_hidden_states: &call.cond.tokens,
            pooled_projections: pooled,
            timestep: call.timestep,
            text_weights: call.cond.text_weights.as_deref(),
        })
    }
}

impl Dit for Sd3Transformer {
    fn family(&self) -> Family {
        Family::Sd3
    }

    fn patch_size(&self) -> usize {
        self.config.patch_size
    }

    fn latent_channels(&self) -> usize {
        self.config.in_channels
    }

    fn guidance_rule(&self) -> GuidanceRule {
        GuidanceRule {
            cond_first: false,
            guided_channels: None,
            negate: false,
        }
    }

    /// SD3 takes the scheduler's σ·1000 as it is.
    fn model_timestep(&self, t: f32) -> f32 {
        t
    }

    fn kv_cache(
        &self,
        gpu: &Gpu,
        rows: usize,
        n_img: usize,
        cond: &Conditioning,
        dtype: DType,
    ) -> Result<KvCache> {
        self.kv_cache_in(gpu, rows, n_img, cond.tokens.shape()[1], dtype)
    }

    fn forward(&self, gpu: &Gpu, call: &DitCall) -> Result<Tensor> {
        let inputs = self.inputs(call)?;
        let (b, n, l) = self.token_counts(&inputs)?;
        let plan = match call.active {
            Some(active) => TokenPlan::sparse(gpu, n, l, active)?,
            None => TokenPlan::dense(gpu, b, n, l)?,
        };
        self.forward_planned(gpu, &inputs, &plan, call.cache, call.memo, call.precision)
    }

    fn prepare(&self, gpu: &Gpu, call: &DitCall) -> Result<()> {
        let inputs = self.inputs(call)?;
        self.token_counts(&inputs)?;
        self.step_inputs(gpu, &inputs, call.memo.step, call.precision)
            .map(drop)
    }
}
