use ras::kernels::sampler::{euler_step, Merge};
use ras::reference::sampler as reference;

use crate::common::{check, gpu, randn, rng};

#[test]
fn euler_step_with_cfg_and_merge() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let (b, c, h, w, p) = (2, 4, 6, 10, 2);
    let n = b * c * h * w;
    let tokens = (h / p) * (w / p);
    let x = randn(&mut rng, n);
    let v = randn(&mut rng, 2 * n);
    let cache = randn(&mut rng, n);
    let dropped: Vec<u32> = (0..b * tokens).map(|i| ((i * 7) % 3 == 0) as u32).collect();
    let xt = gpu.upload_f32(&x, &[b, c, h, w]).unwrap();
    let ct = gpu.upload_f32(&cache, &[b, c, h, w]).unwrap();
    let dt = gpu.upload_u32(&dropped, &[b, tokens]).unwrap();
    let cfg_v = gpu.upload_f32(&v, &[2 * b, c, h, w]).unwrap();
    let merge = Merge {
        v_cache: &ct,
        dropped: &dt,
        patch: p,
    };
    let (xn, vh) = euler_step(&gpu, &xt, &cfg_v, Some(7.0), -0.0372, Some(merge)).unwrap();
    let (want_x, want_v) =
        reference::euler_step(&x, &v, Some(7.0), -0.0372, Some((&cache, &dropped, p)), c, h, w);
    check(
        "v_hat cfg+merge",
        &gpu.read_f32(&vh).unwrap(),
        &want_v,
        1e-6,
        seed,
    );
    check(
        "x_next cfg+merge",
        &gpu.read_f32(&xn).unwrap(),
        &want_x,
        1e-6,
        seed,
    );
    let plain_v = gpu.upload_f32(&v[..n], &[b, c, h, w]).unwrap();
    let (xn, _) = euler_step(&gpu, &xt, &plain_v, None, -0.1, None).unwrap();
    let (want_x, _) = reference::euler_step(&x, &v[..n], None, -0.1, None, c, h, w);
    check("x_next plain", &gpu.read_f32(&xn).unwrap(), &want_x, 1e-6, seed);
}
