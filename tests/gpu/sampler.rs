use ras::kernels::sampler::{euler_step, Combine, Merge};
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
    let combine = Combine::cfg(Some(7.0));
    let (xn, vh) = euler_step(&gpu, &xt, &cfg_v, combine, -0.0372, Some(merge)).unwrap();
    let (want_x, want_v) =
        reference::euler_step(&x, &v, c, combine, -0.0372, Some((&cache, &dropped, p)), c, h, w);
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
    let (xn, _) = euler_step(&gpu, &xt, &plain_v, Combine::cfg(None), -0.1, None).unwrap();
    let (want_x, _) = reference::euler_step(&x, &v[..n], c, Combine::cfg(None), -0.1, None, c, h, w);
    check("x_next plain", &gpu.read_f32(&xn).unwrap(), &want_x, 1e-6, seed);
}

/// Lumina's rule: [cond, uncond] rows, guidance on the first three
/// channels only, negated, from an output with twice the latent channels
/// (learned sigma), with and without guidance.
#[test]
fn euler_step_lumina_rule() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let (b, c, h, w, p) = (2, 4, 6, 10, 2);
    let (n, vc) = (b * c * h * w, 2 * c);
    let tokens = (h / p) * (w / p);
    let x = randn(&mut rng, n);
    let v = randn(&mut rng, 2 * b * vc * h * w);
    let cache = randn(&mut rng, n);
    let dropped: Vec<u32> = (0..b * tokens).map(|i| (i % 4 == 1) as u32).collect();
    let xt = gpu.upload_f32(&x, &[b, c, h, w]).unwrap();
    let ct = gpu.upload_f32(&cache, &[b, c, h, w]).unwrap();
    let dt = gpu.upload_u32(&dropped, &[b, tokens]).unwrap();
    for guidance in [Some(4.0), None] {
        let rows = if guidance.is_some() { 2 * b } else { b };
        let vals = &v[..rows * vc * h * w];
        let vt = gpu.upload_f32(vals, &[rows, vc, h, w]).unwrap();
        let combine = Combine {
            guidance,
            cond_first: true,
            guided_channels: 3,
            negate: true,
        };
        let merge = Merge {
            v_cache: &ct,
            dropped: &dt,
            patch: p,
        };
        let (xn, vh) = euler_step(&gpu, &xt, &vt, combine, -0.05, Some(merge)).unwrap();
        let (want_x, want_v) =
            reference::euler_step(&x, vals, vc, combine, -0.05, Some((&cache, &dropped, p)), c, h, w);
        let what = format!("lumina rule, guidance {guidance:?}");
        check(
            &format!("v_hat {what}"),
            &gpu.read_f32(&vh).unwrap(),
            &want_v,
            1e-6,
            seed,
        );
        check(
            &format!("x_next {what}"),
            &gpu.read_f32(&xn).unwrap(),
            &want_x,
            1e-6,
            seed,
        );
    }
}
