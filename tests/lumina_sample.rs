//! RAS on Lumina-Next: `ras sample` against the Python re-enactment of the
//! original algorithm inside diffusers' LuminaPipeline loop
//! (tests/fixtures/make_lumina_ras.py), and dense sampling against
//! LuminaPipeline itself.

use std::path::{Path, PathBuf};

use ras::reference::rel_err;
use ras::weights::{load_f32, Weights};

#[path = "common/active.rs"]
mod active;
use active::active_sets;

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lumina_ras")
        .join(case)
}

/// `ras sample` on a fixture folder with the steps, guidance, shift and RAS
/// flags of its case.json.
fn run_sample(case: &str, out: &Path) {
    run_sample_with(case, &[], out)
}

/// [`run_sample`] with more flags.
fn run_sample_with(case: &str, extra: &[&str], out: &Path) {
    let dir = fixture(case);
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ras"));
    cmd.arg("sample")
        .arg("--transformer")
        .arg(dir.join("transformer"))
        .arg("--inputs")
        .arg(dir.join("inputs.safetensors"));
    for key in ["steps", "guidance", "shift"] {
        cmd.arg(format!("--{key}")).arg(c[key].to_string());
    }
    for (flag, value) in c["flags"].as_object().unwrap() {
        // Strings (the metric, the reset list) go in bare, numbers as JSON prints them.
        let value = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
        cmd.arg(flag).arg(value);
    }
    cmd.arg("--output").arg(out).arg("--save-active").args(extra);
    let run = cmd.env("RUST_BACKTRACE", "0").output().unwrap();
    assert!(
        run.status.success(),
        "{case}: ras sample failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
}

fn latents(path: &Path) -> (Vec<f32>, Vec<usize>) {
    load_f32(&Weights::from_files(&[path.to_owned()]).unwrap(), "latents_final").unwrap()
}

#[test]
fn lumina_ras_sample_matches_reference_runs() {
    let cases = [
        "std_hr03_static_b1",
        "l2_hr1_dynamic_576_b1",
        "std_hr05_dynamic_end_starve_b2",
        "l2_hr03_static_nonsquare_shift3_b1",
        "std_hr1_nocfg_b2",
        "dense_b2",
    ];
    let tmp = tempfile::tempdir().unwrap();
    for case in cases {
        let got = tmp.path().join(format!("{case}.safetensors"));
        run_sample(case, &got);
        let want = fixture(case).join("expected.safetensors");
        let ((g, g_shape), (w, w_shape)) = (latents(&got), latents(&want));
        assert_eq!(g_shape, w_shape, "{case}: latents_final shape");
        let err = rel_err(&g, &w);
        eprintln!("{case}: latents rel err {err:.3e}");
        assert!(err < 1e-3, "{case}: final latents differ by {err:.3e}");
        let (got, want) = (active_sets(&got), active_sets(&want));
        assert_eq!(
            got.iter().map(|a| a.0).collect::<Vec<_>>(),
            want.iter().map(|a| a.0).collect::<Vec<_>>(),
            "{case}: RAS steps"
        );
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{case}: active set of step {}", w.0);
        }
    }
}

/// A schedule that leaves a RAS step nothing to compute is a clear error,
/// not a crash (ras-spec §9).
#[test]
fn a_ras_step_without_tokens_is_an_error() {
    let dir = fixture("std_hr03_static_b1");
    let tmp = tempfile::tempdir().unwrap();
    // 256 tokens: skips of 192 + 64·(group − 2), groups of 3 steps, reach
    // all 256 at step 9.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_ras"))
        .arg("sample")
        .arg("--transformer")
        .arg(dir.join("transformer"))
        .arg("--inputs")
        .arg(dir.join("inputs.safetensors"))
        .args([
            "--steps",
            "10",
            "--scheduler-start-step",
            "2",
            "--error-reset-steps",
            "",
        ])
        .args([
            "--sample-ratio",
            "0.25",
            "--skip-num-step",
            "64",
            "--skip-num-step-length",
            "3",
        ])
        .arg("--output")
        .arg(tmp.path().join("out.safetensors"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("RAS step 9 would compute no image token"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `--precision f16` (the K/V cache in f16) stays within 1e-2 of the f32
/// run on Lumina too (grouped K/V heads, keys after RoPE).
#[test]
fn lumina_f16_cache_stays_close_to_f32() {
    let gpu = ras::gpu::Gpu::new(&Default::default()).expect("a GPU adapter");
    if !gpu.capabilities().shader_f16 {
        assert!(std::env::var("CI").is_err(), "CI's adapter has shader-f16");
        return;
    }
    drop(gpu);
    let tmp = tempfile::tempdir().unwrap();
    let case = "std_hr05_dynamic_end_starve_b2";
    let (a, b) = (
        tmp.path().join("f32.safetensors"),
        tmp.path().join("f16.safetensors"),
    );
    run_sample(case, &a);
    run_sample_with(case, &["--precision", "f16"], &b);
    let err = rel_err(&latents(&b).0, &latents(&a).0);
    eprintln!("{case}: f16 cache vs f32 {err:.3e}");
    assert!(err < 1e-2 && err > 0.0, "{case}: {err:.3e}");
}
