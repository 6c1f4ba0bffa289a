//! The linear latent → RGB map behind step previews: fitted once per model
//! by least squares from a few random latents to the VAE's decode of them,
//! averaged over each latent pixel's f × f block. Any VAE gets one, no
//! per-model table needed.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::vae::VaeDecoder;
use crate::sampling::gaussian_noise;

const SIDE: usize = 16;
const SAMPLES: usize = 2;
const SEED: u64 = 0x5eed;

/// `[3][C + 1]`: per output channel, a weight per latent channel and a bias.
pub fn fit_latent_rgb(gpu: &Gpu, vae: &VaeDecoder) -> Result<Vec<f32>> {
    let c = vae.config.latent_channels;
    let f = vae.config.scale_factor();
    let z = gaussian_noise(SEED, SAMPLES * c * SIDE * SIDE);
    let image = gpu.read_f32(&vae.decode(gpu, &gpu.upload_f32(&z, &[SAMPLES, c, SIDE, SIDE])?)?)?;
    let (hw, big) = (SIDE * SIDE, SIDE * f);
    // Normal equations XᵀX w = Xᵀy over every latent pixel, x = [z, 1].
    let k = c + 1;
    let mut xtx = vec![0.0f64; k * k];
    let mut xty = vec![0.0f64; k * 3];
    for s in 0..SAMPLES {
        for p in 0..hw {
            let (py, px) = (p / SIDE, p % SIDE);
            let mut x: Vec<f64> = (0..c).map(|ch| z[(s * c + ch) * hw + p] as f64).collect();
            x.push(1.0);
            for ch in 0..3 {
                let mut mean = 0.0f64;
                for dy in 0..f {
                    for dx in 0..f {
                        mean += image[((s * 3 + ch) * big + py * f + dy) * big + px * f + dx] as f64;
                    }
                }
                mean /= (f * f) as f64;
                for i in 0..k {
                    xty[i * 3 + ch] += x[i] * mean;
                }
            }
            for i in 0..k {
                for j in 0..k {
                    xtx[i * k + j] += x[i] * x[j];
                }
            }
        }
    }
    let w = solve(&mut xtx, &mut xty, k, 3);
    Ok((0..3)
        .flat_map(|ch| (0..k).map(move |i| (ch, i)))
        .map(|(ch, i)| w[i * 3 + ch] as f32)
        .collect())
}

/// Solves `a · x = b` (`a` k×k, `b` k×m) by Gauss-Jordan with partial
/// pivoting and a tiny ridge; returns x (k×m).
fn solve(a: &mut [f64], b: &mut [f64], k: usize, m: usize) -> Vec<f64> {
    for i in 0..k {
        a[i * k + i] += 1e-6;
    }
    for col in 0..k {
        let pivot = (col..k)
            .max_by(|&r, &s| a[r * k + col].abs().total_cmp(&a[s * k + col].abs()))
            .unwrap_or(col);
        for j in 0..k {
            a.swap(col * k + j, pivot * k + j);
        }
        for j in 0..m {
            b.swap(col * m + j, pivot * m + j);
        }
        let d = a[col * k + col];
        for r in 0..k {
            if r != col {
                let factor = a[r * k + col] / d;
                for j in 0..k {
                    a[r * k + j] -= factor * a[col * k + j];
                }
                for j in 0..m {
                    b[r * m + j] -= factor * b[col * m + j];
                }
            }
        }
    }
    (0..k * m).map(|i| b[i] / a[(i / m) * k + i / m]).collect()
}

#[cfg(test)]
mod tests {
    use super::solve;

    #[test]
    fn solves_a_small_system() {
        // [2 1; 1 3] x = [3 5; 5 10] → x = [0.8 1; 1.4 3]
        let mut a = vec![2.0, 1.0, 1.0, 3.0];
        let mut b = vec![3.0, 5.0, 5.0, 10.0];
        let x = solve(&mut a, &mut b, 2, 2);
        for (g, w) in x.iter().zip([0.8, 1.0, 1.4, 3.0]) {
            assert!((g - w).abs() < 1e-5, "{x:?}");
        }
    }
}
