//! Decoding in overlapping tiles when a whole image's activations would not
//! fit the device: diffusers' `AutoencoderKL.tiled_decode` (tiles overlap by
//! a quarter, seams blended linearly), one image at a time. Tiles lose the
//! mid-block attention's global view, so a tiled image differs slightly
//! from an untiled one, as in diffusers.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::kernels::attention::MAX_HEAD_DIM;

use super::config::VaeConfig;
use super::decoder::VaeDecoder;

impl VaeConfig {
    /// Bytes of the decoder's largest activation for a `[1, C, h, w]` latent
    /// (each must fit one storage binding): the widest channel count at each
    /// resolution after an upsample, the last block at full size, and the
    /// mid-block attention's `(h·w)²` score matrix when its single head is
    /// too wide for the fused kernel (SD3: 512 channels).
    pub fn largest_activation_bytes(&self, h: usize, w: usize) -> u64 {
        let rev: Vec<usize> = self.block_out_channels.iter().rev().copied().collect();
        let n = rev.len();
        let scores = if self.mid_block_add_attention && rev[0] > MAX_HEAD_DIM {
            ((h * w) * (h * w) * 4) as u64
        } else {
            0
        };
        (0..n)
            .map(|i| {
                let side = 1 << (i + 1).min(n - 1);
                (rev[i] * h * side * w * side * 4) as u64
            })
            .max()
            .unwrap_or(0)
            .max(scores)
    }
}

/// A decoded tile (or image) `[B, 3, h, w]` on the host.
#[derive(Clone)]
struct Tile {
    b: usize,
    h: usize,
    w: usize,
    data: Vec<f32>,
}

impl Tile {
    fn at(&self, bc: usize, y: usize, x: usize) -> usize {
        (bc * self.h + y) * self.w + x
    }
}

impl VaeDecoder {
    /// The largest latent tile side (a multiple of 8) whose activations fit
    /// `budget` bytes each; `None` when the whole `h × w` latent fits.
    pub fn tile_for(&self, h: usize, w: usize, budget: u64) -> Option<usize> {
        if self.config.largest_activation_bytes(h, w) <= budget {
            return None;
        }
        let mut t = 8;
        while t + 8 < h.max(w) && self.config.largest_activation_bytes(t + 8, t + 8) <= budget {
            t += 8;
        }
        Some(t)
    }

    /// Decodes like [`VaeDecoder::decode`], in `tile × tile` latent tiles
    /// (a multiple of 4, so tile strides are whole pixels); returns the image
    /// `[B, 3, f·h, f·w]` on the host.
    pub fn decode_tiled(&self, gpu: &Gpu, latents: &Tensor, tile: usize) -> Result<Vec<f32>> {
        let &[b, c, h, w] = latents.shape() else {
            return Err(Error::shape("vae tiled decode", "latents must be [B, C, h, w]"));
        };
        if tile < 4 || !tile.is_multiple_of(4) {
            return Err(Error::Invalid(format!(
                "VAE tile size {tile} must be a positive multiple of 4"
            )));
        }
        let f = self.config.scale_factor();
        let host = gpu.read_f32(latents)?;
        let (sample_tile, stride) = (tile * f, tile * 3 / 4);
        let blend = sample_tile / 4;
        let row_limit = sample_tile - blend;
        let mut rows: Vec<Vec<Tile>> = Vec::new();
        for i in (0..h).step_by(stride) {
            let mut row = Vec::new();
            for j in (0..w).step_by(stride) {
                let (th, tw) = (tile.min(h - i), tile.min(w - j));
                let mut crop = Vec::with_capacity(b * c * th * tw);
                for bc in 0..b * c {
                    for y in i..i + th {
                        crop.extend_from_slice(&host[(bc * h + y) * w + j..][..tw]);
                    }
                }
                let z = gpu.upload_f32(&crop, &[b, c, th, tw])?;
                let image = self.decode(gpu, &z)?;
                row.push(Tile {
                    b,
                    h: th * f,
                    w: tw * f,
                    data: gpu.read_f32(&image)?,
                });
            }
            rows.push(row);
        }
        // Blend with the tile above and the one to the left, in place and in
        // this order, as diffusers does (later tiles see blended neighbours).
        for i in 0..rows.len() {
            for j in 0..rows[i].len() {
                let mut t = rows[i][j].clone();
                if i > 0 {
                    blend_v(&rows[i - 1][j], &mut t, blend);
                }
                if j > 0 {
                    blend_h(&rows[i][j - 1], &mut t, blend);
                }
                rows[i][j] = t;
            }
        }
        let (out_h, out_w) = (h * f, w * f);
        let mut out = vec![0.0f32; b * 3 * out_h * out_w];
        let mut y0 = 0;
        for row in &rows {
            let mut x0 = 0;
            let th = row[0].h.min(row_limit);
            for t in row {
                let tw = t.w.min(row_limit);
                for bc in 0..b * 3 {
                    for y in 0..th {
                        let dst = (bc * out_h + y0 + y) * out_w + x0;
                        out[dst..dst + tw].copy_from_slice(&t.data[t.at(bc, y, 0)..][..tw]);
                    }
                }
                x0 += tw;
            }
            y0 += th;
        }
        debug_assert_eq!(y0, out_h);
        Ok(out)
    }
}

fn blend_v(a: &Tile, b: &mut Tile, extent: usize) {
    let e = extent.min(a.h).min(b.h);
    for bc in 0..b.b * 3 {
        for y in 0..e {
            let t = y as f32 / e as f32;
            for x in 0..b.w {
                let above = a.data[a.at(bc, a.h - e + y, x)];
                let i = b.at(bc, y, x);
                b.data[i] = above * (1.0 - t) + b.data[i] * t;
            }
        }
    }
}

fn blend_h(a: &Tile, b: &mut Tile, extent: usize) {
    let e = extent.min(a.w).min(b.w);
    for bc in 0..b.b * 3 {
        for y in 0..b.h {
            for x in 0..e {
                let t = x as f32 / e as f32;
                let left = a.data[a.at(bc, y, a.w - e + x)];
                let i = b.at(bc, y, x);
                b.data[i] = left * (1.0 - t) + b.data[i] * t;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd3_vae() -> VaeConfig {
        serde_json::from_str(
            r#"{"latent_channels": 16, "out_channels": 3, "block_out_channels": [128, 256, 512, 512],
                "layers_per_block": 2, "norm_num_groups": 32, "scaling_factor": 1.5305,
                "shift_factor": 0.0609, "use_post_quant_conv": false}"#,
        )
        .unwrap()
    }

    #[test]
    fn sd3_vae_largest_activation() {
        let cfg = sd3_vae();
        // 1024²: the third up block's 256 channels at full size, 1 GiB.
        assert_eq!(cfg.largest_activation_bytes(128, 128), 256 * 1024 * 1024 * 4);
        // A 40×40 tile: 256 × 320² × 4 = 100 MiB, the scores 1600² × 4 = 9.8 MiB.
        assert_eq!(cfg.largest_activation_bytes(40, 40), 256 * 320 * 320 * 4);
        // Past 128×128 the 512-wide attention's scores grow faster (h⁴).
        assert_eq!(cfg.largest_activation_bytes(160, 160), (160u64 * 160).pow(2) * 4);
    }
}
