use ras::kernels::metric::{region_metric, Metric};
use ras::reference::metric as reference;

use crate::common::{check, gpu, randn, rng};

#[test]
fn region_metric_std_and_l2_non_square() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    // Non-square latent, batch 2, and a 1-pixel patch for patch sizes other than 2.
    for (b, c, h, w, patch) in [(2, 16, 10, 14, 2), (1, 4, 9, 6, 3), (1, 16, 5, 7, 1)] {
        let v = randn(&mut rng, b * c * h * w);
        let vt = gpu.upload_f32(&v, &[b, c, h, w]).unwrap();
        for metric in [Metric::Std, Metric::L2Norm] {
            let out = region_metric(&gpu, &vt, patch, metric).unwrap();
            assert_eq!(out.shape(), [b, (h / patch) * (w / patch)]);
            let want = reference::region_metric(&v, b, c, h, w, patch, metric);
            check(
                &format!("{metric:?} {b}x{c}x{h}x{w} p{patch}"),
                &gpu.read_f32(&out).unwrap(),
                &want,
                1e-5,
                seed,
            );
        }
    }
}

#[test]
fn region_metric_rejects_indivisible_latent() {
    let gpu = gpu();
    let v = gpu.upload_f32(&[0.0; 2 * 5 * 4], &[1, 2, 5, 4]).unwrap();
    let err = region_metric(&gpu, &v, 2, Metric::Std).unwrap_err().to_string();
    assert!(
        err.contains("5×4 latent is not divisible into 2×2 patches"),
        "{err}"
    );
}
