use ras::kernels::patch::{patchify, unpatchify};
use ras::reference::patch as reference;

use crate::common::{check, gpu, randn, rng};

#[test]
fn patchify_and_unpatchify_match_reference() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    for (b, c, h, w, p) in [(2, 4, 8, 12, 2), (1, 3, 9, 6, 3)] {
        let x = randn(&mut rng, b * c * h * w);
        let xt = gpu.upload_f32(&x, &[b, c, h, w]).unwrap();
        let tokens = patchify(&gpu, &xt, p).unwrap();
        assert_eq!(tokens.shape(), [b, (h / p) * (w / p), c * p * p]);
        let want = reference::patchify(&x, b, c, h, w, p);
        check("patchify", &gpu.read_f32(&tokens).unwrap(), &want, 1e-7, seed);
        let back = unpatchify(&gpu, &tokens, c, h, w, p).unwrap();
        let want = reference::unpatchify(&want, b, c, h, w, p);
        check("unpatchify", &gpu.read_f32(&back).unwrap(), &want, 1e-7, seed);
    }
}
