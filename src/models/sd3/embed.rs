//! SD3's input embeddings: patches with the cropped position table, and the
//! timestep + pooled-text conditioning vector.

use super::config::Sd3Config;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::kernels::elementwise::{add, unary, Unary};
use crate::kernels::patch::patchify;
use crate::kernels::rows::{gather, Indices};
use crate::nn::Linear;
use crate::weights::Weights;

/// `PatchEmbed`: the k=p, s=p Conv2d as patchify + linear, plus the position
/// table cropped around its centre.
pub struct PatchEmbed {
    proj: Linear,
    /// `[grid·grid, D]` in the stored dtype (or f32 when regenerated).
    table: Tensor,
    grid: usize,
    patch: usize,
}

impl PatchEmbed {
    pub fn load(gpu: &Gpu, w: &Weights, cfg: &Sd3Config) -> Result<PatchEmbed> {
        let (d, c, p) = (cfg.inner_dim(), cfg.in_channels, cfg.patch_size);
        // Conv2d weight [D, C, p, p] flattened is [D, C·p·p] in patchify's
        // channel-major feature order.
        let weight = w
            .pp("proj")
            .get(gpu, "weight", &[d, c, p, p])?
            .reshape(&[d, c * p * p])?;
        let bias = Some(w.pp("proj").get(gpu, "bias", &[d])?);
        let grid = cfg.pos_grid();
        // diffusers stores the table as a persistent buffer; regenerate it
        // only when a checkpoint lacks it.
        let table = if w.contains("pos_embed") {
            w.get(gpu, "pos_embed", &[grid * grid, d])?
        } else {
            gpu.upload_weight_f32(&sincos_table(d, grid, cfg.base_size()), &[grid * grid, d])?
        };
        Ok(PatchEmbed {
            proj: Linear { weight, bias },
            table,
            grid,
            patch: p,
        })
    }

    /// Latent `[B, C, H, W]` → tokens `[B, (H/p)·(W/p), D]`.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        let &[_, _, h, w] = x.shape() else {
            return Err(Error::shape(
                "sd3 patch embed",
                format!("latent must be [B, C, H, W], got {:?}", x.shape()),
            ));
        };
        let (ht, wt) = (h / self.patch, w / self.patch);
        if ht > self.grid || wt > self.grid {
            return Err(Error::shape(
                "sd3 patch embed",
                format!(
                    "a {h}×{w} latent needs a {ht}×{wt} position grid but the model's table is {g}×{g} \
                     (at most {m}×{m} latent pixels)",
                    g = self.grid,
                    m = self.grid * self.patch
                ),
            ));
        }
        let tokens = patchify(gpu, x, self.patch)?; // [B, N, C·p·p]
        let x = self.proj.forward(gpu, &tokens)?; // [B, N, D]
        let pos = gather(gpu, &self.table, &Indices::upload(gpu, &crop(self.grid, ht, wt))?)?; // [N, D]
        add(gpu, &x, &pos)
    }
}

/// Rows of the `grid × grid` table for the centred `h × w` window
/// (`PatchEmbed.cropped_pos_embed`).
pub fn crop(grid: usize, h: usize, w: usize) -> Vec<u32> {
    let (top, left) = ((grid - h) / 2, (grid - w) / 2);
    (0..h)
        .flat_map(|r| (0..w).map(move |c| ((top + r) * grid + left + c) as u32))
        .collect()
}

/// diffusers' `get_2d_sincos_pos_embed` (f64, as diffusers computes it):
/// for cell (r, c), `[sin(x·ω), cos(x·ω), sin(y·ω), cos(y·ω)]` with the
/// column coordinate x first, positions scaled by `base_size / grid`.
pub fn sincos_table(d: usize, grid: usize, base_size: usize) -> Vec<f32> {
    let quarter = d / 4;
    let omega: Vec<f64> = (0..quarter)
        .map(|k| 1.0 / 10000f64.powf(k as f64 / quarter as f64))
        .collect();
    let scale = base_size as f64 / grid as f64;
    let mut out = Vec::with_capacity(grid * grid * d);
    for r in 0..grid {
        for c in 0..grid {
            for pos in [c as f64 * scale, r as f64 * scale] {
                out.extend(omega.iter().map(|o| (pos * o).sin() as f32));
                out.extend(omega.iter().map(|o| (pos * o).cos() as f32));
            }
        }
    }
    out
}

/// `CombinedTimestepTextProjEmbeddings`: `TEmb(t) + TextProj(pooled)`.
pub struct TimeTextEmbed {
    t1: Linear,
    t2: Linear,
    p1: Linear,
    p2: Linear,
    channels: usize,
}

impl TimeTextEmbed {
    pub fn load(gpu: &Gpu, w: &Weights, cfg: &Sd3Config) -> Result<TimeTextEmbed> {
        let d = cfg.inner_dim();
        let (t, p) = (w.pp("timestep_embedder"), w.pp("text_embedder"));
        let channels = 256;
        Ok(TimeTextEmbed {
            t1: Linear::load(gpu, &t.pp("linear_1"), d, channels)?,
            t2: Linear::load(gpu, &t.pp("linear_2"), d, d)?,
            p1: Linear::load(gpu, &p.pp("linear_1"), d, cfg.pooled_projection_dim)?,
            p2: Linear::load(gpu, &p.pp("linear_2"), d, d)?,
            channels,
        })
    }

    /// `t [B]` (0–1000 scale), `pooled [B, P]` → `temb [B, D]`.
    pub fn forward(&self, gpu: &Gpu, timesteps: &[f32], pooled: &Tensor) -> Result<Tensor> {
        let sin = gpu.upload_f32(
            &timestep_embedding(timesteps, self.channels),
            &[timesteps.len(), self.channels],
        )?;
        let t = self
            .t2
            .forward(gpu, &unary(gpu, Unary::Silu, &self.t1.forward(gpu, &sin)?)?)?;
        let p = self
            .p2
            .forward(gpu, &unary(gpu, Unary::Silu, &self.p1.forward(gpu, pooled)?)?)?;
        add(gpu, &t, &p)
    }
}

/// diffusers' `get_timestep_embedding(flip_sin_to_cos=True, shift=0)`:
/// `[cos(t·f), sin(t·f)]` with `f_k = exp(-ln(10000)·k/half)`, in f32 as
/// torch computes it (the argument reaches 1000 rad, so the rounding of
/// the product matters more than that of sin/cos).
pub fn timestep_embedding(timesteps: &[f32], channels: usize) -> Vec<f32> {
    let half = channels / 2;
    let mut out = Vec::with_capacity(timesteps.len() * channels);
    for &t in timesteps {
        let args: Vec<f32> = (0..half)
            .map(|k| t * (-(10000f32.ln()) * k as f32 / half as f32).exp())
            .collect();
        out.extend(args.iter().map(|&a| (a as f64).cos() as f32));
        out.extend(args.iter().map(|&a| (a as f64).sin() as f32));
    }
    out
}
