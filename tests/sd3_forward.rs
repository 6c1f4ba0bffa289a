//! SD3 transformer parity: `ras forward` on the tiny diffusers fixtures
//! (tests/fixtures/make_sd3.py) against diffusers' own output, and clear
//! errors for broken weight folders.

use std::path::{Path, PathBuf};
use std::process::Command;

use ras::reference::rel_err;
use ras::weights::Weights;
use safetensors::tensor::serialize_to_file;

#[path = "common/broken.rs"]
mod broken;
use broken::broken_copy;

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sd3")
        .join(case)
}

fn forward(transformer: &Path, inputs: &Path, output: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ras"))
        .args(["forward", "--transformer"])
        .arg(transformer)
        .arg("--inputs")
        .arg(inputs)
        .arg("--output")
        .arg(output)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("running the ras binary")
}

fn sample(path: &Path) -> Vec<f32> {
    let w = Weights::from_files(&[path.to_owned()]).unwrap();
    let shape = w.shape("sample").expect("a `sample` tensor");
    w.get_host("sample", &shape).unwrap()
}

/// The reference of every case is diffusers' forward computed in f32 from
/// the stored weights (also for f16/bf16 checkpoints, whose weights the
/// engine keeps 16-bit and widens in the shader), so all cases hold to 1e-4.
#[test]
fn ras_forward_matches_diffusers() {
    let cases = [
        "f32_nonsquare_b2",
        "f32_square_b1",
        "f32_no_pos_table",
        "f16_nonsquare_b2",
        "bf16_square_b1",
        "f32_qk_norm_b2",
    ];
    let dir = tempfile::tempdir().unwrap();
    for case in cases {
        let out = dir.path().join(format!("{case}.safetensors"));
        let run = forward(
            &fixture(case).join("transformer"),
            &fixture(case).join("inputs.safetensors"),
            &out,
        );
        assert!(
            run.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let err = rel_err(&sample(&out), &sample(&fixture(case).join("outputs.safetensors")));
        eprintln!("{case}: rel err {err:.3e}");
        assert!(
            err < 1e-4,
            "{case}: relative error {err:.3e} against diffusers exceeds 1e-4"
        );
    }
}

fn forward_error(transformer: &Path) -> String {
    let out = transformer.join("out.safetensors");
    let run = forward(
        transformer,
        &fixture("f32_square_b1").join("inputs.safetensors"),
        &out,
    );
    assert!(!run.status.success(), "a broken folder must fail");
    String::from_utf8_lossy(&run.stderr).into_owned()
}

#[test]
fn missing_key_is_named() {
    let dir = broken_copy(&fixture("f32_square_b1").join("transformer"), |t| {
        t.retain(|(n, ..)| n != "transformer_blocks.1.attn.to_k.bias")
    });
    let err = forward_error(dir.path());
    assert!(
        err.contains("missing tensor 'transformer_blocks.1.attn.to_k.bias'"),
        "{err}"
    );
}

#[test]
fn wrong_shape_is_named() {
    let dir = broken_copy(&fixture("f32_square_b1").join("transformer"), |t| {
        let w = t.iter_mut().find(|(n, ..)| n == "proj_out.weight").unwrap();
        w.2 = vec![w.2[1], w.2[0]];
    });
    let err = forward_error(dir.path());
    assert!(
        err.contains("'proj_out.weight'") && err.contains("has shape [32, 16], expected [16, 32]"),
        "{err}"
    );
}

#[test]
fn truncated_file_is_reported() {
    let src = fixture("f32_square_b1").join("transformer");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("diffusion_pytorch_model.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("diffusion_pytorch_model.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let err = forward_error(dir.path());
    assert!(
        err.contains("not a valid safetensors file") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn sharded_checkpoint_loads_like_a_single_file() {
    let case = fixture("f32_nonsquare_b2");
    let src = case.join("transformer");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("diffusion_pytorch_model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = file.names().into_iter().map(str::to_owned).collect();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let mut map = serde_json::Map::new();
    for (shard, part) in [
        ("model-00001-of-00002.safetensors", first),
        ("model-00002-of-00002.safetensors", second),
    ] {
        let views = part.iter().map(|n| (n.clone(), file.tensor(n).unwrap()));
        serialize_to_file(views, None, &dir.path().join(shard)).unwrap();
        for n in part {
            map.insert(n.clone(), shard.into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(
        dir.path().join("diffusion_pytorch_model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let out = dir.path().join("out.safetensors");
    let run = forward(dir.path(), &case.join("inputs.safetensors"), &out);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let err = rel_err(&sample(&out), &sample(&case.join("outputs.safetensors")));
    assert!(err < 1e-4, "sharded: relative error {err:.3e}");
}
