//! Seeded initial noise. The generator is ChaCha8 (`rand_chacha`) seeded with
//! `seed_from_u64(seed)`, drawing standard normals (`rand_distr`'s ziggurat
//! `StandardNormal`, f32) in `[B, C, H, W]` order: the same seed gives the
//! same latents on every platform. It is not torch's generator, so a seed
//! does not reproduce a diffusers image; `--latents-init` does.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

pub fn gaussian_noise(seed: u64, len: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| StandardNormal.sample(&mut rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_noise_and_unit_variance() {
        let a = gaussian_noise(7, 20_000);
        assert_eq!(a, gaussian_noise(7, 20_000));
        assert_ne!(a, gaussian_noise(8, 20_000));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{mean} {var}");
    }
}
