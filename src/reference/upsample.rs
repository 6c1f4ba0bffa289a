//! Reference for `shaders/upsample.wgsl`.

/// Nearest-neighbour 2× upsampling, [B, C, H, W] → [B, C, 2H, 2W]
/// (`F.interpolate(scale_factor=2, mode="nearest")`).
pub fn upsample_nearest2x(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(planes * 4 * h * w);
    for p in 0..planes {
        for oy in 0..2 * h {
            for ox in 0..2 * w {
                out.push(x[(p * h + oy / 2) * w + ox / 2]);
            }
        }
    }
    out
}
