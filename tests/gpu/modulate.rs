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
