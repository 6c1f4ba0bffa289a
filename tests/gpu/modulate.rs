use ras::kernels::modulate::{gated_residual, modulate, scale_only, tanh_gated_residual, Chunk};
use ras::reference::modulate as reference;

use crate::common::{check, gpu, randn, rng};

#[test]
fn modulate_and_gate_read_their_chunks() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let (b, n, d, count) = (2, 37, 45, 6);
    let x = randn(&mut rng, b * n * d);
    let y = randn(&mut rng, b * n * d);
    let emb = randn(&mut rng, b * count * d);
    let xt = gpu.upload_f32(&x, &[b, n, d]).unwrap();
    let yt = gpu.upload_f32(&y, &[b, n, d]).unwrap();
    let et = gpu.upload_f32(&emb, &[b, count * d]).unwrap();
    let chunk = |index| Chunk { index, count };
    let out = modulate(&gpu, &xt, &et, chunk(3), chunk(4)).unwrap();
    let want = reference::modulate(&x, &emb, b, d, count, 3, 4);
    check("modulate", &gpu.read_f32(&out).unwrap(), &want, 1e-5, seed);
    let out = gated_residual(&gpu, &xt, &yt, &et, chunk(5)).unwrap();
    let want = reference::gated_residual(&x, &y, &emb, b, d, count, 5, false);
    check("gated_residual", &gpu.read_f32(&out).unwrap(), &want, 1e-5, seed);
}

#[test]
fn scale_only_and_tanh_gate_read_their_chunks() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let (b, n, d, count) = (3, 19, 37, 4);
    let x = randn(&mut rng, b * n * d);
    let y = randn(&mut rng, b * n * d);
    // Gates well into tanh's saturation as well as near 0.
    let emb: Vec<f32> = randn(&mut rng, b * count * d).iter().map(|v| v * 4.0).collect();
    let xt = gpu.upload_f32(&x, &[b, n, d]).unwrap();
    let yt = gpu.upload_f32(&y, &[b, n, d]).unwrap();
    let et = gpu.upload_f32(&emb, &[b, count * d]).unwrap();
    let chunk = |index| Chunk { index, count };
    let out = scale_only(&gpu, &xt, &et, chunk(2)).unwrap();
    let want = reference::scale_only(&x, &emb, b, d, count, 2);
    check("scale_only", &gpu.read_f32(&out).unwrap(), &want, 1e-5, seed);
    let out = tanh_gated_residual(&gpu, &xt, &yt, &et, chunk(3)).unwrap();
    let want = reference::gated_residual(&x, &y, &emb, b, d, count, 3, true);
    check(
        "tanh_gated_residual",
        &gpu.read_f32(&out).unwrap(),
        &want,
        1e-5,
        seed,
    );
}

#[test]
fn modulate_rejects_wrong_embedding() {
    let gpu = gpu();
    let x = gpu.upload_f32(&[0.0; 24], &[2, 3, 4]).unwrap();
    let emb = gpu.upload_f32(&[0.0; 16], &[2, 8]).unwrap();
    let err = modulate(
        &gpu,
        &x,
        &emb,
        Chunk { index: 0, count: 6 },
        Chunk { index: 1, count: 6 },
    )
    .unwrap_err();
    assert!(err.to_string().contains("is not [2, 6×4]"), "{err}");
}

/// f16 activations in and out of the gated residual and the modulation
/// (emb stays f32); mixed x and y dtypes are refused.
#[test]
fn modulate_f16_activations() {
    use ras::gpu::DType;
    let gpu = gpu();
    if !gpu.capabilities().shader_f16 {
        assert!(std::env::var("CI").is_err(), "CI's adapter has shader-f16");
        return;
    }
    let (mut rng, seed) = rng();
    let (b, l, d, count) = (2, 11, 40, 4);
    let half = |v: Vec<f32>| -> (Vec<u8>, Vec<f32>) {
        let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
        (
            bytemuck::cast_slice(&h).to_vec(),
            h.iter().map(|x| x.to_f32()).collect(),
        )
    };
    let (xb, x) = half(randn(&mut rng, b * l * d));
    let (yb, y) = half(randn(&mut rng, b * l * d));
    let emb = randn(&mut rng, b * count * d);
    let xt = gpu.upload_weight(&xb, &[b, l, d], DType::F16).unwrap();
    let yt = gpu.upload_weight(&yb, &[b, l, d], DType::F16).unwrap();
    let et = gpu.upload_f32(&emb, &[b, count * d]).unwrap();
    let chunk = |index| Chunk { index, count };
    let got = tanh_gated_residual(&gpu, &xt, &yt, &et, chunk(2)).unwrap();
    assert_eq!(got.dtype(), DType::F16);
    let want = reference::gated_residual(&x, &y, &emb, b, d, count, 2, true);
    check(
        "tanh gated residual f16",
        &gpu.read_f32(&got).unwrap(),
        &want,
        1e-3,
        seed,
    );
    let got = modulate(&gpu, &xt, &et, chunk(0), chunk(1)).unwrap();
    let want = reference::modulate(&x, &emb, b, d, count, 0, 1);
    check("modulate f16", &gpu.read_f32(&got).unwrap(), &want, 1e-3, seed);
    let yf = gpu.upload_f32(&y, &[b, l, d]).unwrap();
    let err = gated_residual(&gpu, &xt, &yf, &et, chunk(2))
        .unwrap_err()
        .to_string();
    assert!(err.contains("y must have x's dtype"), "{err}");
}
