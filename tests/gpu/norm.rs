use ras::gpu::Tensor;
use ras::kernels::norm;
use ras::reference::norm as reference;

use crate::common::{check, gpu, randn, rng};

#[test]
fn layer_norm_and_rms_norm() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    // On software adapters rows up to 4096 take the lane-per-row entry
    // point, longer ones a workgroup per row (kernels/norm.rs); on GPUs all
    // the latter.
    for (rows, d) in [(67, 45), (3, 1536), (1, 7), (2, 4500)] {
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
    for b in [2, 16] {
        let (c, h, w, groups) = (12, 7, 9, 4);
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
                &format!("group_norm batch {b} silu={silu}"),
                &gpu.read_f32(&out).unwrap(),
                &want,
                1e-5,
                seed,
            );
        }
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

/// LayerNorm and RMSNorm fused with adaLN modulation against the two
/// references in sequence, with chunked `emb`: 3 images of 29 rows and 1
/// image of 5.
#[test]
fn norms_fused_with_modulation() {
    use ras::kernels::modulate::Chunk;
    use ras::kernels::norm::Modulation;
    use ras::reference::modulate as modulation;
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let (d, count) = (45, 4);
    for (b, per) in [(1, 5), (3, 29)] {
        let x: Vec<f32> = randn(&mut rng, b * per * d)
            .iter()
            .map(|v| v * 2.0 + 1.0)
            .collect();
        let emb = randn(&mut rng, b * count * d);
        let w = randn(&mut rng, d);
        let xt = gpu.upload_f32(&x, &[b, per, d]).unwrap();
        let et = gpu.upload_f32(&emb, &[b, count * d]).unwrap();
        let wt = gpu.upload_weight_f32(&w, &[d]).unwrap();
        let chunk = |index| Chunk { index, count };
        let shifted = Modulation {
            emb: &et,
            shift: Some(chunk(3)),
            scale: chunk(1),
        };
        let got = norm::layer_norm_modulated(&gpu, &xt, shifted, 1e-6).unwrap();
        let ln = reference::layer_norm(&x, d, None, None, 1e-6);
        let want = modulation::modulate(&ln, &emb, b, d, count, 3, 1);
        check(
            &format!("layer_norm + modulate, {b}×{per} rows"),
            &gpu.read_f32(&got).unwrap(),
            &want,
            1e-5,
            seed,
        );
        let scaled = Modulation {
            emb: &et,
            shift: None,
            scale: chunk(2),
        };
        let got = norm::rms_norm_with(&gpu, &xt, Some(&wt), Some(scaled), 1e-6).unwrap();
        let rms = reference::rms_norm(&x, d, Some(&w), 1e-6);
        let want = modulation::scale_only(&rms, &emb, b, d, count, 2);
        check(
            &format!("rms_norm + scale, {b}×{per} rows"),
            &gpu.read_f32(&got).unwrap(),
            &want,
            1e-5,
            seed,
        );
    }
    let (b, per) = (3, 29);
    let x = randn(&mut rng, b * per * d);
    let w = randn(&mut rng, d);
    let et = gpu
        .upload_f32(&randn(&mut rng, b * count * d), &[b, count * d])
        .unwrap();
    let chunk = |index| Chunk { index, count };
    // One emb row serves every image; three rows cannot split two images.
    let one = gpu.upload_f32(&w, &[1, d]).unwrap();
    let shared = Modulation {
        emb: &one,
        shift: None,
        scale: Chunk { index: 0, count: 1 },
    };
    let odd = gpu.upload_f32(&x[..2 * per * d], &[2, per, d]).unwrap();
    assert!(norm::layer_norm_modulated(&gpu, &odd, shared, 1e-6).is_ok());
    let three = Modulation {
        emb: &et,
        shift: None,
        scale: chunk(0),
    };
    let err = norm::layer_norm_modulated(&gpu, &odd, three, 1e-6)
        .unwrap_err()
        .to_string();
    assert!(err.contains("B dividing 58 rows"), "{err}");
}

/// f16 rows in and out (statistics in f32), modulated: 26 rows and 74.
#[test]
fn norm_f16_activations() {
    use ras::gpu::DType;
    use ras::kernels::modulate::Chunk;
    use ras::kernels::norm::Modulation;
    use ras::reference::modulate as modulation;
    let gpu = gpu();
    if !gpu.capabilities().shader_f16 {
        assert!(std::env::var("CI").is_err(), "CI's adapter has shader-f16");
        return;
    }
    let (mut rng, seed) = rng();
    let (b, d) = (2, 70);
    for per in [13, 37] {
        let h: Vec<half::f16> = randn(&mut rng, b * per * d)
            .iter()
            .map(|&v| half::f16::from_f32(v * 3.0 + 1.0))
            .collect();
        let x: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
        let xt = gpu
            .upload_weight(bytemuck::cast_slice(&h), &[b, per, d], DType::F16)
            .unwrap();
        let emb = randn(&mut rng, b * 2 * d);
        let et = gpu.upload_f32(&emb, &[b, 2 * d]).unwrap();
        let m = Modulation {
            emb: &et,
            shift: Some(Chunk { index: 0, count: 2 }),
            scale: Chunk { index: 1, count: 2 },
        };
        let got = norm::layer_norm_modulated(&gpu, &xt, m, 1e-6).unwrap();
        assert_eq!(got.dtype(), DType::F16);
        let want = modulation::modulate(
            &reference::layer_norm(&x, d, None, None, 1e-6),
            &emb,
            b,
            d,
            2,
            0,
            1,
        );
        check(
            &format!("layer_norm f16 + modulate, {b}×{per} rows"),
            &gpu.read_f32(&got).unwrap(),
            &want,
            1e-3,
            seed,
        );
    }
}
