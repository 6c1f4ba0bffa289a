//! CLIP-L, OpenCLIP bigG and T5 encoders against transformers on tiny random
//! models (tests/fixtures/make_text.py).

use std::path::{Path, PathBuf};

use ras::gpu::{Gpu, GpuOptions};
use ras::models::text::{ClipTextModel, T5Encoder};
use ras::reference::rel_err;
use ras::weights::{load_f32, Weights};

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/text")
        .join(name)
}

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions {
        poison: true,
        ..Default::default()
    })
    .expect("a GPU adapter (without a GPU: apt-get install -y mesa-vulkan-drivers)")
}

fn ids(name: &str) -> Vec<Vec<u32>> {
    let bytes = std::fs::read(dir(name).join("inputs.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = file.tensor("input_ids").unwrap();
    let flat: Vec<i32> = bytemuck::pod_collect_to_vec(t.data());
    flat.chunks(t.shape()[1])
        .map(|r| r.iter().map(|&v| v as u32).collect())
        .collect()
}

fn expected(name: &str, key: &str) -> Vec<f32> {
    load_f32(
        &Weights::from_files(&[dir(name).join("outputs.safetensors")]).unwrap(),
        key,
    )
    .unwrap()
    .0
}

#[test]
fn clip_encoders_match_transformers() {
    let gpu = gpu();
    for name in ["clip_l", "clip_g"] {
        let model = ClipTextModel::load_dir(&gpu, &dir(name)).unwrap();
        let out = model.forward(&gpu, &ids(name)).unwrap();
        let err = rel_err(
            &gpu.read_f32(&out.penultimate).unwrap(),
            &expected(name, "penultimate"),
        );
        assert!(err < 1e-4, "{name} penultimate: {err:.3e}");
        let err = rel_err(
            &gpu.read_f32(&out.pooled).unwrap(),
            &expected(name, "text_embeds"),
        );
        assert!(err < 1e-4, "{name} pooled: {err:.3e}");
    }
}

#[test]
fn t5_encoder_matches_transformers() {
    let gpu = gpu();
    let model = T5Encoder::load_dir(&gpu, &dir("t5")).unwrap();
    let out = model.forward(&gpu, &ids("t5")).unwrap();
    let err = rel_err(&gpu.read_f32(&out).unwrap(), &expected("t5", "last_hidden_state"));
    assert!(err < 1e-4, "t5: {err:.3e}");
}

#[test]
fn t5_buckets_match_transformers_table() {
    use ras::models::text::t5::bucket;
    // transformers' _relative_position_bucket(bidirectional, 32 buckets, 128).
    let cases = [
        (0, 0),
        (1, 17),
        (-1, 1),
        (7, 23),
        (8, 24),
        (-8, 8),
        (16, 26),
        (-20, 10),
        (100, 31),
        (-127, 15),
        (500, 31),
    ];
    for (rel, want) in cases {
        assert_eq!(bucket(rel, 32, 128), want, "relative position {rel}");
    }
}
