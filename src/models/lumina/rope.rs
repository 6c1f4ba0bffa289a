//! Lumina's 2-D rotary table, on the host, as LuminaPipeline builds it for
//! each step (`get_2d_rotary_pos_embed_lumina`; model-spec §B.4), with the
//! time-aware resolution scaling of Lumina-Next (arXiv 2406.18583 §2.3).

use super::config::{LuminaConfig, VAE_SCALE};

/// The RoPE frequency scaling of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeScaling {
    /// Divides every frequency (position interpolation).
    pub linear: f64,
    /// Multiplies the base θ = 10000 (NTK-aware scaling).
    pub ntk: f64,
}

impl RopeScaling {
    /// LuminaPipeline's choice for a `h × w` latent at model timestep `t0`
    /// (the first batch row's): with `s = sqrt(W·H) / default_image_size`
    /// over image pixels (latent × 8), linear scaling by `s` before the
    /// watershed, NTK scaling by `s` from it on. Both are 1 at the training
    /// resolution.
    pub fn for_step(cfg: &LuminaConfig, h: usize, w: usize, t0: f32, watershed: f32) -> RopeScaling {
        let (height, width) = ((h * VAE_SCALE) as f64, (w * VAE_SCALE) as f64);
        let s = (width * height / (cfg.default_image_size() as f64).powi(2)).sqrt();
        if t0 < watershed {
            RopeScaling { linear: s, ntk: 1.0 }
        } else {
            RopeScaling { linear: 1.0, ntk: s }
        }
    }
}

/// Cosines and sines `[tokens, head_dim / 2]` of the tokens at `positions`
/// (row-major indices into a `grid_w`-wide token grid). Complex slot `2k`
/// rotates by the row, slot `2k + 1` by the column, both at frequency
/// `φ_k = (θ·ntk)^(−2k / (head_dim/2)) / linear` — the halves interleaved,
/// not concatenated. Computed in f32 like torch (the angle's rounding is
/// what matters), cos and sin of the rounded angle in f64.
pub fn rope_table(
    head_dim: usize,
    grid_w: usize,
    positions: impl Iterator<Item = usize>,
    scaling: RopeScaling,
) -> (Vec<f32>, Vec<f32>) {
    let axis_dim = head_dim / 2;
    let theta = (10000.0 * scaling.ntk) as f32;
    let linear = scaling.linear as f32;
    let freqs: Vec<f32> = (0..axis_dim / 2)
        .map(|k| 1.0 / theta.powf((2 * k) as f32 / axis_dim as f32) / linear)
        .collect();
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for t in positions {
        let (r, c) = ((t / grid_w) as f32, (t % grid_w) as f32);
        for &f in &freqs {
            for angle in [r * f, c * f] {
                cos.push((angle as f64).cos() as f32);
                sin.push((angle as f64).sin() as f32);
            }
        }
    }
    (cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_follows_the_pipeline() {
        let cfg = LuminaConfig::lumina_next_sft(1);
        // 1024² (latent 128²): no scaling on either side of the watershed.
        let one = RopeScaling {
            linear: 1.0,
            ntk: 1.0,
        };
        assert_eq!(RopeScaling::for_step(&cfg, 128, 128, 0.5, 1.0), one);
        assert_eq!(RopeScaling::for_step(&cfg, 128, 128, 1.0, 1.0), one);
        // 2048×1024: s = sqrt(2).
        let s = RopeScaling::for_step(&cfg, 128, 256, 0.3, 1.0);
        assert!((s.linear - 2f64.sqrt()).abs() < 1e-12 && s.ntk == 1.0);
        let s = RopeScaling::for_step(&cfg, 128, 256, 0.3, 0.25);
        assert!(s.linear == 1.0 && (s.ntk - 2f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn slots_interleave_row_and_column() {
        let one = RopeScaling {
            linear: 1.0,
            ntk: 1.0,
        };
        // Token 7 of a 5-wide grid is row 1, column 2; head dim 8 has two
        // frequencies per axis: 1 and 10000^(-1/2).
        let (cos, _) = rope_table(8, 5, [7].into_iter(), one);
        let f1 = 0.01f64;
        let want = [1.0f64.cos(), 2.0f64.cos(), f1.cos(), (2.0 * f1).cos()];
        for (got, want) in cos.iter().zip(want) {
            assert!((*got as f64 - want).abs() < 1e-6, "{cos:?}");
        }
    }
}
