//! `ras generate` on a complete tiny Lumina-Next folder against diffusers'
//! `LuminaPipeline` from the same initial latents
//! (tests/fixtures/make_gemma.py writes the folder and the images), and the
//! step-by-step `Job` on it.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;

use ras::pipeline::{Pipeline, PipelineOptions};

#[path = "common/png.rs"]
mod png_read;
use png_read::read_png;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lumina_pipeline")
        .join(path)
}

/// Runs one fixture case through `ras generate` (dense, from its latents)
/// and checks every image against diffusers' within one 8-bit level.
fn check_case(case: &str) {
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{case}.json"))).unwrap()).unwrap();
    let arg = |k: &str| settings[k].to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("img.png");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ras"));
    cmd.args(["generate", "--model"])
        .arg(fixture("model"))
        .args(["--prompt", settings["prompt"].as_str().unwrap()])
        .args(["--width", &arg("width"), "--height", &arg("height")])
        .args(["--steps", &arg("num_inference_steps")])
        .args(["--guidance", &arg("guidance_scale")])
        .args(["--max-sequence-length", &arg("max_sequence_length")])
        .args(["--sample-ratio", "1", "--latents-init"])
        .arg(fixture(&format!("{case}.safetensors")))
        .arg("-o")
        .arg(&out);
    if let Some(negative) = settings["negative_prompt"].as_str() {
        cmd.args(["--negative-prompt", negative]);
    }
    let result = cmd.output().unwrap();
    assert!(
        result.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let bytes = std::fs::read(fixture(&format!("{case}.safetensors"))).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let want = file.tensor("image").unwrap();
    let count = want.shape()[0];
    let per_image = want.data().len() / count;
    for i in 0..count {
        let path = match count {
            1 => out.clone(),
            _ => dir.path().join(format!("img-{i}.png")),
        };
        let (rgb, params) = read_png(&path);
        assert_eq!(rgb.len(), per_image, "{case}: image {i} size");
        let worst = rgb
            .iter()
            .zip(&want.data()[i * per_image..(i + 1) * per_image])
            .map(|(&g, &w)| g.abs_diff(w))
            .max()
            .unwrap();
        eprintln!("{case}: image {i}: max |Δ| {worst} levels");
        assert!(worst <= 1, "{case}: image {i}: max |Δ| {worst} levels");
        assert!(
            params.contains("Latents: from file") && !params.contains("T5:"),
            "{params}"
        );
    }
}

#[test]
fn square_native_size_matches_diffusers() {
    check_case("square");
}

#[test]
fn non_square_matches_diffusers() {
    check_case("wide");
}

#[test]
fn prompt_longer_than_max_sequence_length_matches_diffusers() {
    check_case("long");
}

#[test]
fn unguided_batch_matches_diffusers() {
    check_case("unguided");
}

#[test]
fn negative_prompt_matches_diffusers() {
    check_case("negative");
}

/// The embedding API on a Lumina model: step by step with RAS and previews
/// gives what `generate` gives.
#[test]
fn lumina_job_steps_with_ras_match_generate() {
    let gpu = ras::gpu::Gpu::new(&Default::default()).unwrap();
    let model = fixture("model");
    let mut pipeline = Pipeline::load(&gpu, model.to_str().unwrap(), PipelineOptions::default()).unwrap();
    let mut req = pipeline.request("a red circle on a blue background");
    assert_eq!((req.steps, req.guidance), (30, 4.0), "LuminaPipeline's defaults");
    req.steps = 8;
    // A static schedule: the example's dynamic one floors skip counts to
    // multiples of 64, more than this 64-token image has to skip.
    req.ras = ras::ras::RasConfig {
        scheduler_start_step: 2,
        error_reset_steps: vec![5],
        skip_num_step_length: 0,
        ..pipeline.ras_defaults(&req)
    };
    let whole = pipeline.generate(&req, |_| ControlFlow::Continue(())).unwrap();
    let (w, h) = (req.width, req.height);
    let mut job = pipeline.start(&req).unwrap();
    let mut kinds = Vec::new();
    while !job.is_done() {
        kinds.push(job.step().unwrap().kind);
        let preview = job.preview().unwrap();
        assert_eq!((preview[0].width, preview[0].height), (w / 8, h / 8));
    }
    assert!(kinds.contains(&ras::ras::StepKind::Ras), "{kinds:?}");
    let stepped = job.finish().unwrap();
    assert_eq!(
        stepped.images[0], whole.images[0],
        "step-by-step differs from generate()"
    );
    assert!(!whole.active.is_empty() && whole.kv_cache_bytes > 0);
}

/// `ras compare` takes a Lumina model unchanged.
#[test]
fn compare_runs_on_lumina() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ras"))
        .args(["compare", "--model"])
        .arg(fixture("model"))
        .args(["--prompt", "a red circle", "--width", "64", "--height", "48"])
        .args([
            "--steps",
            "8",
            "--scheduler-start-step",
            "2",
            "--error-reset-steps",
            "5",
        ])
        .args(["--skip-num-step-length", "0", "--json", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["guidance"].as_f64(), Some(4.0), "Lumina's default guidance");
    let row = &json["prompts"][0];
    let ssim = row["ssim"].as_f64().unwrap();
    assert!(ssim > 0.0 && ssim < 1.0, "{row}");
    for f in ["dense.png", "ras.png", "diff.png", "compute.png"] {
        let (rgb, _) = read_png(&dir.path().join(f));
        assert_eq!(rgb.len(), 64 * 48 * 3, "{f}");
    }
}

/// Settings Lumina cannot honour are refused before any work.
#[test]
fn bad_lumina_requests_fail_before_work() {
    let out = Command::new(env!("CARGO_BIN_EXE_ras"))
        .args(["generate", "--model"])
        .arg(fixture("model"))
        .args(["--prompt", "x", "--max-sequence-length", "12"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--max-sequence-length 12 must be a multiple of 8"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ras"))
        .args(["generate", "--model"])
        .arg(fixture("model"))
        .args(["--prompt", "x", "--width", "72"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("width 72 must be a positive multiple of 16"),
        "{err}"
    );
}
