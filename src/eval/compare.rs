//! Dense vs RAS images: PSNR, SSIM (image-compare's MSSIM over 8 × 8
//! windows, worst RGB channel), a difference heat map and a map of where
//! RAS spent its compute.

use image::RgbImage;
use image_compare::Algorithm;

use crate::error::{Error, Result};
use crate::pipeline::Image;

/// |Δ| (mean over channels, 8-bit units) at which the heat map saturates.
pub const HEAT_FULL_SCALE: f64 = 64.0;

fn same_size(a: &Image, b: &Image) -> Result<()> {
    if (a.width, a.height) != (b.width, b.height) {
        return Err(Error::Invalid(format!(
            "images differ in size: {}x{} and {}x{}",
            a.width, a.height, b.width, b.height
        )));
    }
    Ok(())
}

/// Peak signal-to-noise ratio in dB (infinite for identical images).
pub fn psnr(a: &Image, b: &Image) -> Result<f64> {
    same_size(a, b)?;
    let mse = a
        .rgb
        .iter()
        .zip(&b.rgb)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.rgb.len() as f64;
    Ok(10.0 * (255.0f64.powi(2) / mse).log10())
}

pub fn ssim(a: &Image, b: &Image) -> Result<f64> {
    same_size(a, b)?;
    let to_rgb = |i: &Image| RgbImage::from_raw(i.width as u32, i.height as u32, i.rgb.clone());
    let (Some(x), Some(y)) = (to_rgb(a), to_rgb(b)) else {
        return Err(Error::Invalid("image buffer does not match its size".into()));
    };
    image_compare::rgb_similarity_structure(&Algorithm::MSSIMSimple, &x, &y)
        .map(|s| s.score)
        .map_err(|e| Error::Invalid(format!("SSIM: {e}")))
}

fn colour(t: f64) -> [u8; 3] {
    let c = colorous::INFERNO.eval_continuous(t.clamp(0.0, 1.0));
    [c.r, c.g, c.b]
}

/// Per-pixel |Δ| (mean over channels) through the inferno colour map,
/// saturating at [`HEAT_FULL_SCALE`].
pub fn diff_heatmap(a: &Image, b: &Image) -> Result<Image> {
    same_size(a, b)?;
    let rgb = a
        .rgb
        .chunks(3)
        .zip(b.rgb.chunks(3))
        .flat_map(|(p, q)| {
            let d = p
                .iter()
                .zip(q)
                .map(|(&x, &y)| (x as f64 - y as f64).abs())
                .sum::<f64>()
                / 3.0;
            colour(d / HEAT_FULL_SCALE)
        })
        .collect();
    Ok(Image { rgb, ..a.clone() })
}

/// On how many steps each image token of image `index` was computed:
/// every token on dense steps, the active ones on RAS steps.
pub fn token_counts(
    steps: usize,
    active: &[(usize, Vec<Vec<u32>>)],
    tokens: usize,
    index: usize,
) -> Vec<u32> {
    let mut counts = vec![(steps - active.len()) as u32; tokens];
    for (_, per_image) in active {
        for &t in &per_image[index] {
            counts[t as usize] += 1;
        }
    }
    counts
}

/// The image, greyed, under a colour per token: how many of the `steps`
/// steps computed it (dark = few, bright = all). Tokens form a
/// `grid_w`-wide row-major grid over the image.
pub fn compute_map(image: &Image, counts: &[u32], grid_w: usize, steps: usize) -> Result<Image> {
    let grid_h = counts.len() / grid_w.max(1);
    if grid_w == 0
        || grid_h * grid_w != counts.len()
        || !image.width.is_multiple_of(grid_w)
        || !image.height.is_multiple_of(grid_h)
    {
        return Err(Error::Invalid(format!(
            "a {} token grid {grid_w} wide does not tile a {}x{} image",
            counts.len(),
            image.width,
            image.height
        )));
    }
    let (sx, sy) = (image.width / grid_w, image.height / grid_h);
    let mut rgb = Vec::with_capacity(image.rgb.len());
    for (i, p) in image.rgb.chunks(3).enumerate() {
        let (x, y) = (i % image.width, i / image.width);
        let heat = colour(counts[(y / sy) * grid_w + x / sx] as f64 / steps.max(1) as f64);
        let grey = (p[0] as f64 * 0.299 + p[1] as f64 * 0.587 + p[2] as f64 * 0.114) / 255.0;
        for h in heat {
            rgb.push((h as f64 * (0.55 + 0.45 * grey)).round() as u8);
        }
    }
    Ok(Image { rgb, ..image.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: usize, h: usize, f: impl Fn(usize) -> u8) -> Image {
        Image {
            width: w,
            height: h,
            rgb: (0..w * h * 3).map(f).collect(),
        }
    }

    #[test]
    fn identical_images_are_perfect() {
        let a = image(16, 12, |i| (i * 37 % 251) as u8);
        assert!(psnr(&a, &a).unwrap().is_infinite());
        assert!((ssim(&a, &a).unwrap() - 1.0).abs() < 1e-9);
        let b = image(16, 12, |i| (i * 37 % 251) as u8 ^ 8);
        let p = psnr(&a, &b).unwrap();
        assert!((p - 10.0 * (255.0f64 * 255.0 / 64.0).log10()).abs() < 1e-9, "{p}");
        assert!(ssim(&a, &b).unwrap() < 1.0);
        assert!(psnr(&a, &image(8, 12, |_| 0)).is_err());
    }

    #[test]
    fn counts_add_dense_and_active_steps() {
        // 5 steps, 2 of them RAS: tokens 0 and 2 active on the first, 2 on the second.
        let active = vec![(3, vec![vec![0, 2]]), (4, vec![vec![2]])];
        assert_eq!(token_counts(5, &active, 4, 0), vec![4, 3, 5, 3]);
        let img = image(4, 4, |_| 128);
        let map = compute_map(&img, &[4, 3, 5, 3], 2, 5).unwrap();
        assert_eq!((map.width, map.height, map.rgb.len()), (4, 4, 48));
        assert!(compute_map(&img, &[1, 2, 3], 2, 5).is_err());
    }
}
