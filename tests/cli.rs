//! The `ras generate` and `ras compare` commands end to end on the tiny
//! pipeline fixture (tests/fixtures/make_pipeline.py).

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "common/broken.rs"]
mod broken;
#[path = "common/png.rs"]
mod png_read;
use png_read::read_png;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pipeline")
        .join(path)
}

fn ras() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ras"))
}

#[test]
fn generate_from_given_latents_matches_diffusers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("img.png");
    let status = ras()
        .args(["generate", "--model"])
        .arg(fixture("model"))
        .args(["--prompt", "A red circle, on a blue background!"])
        .args(["--negative-prompt", "blurry, low quality"])
        .args([
            "--width",
            "56",
            "--height",
            "40",
            "--steps",
            "3",
            "--guidance",
            "4.5",
        ])
        .args(["--max-sequence-length", "24", "--dense", "--latents-init"])
        .arg(fixture("t5/inputs.safetensors"))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(fixture("t5/expected.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let want: Vec<i32> = bytemuck::pod_collect_to_vec(file.tensor("rgb").unwrap().data());
    let per_image = want.len() / 2;
    for i in 0..2 {
        let (rgb, params) = read_png(&dir.path().join(format!("img-{i}.png")));
        let mean = rgb
            .iter()
            .zip(&want[i * per_image..])
            .map(|(&g, &w)| (g as f32 - w as f32).abs())
            .sum::<f32>()
            / rgb.len() as f32;
        assert!(mean <= 1.0, "image {i}: mean |Δ| {mean}");
        assert!(params.contains("Latents: from file") && params.contains(&format!("Batch index: {i}")));
    }
}

#[test]
fn generate_rejects_bad_sizes_before_work() {
    let out = ras()
        .args(["generate", "--model"])
        .arg(fixture("model"))
        .args(["--prompt", "x", "--width", "50", "--height", "40"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("width 50 must be a positive multiple of 8"), "{err}");
}

/// `--max-gpu-memory` too small: refused before any work with the estimate
/// and what to change; no file; exit 1. A zero `--max-submit-ms` is a
/// usage error.
#[test]
fn device_budgets_are_checked_before_work() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("x.png");
    let out = ras()
        .args(["--max-gpu-memory", "1MiB", "generate", "--model"])
        .arg(fixture("model"))
        .args(["--prompt", "x", "--width", "40", "--height", "32", "-o"])
        .arg(&png)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("MiB of GPU memory") && err.contains("Try a smaller size"),
        "{err}"
    );
    assert!(!png.exists());

    let out = ras()
        .args(["generate", "--max-submit-ms", "0", "--prompt", "x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("positive number of milliseconds"), "{err}");
}

#[test]
fn compare_writes_images_and_gates_on_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        ras()
            .args(["compare", "--model"])
            .arg(fixture("model"))
            .args([
                "--prompt",
                "a red circle",
                "--width",
                "40",
                "--height",
                "32",
                "--steps",
                "8",
            ])
            .args([
                "--guidance",
                "3",
                "--max-sequence-length",
                "8",
                "--scheduler-start-step",
                "2",
            ])
            .args(["--error-reset-steps", "5", "--json", "--out-dir"])
            .arg(dir.path())
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--min-ssim", "0.5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &json["prompts"][0];
    assert!(
        row["ssim"].as_f64().unwrap() > 0.5 && row["ssim"].as_f64().unwrap() < 1.0,
        "{row}"
    );
    assert!(row["psnr_db"].as_f64().unwrap() > 10.0);
    assert!(row["speedup"].as_f64().unwrap() > 0.0);
    for f in ["dense.png", "ras.png", "diff.png", "compute.png"] {
        let (rgb, _) = read_png(&dir.path().join(f));
        assert_eq!(rgb.len(), 40 * 32 * 3, "{f}");
    }
    // An impossible bar fails the run (exit status 1).
    let out = run(&["--min-psnr", "1000"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["pass"],
        false
    );
    // At ratio 1 both runs are the same computation: identical images.
    let out = run(&["--sample-ratio", "1"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["prompts"][0]["ssim"].as_f64(), Some(1.0));
    assert!(
        json["prompts"][0]["psnr_db"].is_null(),
        "identical images have infinite PSNR"
    );
}

/// Ctrl-C during `generate` stops after the current step: exit status 130,
/// a message, the old output file untouched and no partial file beside it.
#[test]
fn interrupt_stops_generate_and_keeps_the_old_file() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("img.png");
    std::fs::write(&out, b"the user's old image").unwrap();
    let mut child = ras()
        .args(["generate", "--model"])
        .arg(fixture("model"))
        .args(["--prompt", "a red circle", "--width", "64", "--height", "64"])
        .args(["--steps", "400", "--dense", "-v", "-o"])
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let stepping = line.contains("step   2/");
        seen.push(line);
        if stepping {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("step   2/")),
        "no step was reported: {seen:?}"
    );
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:?}");
    assert_eq!(std::fs::read(&out).unwrap(), b"the user's old image");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["img.png"], "a partial file was left");
}

/// A user's error prints its message and causes, never a backtrace, even
/// with RUST_BACKTRACE=1.
#[test]
fn user_errors_print_no_backtrace() {
    let out = ras()
        .args(["generate", "--model"])
        .arg(fixture("model"))
        .args(["--prompt", "x", "--width", "100", "-o", "/nonexistent/x.png"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: ") && err.contains("positive multiple of"),
        "{err}"
    );
    assert!(!err.contains("backtrace") && !err.contains("Stack"), "{err}");
}

/// A transformer whose weights hold a NaN: generate stops at the first
/// step with an error naming the stage, writes no PNG and exits 1.
#[test]
fn nan_in_the_model_is_an_error_not_a_black_image() {
    let model = broken::broken_pipeline(&fixture("model"), |tensors| {
        let (_, dtype, _, bytes) = tensors
            .iter_mut()
            .find(|(name, ..)| name == "proj_out.bias")
            .expect("proj_out.bias");
        let nan: &[u8] = match dtype {
            safetensors::Dtype::F32 => &[0, 0, 0xc0, 0x7f],
            safetensors::Dtype::F16 => &[0, 0x7e],
            _ => &[0xc0, 0x7f],
        };
        bytes[..nan.len()].copy_from_slice(nan);
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("img.png");
    let run = ras()
        .args(["generate", "--model"])
        .arg(model.path())
        .args([
            "--prompt",
            "a red circle",
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "4",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(
        err.contains("NaN or infinity in the transformer output at step 1 of 4"),
        "{err}"
    );
    assert!(!out.exists(), "an image was written");
}
