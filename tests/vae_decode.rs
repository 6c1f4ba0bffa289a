//! The VAE decoder against diffusers' `AutoencoderKL.decode` on tiny random
//! models (tests/fixtures/make_vae.py), including the 8-bit conversion.

use std::path::Path;

use ras::gpu::{Gpu, GpuOptions};
use ras::models::vae::{to_rgb8, VaeDecoder};
use ras::reference::rel_err;
use ras::weights::{load_f32, Weights};

#[test]
fn vae_decode_matches_diffusers() {
    let gpu = Gpu::new(&GpuOptions {
        poison: true,
        ..Default::default()
    })
    .expect("a GPU adapter (without a GPU: apt-get install -y mesa-vulkan-drivers)");
    for case in ["sd3_nonsquare_b2", "sdxl_square_b1"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/vae")
            .join(case);
        let vae = VaeDecoder::load_dir(&gpu, &dir.join("vae")).unwrap();
        let (latents, shape) = load_f32(
            &Weights::from_files(&[dir.join("inputs.safetensors")]).unwrap(),
            "latents",
        )
        .unwrap();
        let image = vae
            .decode(&gpu, &gpu.upload_f32(&latents, &shape).unwrap())
            .unwrap();
        let f = vae.config.scale_factor();
        assert_eq!(image.shape(), [shape[0], 3, shape[2] * f, shape[3] * f]);
        let outputs = Weights::from_files(&[dir.join("outputs.safetensors")]).unwrap();
        let got = gpu.read_f32(&image).unwrap();
        let (want, _) = load_f32(&outputs, "image").unwrap();
        let err = rel_err(&got, &want);
        eprintln!("{case}: image rel err {err:.3e}");
        assert!(err < 1e-4, "{case}: decoded image differs by {err:.3e}");
        // 8-bit output: diffusers' rounding, so at most one unit where a
        // value sits on a rounding edge.
        let bytes = std::fs::read(dir.join("outputs.safetensors")).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let want_rgb: Vec<i32> = bytemuck::pod_collect_to_vec(file.tensor("rgb").unwrap().data());
        let rgb = to_rgb8(&got, shape[0], shape[2] * f, shape[3] * f);
        let max = rgb
            .iter()
            .zip(&want_rgb)
            .map(|(&a, &b)| (a as i32 - b).abs())
            .max()
            .unwrap();
        assert!(max <= 1, "{case}: 8-bit image differs by up to {max}");
    }
}
