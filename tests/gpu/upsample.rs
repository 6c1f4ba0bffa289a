use ras::kernels::upsample::upsample_nearest2x;
use ras::reference::upsample as reference;

use crate::common::{check, gpu, randn, rng};

#[test]
fn nearest2x_odd_sizes() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    // The second shape spans several workgroups with a ragged tail.
    for (b, c, h, w) in [(2, 3, 7, 5), (1, 5, 17, 31), (1, 1, 1, 1)] {
        let x = randn(&mut rng, b * c * h * w);
        let xt = gpu.upload_f32(&x, &[b, c, h, w]).unwrap();
        let out = upsample_nearest2x(&gpu, &xt).unwrap();
        assert_eq!(out.shape(), [b, c, 2 * h, 2 * w]);
        let got = gpu.read_f32(&out).unwrap();
        let want = reference::upsample_nearest2x(&x, b * c, h, w);
        check(&format!("upsample {b}x{c}x{h}x{w}"), &got, &want, 1e-5, seed);
        // A copy: anything but bit-exact is a bug.
        assert!(got == want, "upsample {b}x{c}x{h}x{w} is not exact (seed {seed})");
    }
}

#[test]
fn rejects_non_4d_input() {
    let gpu = gpu();
    let x = gpu.upload_f32(&[0.0; 12], &[3, 4]).unwrap();
    let e = upsample_nearest2x(&gpu, &x).unwrap_err().to_string();
    assert!(e.contains("input must be [B, C, H, W], got [3, 4]"), "{e}");
}
