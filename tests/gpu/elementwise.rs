use ras::kernels::elementwise::{self, Unary};
use ras::reference::elementwise as reference;

use crate::common::{check, gpu, randn, rng};

#[test]
fn add_and_mul_broadcast() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let (b, n, d) = (3, 67, 45);
    let x = randn(&mut rng, b * n * d);
    let same = randn(&mut rng, b * n * d);
    let row = randn(&mut rng, d);
    let per_batch = randn(&mut rng, b * d);
    let per_token = randn(&mut rng, n * d);
    let xt = gpu.upload_f32(&x, &[b, n, d]).unwrap();
    let cases: [(&str, &[f32], &[usize], (usize, usize, usize)); 4] = [
        ("same shape", &same, &[b, n, d], (b * n * d, b * n * d, 0)),
        ("row vector", &row, &[d], (d, b * n * d, 0)),
        ("per batch", &per_batch, &[b, 1, d], (d, n * d, d)),
        ("repeated over batch", &per_token, &[n, d], (n * d, b * n * d, 0)),
    ];
    for (name, y, shape, (inner, period, stride)) in cases {
        let yt = gpu.upload_f32(y, shape).unwrap();
        let sum = elementwise::add(&gpu, &xt, &yt).unwrap();
        let prod = elementwise::mul(&gpu, &xt, &yt).unwrap();
        let want_sum = reference::broadcast(&x, y, inner, period, stride, |a, b| a + b);
        let want_prod = reference::broadcast(&x, y, inner, period, stride, |a, b| a * b);
        check(
            &format!("add {name}"),
            &gpu.read_f32(&sum).unwrap(),
            &want_sum,
            1e-5,
            seed,
        );
        check(
            &format!("mul {name}"),
            &gpu.read_f32(&prod).unwrap(),
            &want_prod,
            1e-5,
            seed,
        );
    }
}

#[test]
fn add_rejects_mismatched_shapes() {
    let gpu = gpu();
    let a = gpu.upload_f32(&[0.0; 12], &[3, 4]).unwrap();
    let b = gpu.upload_f32(&[0.0; 5], &[5]).unwrap();
    let err = elementwise::add(&gpu, &a, &b).unwrap_err().to_string();
    assert!(err.contains("cannot broadcast [5] onto [3, 4]"), "{err}");
}

#[test]
fn unary_ops_and_scale() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    // 70_001 elements: 274 workgroups with a ragged tail; ×4 widens the
    // range into the saturated tails of the activations.
    let x: Vec<f32> = randn(&mut rng, 70_001).iter().map(|v| v * 4.0).collect();
    let xt = gpu.upload_f32(&x, &[70_001]).unwrap();
    let cases: [(Unary, fn(f32) -> f32); 4] = [
        (Unary::GeluTanh, reference::gelu_tanh),
        (Unary::GeluErf, reference::gelu_erf),
        (Unary::Silu, reference::silu),
        (Unary::QuickGelu, reference::quick_gelu),
    ];
    for (op, f) in cases {
        let out = elementwise::unary(&gpu, op, &xt).unwrap();
        let want: Vec<f32> = x.iter().map(|&v| f(v)).collect();
        check(
            &format!("{op:?}"),
            &gpu.read_f32(&out).unwrap(),
            &want,
            1e-5,
            seed,
        );
    }
    let out = elementwise::scale(&gpu, &xt, -0.37).unwrap();
    let want: Vec<f32> = x.iter().map(|&v| (v as f64 * -0.37f64) as f32).collect();
    check("scale", &gpu.read_f32(&out).unwrap(), &want, 1e-5, seed);
    let out = elementwise::affine(&gpu, &xt, 1.0 / 1.5305, 0.0609).unwrap();
    let want: Vec<f32> = x.iter().map(|&v| (v as f64 / 1.5305 + 0.0609) as f32).collect();
    check("affine", &gpu.read_f32(&out).unwrap(), &want, 1e-5, seed);
}
