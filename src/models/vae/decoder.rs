//! The `AutoencoderKL` decoder (model-spec §E; diffusers
//! `models/autoencoders/vae.py` `Decoder`, v0.42.1): latents to an image in
//! roughly [-1, 1], then to 8-bit RGB.

use std::path::Path;

use super::config::VaeConfig;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::kernels::attention::attention;
use crate::kernels::conv2d::conv2d;
use crate::kernels::elementwise::{add, affine};
use crate::kernels::norm::group_norm;
use crate::kernels::patch::{patchify, unpatchify};
use crate::kernels::upsample::upsample_nearest2x;
use crate::nn::Linear;
use crate::weights::Weights;

/// GroupNorm eps throughout the decoder.
const EPS: f32 = 1e-6;

/// A Conv2d with bias, stride 1, "same" padding.
struct Conv {
    weight: Tensor,
    bias: Tensor,
    pad: usize,
}

impl Conv {
    fn load(gpu: &Gpu, w: &Weights, cout: usize, cin: usize, k: usize) -> Result<Conv> {
        Ok(Conv {
            weight: w.get(gpu, "weight", &[cout, cin, k, k])?,
            bias: w.get(gpu, "bias", &[cout])?,
            pad: k / 2,
        })
    }

    fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        conv2d(gpu, x, &self.weight, Some(&self.bias), 1, self.pad)
    }
}

struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
}

impl GroupNorm {
    fn load(gpu: &Gpu, w: &Weights, c: usize, groups: usize) -> Result<GroupNorm> {
        Ok(GroupNorm {
            weight: w.get(gpu, "weight", &[c])?,
            bias: w.get(gpu, "bias", &[c])?,
            groups,
        })
    }

    fn forward(&self, gpu: &Gpu, x: &Tensor, silu: bool) -> Result<Tensor> {
        group_norm(
            gpu,
            x,
            self.groups,
            Some(&self.weight),
            Some(&self.bias),
            EPS,
            silu,
        )
    }
}

/// `ResnetBlock2D` without time embedding.
struct Resnet {
    norm1: GroupNorm,
    conv1: Conv,
    norm2: GroupNorm,
    conv2: Conv,
    shortcut: Option<Conv>,
}

impl Resnet {
    fn load(gpu: &Gpu, w: &Weights, cin: usize, cout: usize, groups: usize) -> Result<Resnet> {
        Ok(Resnet {
            norm1: GroupNorm::load(gpu, &w.pp("norm1"), cin, groups)?,
            conv1: Conv::load(gpu, &w.pp("conv1"), cout, cin, 3)?,
            norm2: GroupNorm::load(gpu, &w.pp("norm2"), cout, groups)?,
            conv2: Conv::load(gpu, &w.pp("conv2"), cout, cout, 3)?,
            shortcut: (cin != cout)
                .then(|| Conv::load(gpu, &w.pp("conv_shortcut"), cout, cin, 1))
                .transpose()?,
        })
    }

    fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(gpu, &self.norm1.forward(gpu, x, true)?)?;
        let h = self.conv2.forward(gpu, &self.norm2.forward(gpu, &h, true)?)?;
        match &self.shortcut {
            Some(s) => add(gpu, &s.forward(gpu, x)?, &h),
            None => add(gpu, x, &h),
        }
    }
}

/// The mid block's single-head self-attention over all pixels.
struct AttnBlock {
    norm: GroupNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
}

impl AttnBlock {
    fn load(gpu: &Gpu, w: &Weights, c: usize, groups: usize) -> Result<AttnBlock> {
        Ok(AttnBlock {
            norm: GroupNorm::load(gpu, &w.pp("group_norm"), c, groups)?,
            q: Linear::load(gpu, &w.pp("to_q"), c, c)?,
            k: Linear::load(gpu, &w.pp("to_k"), c, c)?,
            v: Linear::load(gpu, &w.pp("to_v"), c, c)?,
            out: Linear::load(gpu, &w.pp("to_out").pp(0), c, c)?,
        })
    }

    fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        let &[b, c, h, w] = x.shape() else {
            return Err(Error::shape("vae attention", format!("{:?}", x.shape())));
        };
        let tokens = patchify(gpu, &self.norm.forward(gpu, x, false)?, 1)?; // [B, HW, C]
        let heads = |t: Tensor| t.reshape(&[b, h * w, 1, c]);
        let (q, k, v) = (
            heads(self.q.forward(gpu, &tokens)?)?,
            heads(self.k.forward(gpu, &tokens)?)?,
            heads(self.v.forward(gpu, &tokens)?)?,
        );
        let a = attention(gpu, &q, &k, &v, None, 1.0 / (c as f32).sqrt())?.reshape(&[b, h * w, c])?;
        let y = unpatchify(gpu, &self.out.forward(gpu, &a)?, c, h, w, 1)?; // [B, C, H, W]
        add(gpu, x, &y)
    }
}

struct UpBlock {
    resnets: Vec<Resnet>,
    upsample: Option<Conv>,
}

pub struct VaeDecoder {
    pub config: VaeConfig,
    post_quant_conv: Option<Conv>,
    conv_in: Conv,
    mid: (Resnet, Option<AttnBlock>, Resnet),
    up_blocks: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: Conv,
}

impl VaeDecoder {
    /// Loads a diffusers `vae/` folder; the encoder's weights are ignored.
    pub fn load_dir(gpu: &Gpu, dir: &Path) -> Result<VaeDecoder> {
        let config = VaeConfig::from_file(&dir.join("config.json"))?;
        let weights = Weights::from_dir(dir, "diffusion_pytorch_model")?;
        Self::load(gpu, &weights, config)
    }

    pub fn load(gpu: &Gpu, w: &Weights, config: VaeConfig) -> Result<VaeDecoder> {
        let g = config.norm_num_groups;
        let lat = config.latent_channels;
        let rev: Vec<usize> = config.block_out_channels.iter().rev().copied().collect();
        let d = w.pp("decoder");
        let mid = d.pp("mid_block");
        let top = rev[0];
        let mut up_blocks = Vec::new();
        let mut prev = top;
        for (i, &out) in rev.iter().enumerate() {
            let b = d.pp("up_blocks").pp(i);
            let resnets = (0..=config.layers_per_block)
                .map(|j| {
                    Resnet::load(
                        gpu,
                        &b.pp("resnets").pp(j),
                        if j == 0 { prev } else { out },
                        out,
                        g,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let upsample = (i + 1 < rev.len())
                .then(|| Conv::load(gpu, &b.pp("upsamplers").pp(0).pp("conv"), out, out, 3))
                .transpose()?;
            up_blocks.push(UpBlock { resnets, upsample });
            prev = out;
        }
        Ok(VaeDecoder {
            post_quant_conv: config
                .use_post_quant_conv
                .then(|| Conv::load(gpu, &w.pp("post_quant_conv"), lat, lat, 1))
                .transpose()?,
            conv_in: Conv::load(gpu, &d.pp("conv_in"), top, lat, 3)?,
            mid: (
                Resnet::load(gpu, &mid.pp("resnets").pp(0), top, top, g)?,
                config
                    .mid_block_add_attention
                    .then(|| AttnBlock::load(gpu, &mid.pp("attentions").pp(0), top, g))
                    .transpose()?,
                Resnet::load(gpu, &mid.pp("resnets").pp(1), top, top, g)?,
            ),
            up_blocks,
            norm_out: GroupNorm::load(gpu, &d.pp("conv_norm_out"), config.block_out_channels[0], g)?,
            conv_out: Conv::load(
                gpu,
                &d.pp("conv_out"),
                config.out_channels,
                config.block_out_channels[0],
                3,
            )?,
            config,
        })
    }

    /// Denoised latents `[B, C, h, w]` → image `[B, 3, f·h, f·w]` in about
    /// [-1, 1]: unscale (`/ scaling_factor + shift_factor`), then decode.
    pub fn decode(&self, gpu: &Gpu, latents: &Tensor) -> Result<Tensor> {
        let cfg = &self.config;
        let mut h = affine(
            gpu,
            latents,
            1.0 / cfg.scaling_factor,
            cfg.shift_factor.unwrap_or(0.0),
        )?;
        if let Some(conv) = &self.post_quant_conv {
            h = conv.forward(gpu, &h)?;
        }
        h = self.conv_in.forward(gpu, &h)?; // [B, C_top, h, w]
        h = self.mid.0.forward(gpu, &h)?;
        if let Some(attn) = &self.mid.1 {
            h = attn.forward(gpu, &h)?;
        }
        h = self.mid.2.forward(gpu, &h)?;
        for block in &self.up_blocks {
            for r in &block.resnets {
                h = r.forward(gpu, &h)?;
            }
            if let Some(conv) = &block.upsample {
                h = conv.forward(gpu, &upsample_nearest2x(gpu, &h)?)?; // ×2 per side
            }
        }
        let h = self.norm_out.forward(gpu, &h, true)?;
        self.conv_out.forward(gpu, &h) // [B, 3, f·h, f·w]
    }
}

/// diffusers' `VaeImageProcessor.postprocess` to 8-bit: `image [B, 3, H, W]`
/// values → `[B, H, W, 3]` bytes, `round(clamp(x / 2 + 0.5, 0, 1) · 255)`.
pub fn to_rgb8(image: &[f32], b: usize, h: usize, w: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(image.len());
    for bi in 0..b {
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let v = image[((bi * 3 + c) * h + y) * w + x];
                    out.push(((v / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8);
                }
            }
        }
    }
    out
}
