use ras::gpu::Tensor;
use ras::kernels::norm;
use ras::reference::norm as reference;

use crate::common::{check, gpu, randn, rng};

#[test]
fn layer_norm_and_rms_norm() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    for (rows, d) in [(67, 45), (3, 1536), (1, 7)] {
        // An offset mean checks that variance is taken around the mean.
        let x: Vec<f32> = randn(&mut rng, rows * d).iter().map(|v| v * 2.0 + 3.0).collect();
        let w = randn(&mut rng, d);
        let b = randn(&mut rng, d);
        let xt = gpu.upload_f32(&x, &[rows, d]).unwrap();
        let wt = gpu.upload_weight_f32(&w, &[d]).unwrap();
        let bt = gpu.upload_weight_f32(&b, &[d]).unwrap();
        let ln = norm::layer_norm(&gpu, &xt, Some(&wt), Some(&bt), 1e-5).unwrap();
        let want = reference::layer_norm(&x, d, Some(&w), Some(&b), 1e-5);
        check(
            &format!("layer_norm affine {rows}x{d}"),
            &gpu.read_f32(&ln).unwrap(),
            &want,
            1e-5,
            seed,
        );
        let ln = norm::layer_norm(&gpu, &xt, None, None, 1e-6).unwrap();
        let want = reference::layer_norm(&x, d, None, None, 1e-6);
        check(
            &format!("layer_norm plain {rows}x{d}"),
            &gpu.read_f32(&ln).unwrap(),
            &want,
            1e-5,
            seed,
        );
        let rms = norm::rms_norm(&gpu, &xt, Some(&wt), 1e-6).unwrap();
        let want = reference::rms_norm(&x, d, Some(&w), 1e-6);
        check(
            &format!("rms_norm {rows}x{d}"),
            &gpu.read_f32(&rms).unwrap(),
            &want,
            1e-5,
            seed,
        );
    }
}

#[test]
fn group_norm_with_and_without_silu() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let (b, c, h, w, groups) = (2, 12, 7, 9, 4);
    let x = randn(&mut rng, b * c * h * w);
    let wv = randn(&mut rng, c);
    let bv = randn(&mut rng, c);
    let xt = gpu.upload_f32(&x, &[b, c, h, w]).unwrap();
    let wt = gpu.upload_weight_f32(&wv, &[c]).unwrap();
    let bt = gpu.upload_weight_f32(&bv, &[c]).unwrap();
    for silu in [false, true] {
        let out = norm::group_norm(&gpu, &xt, groups, Some(&wt), Some(&bt), 1e-6, silu).unwrap();
        let want = reference::group_norm(&x, c, h * w, groups, Some(&wv), Some(&bv), 1e-6, silu);
        check(
            &format!("group_norm silu={silu}"),
            &gpu.read_f32(&out).unwrap(),
            &want,
            1e-5,
            seed,
        );
    }
}

#[test]
fn norm_rejects_bad_shapes() {
    let gpu = gpu();
    let x: Tensor = gpu.upload_f32(&[1.0; 24], &[2, 12]).unwrap();
    let w = gpu.upload_weight_f32(&[1.0; 5], &[5]).unwrap();
    let err = norm::layer_norm(&gpu, &x, Some(&w), None, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[5] should be [12]"), "{err}");
    let err = norm::group_norm(&gpu, &x, 5, None, None, 1e-6, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be split into 5 channel groups"), "{err}");
}
