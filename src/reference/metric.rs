//! Reference for `shaders/metric.wgsl`, written as ras-spec §4.2 states it:
//! per-pixel reduction over channels, then the mean over each patch.

use crate::kernels::metric::Metric;

pub fn region_metric(
    v: &[f32],
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    patch: usize,
    metric: Metric,
) -> Vec<f32> {
    let at = |bi: usize, ch: usize, y: usize, x: usize| v[((bi * c + ch) * h + y) * w + x] as f64;
    let pixel = |bi: usize, y: usize, x: usize| -> f64 {
        let vals: Vec<f64> = (0..c).map(|ch| at(bi, ch, y, x)).collect();
        match metric {
            Metric::L2Norm => vals.iter().map(|v| v * v).sum::<f64>().sqrt(),
            Metric::Std => {
                let mean = vals.iter().sum::<f64>() / c as f64;
                (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (c - 1) as f64).sqrt()
            }
        }
    };
    let (ht, wt) = (h / patch, w / patch);
    let mut out = Vec::with_capacity(b * ht * wt);
    for bi in 0..b {
        for r in 0..ht {
            for col in 0..wt {
                let mut s = 0.0;
                for py in 0..patch {
                    for px in 0..patch {
                        s += pixel(bi, r * patch + py, col * patch + px);
                    }
                }
                out.push((s / (patch * patch) as f64) as f32);
            }
        }
    }
    out
}
