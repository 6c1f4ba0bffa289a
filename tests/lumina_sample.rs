//! RAS on Lumina-Next: `ras sample` against the Python re-enactment of the
//! original algorithm inside diffusers' LuminaPipeline loop
//! (tests/fixtures/make_lumina_ras.py), and dense sampling against
//! LuminaPipeline itself.

use std::path::{Path, PathBuf};

use ras::reference::rel_err;
use ras::weights::{load_f32, Weights};

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lumina_ras")
        .join(case)
}

/// `ras sample` on a fixture folder with the steps, guidance, shift and RAS
/// flags of its case.json.
fn run_sample(case: &str, out: &Path) {
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
    cmd.arg("--output").arg(out).arg("--save-active");
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

/// The `active_step_{i}` tensors of a file: (step, shape, i32 values).
fn active_sets(path: &Path) -> Vec<(usize, Vec<usize>, Vec<i32>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut sets: Vec<_> = file
        .tensors()
        .into_iter()
        .filter_map(|(name, t)| {
            let step = name.strip_prefix("active_step_")?.parse().ok()?;
            assert_eq!(t.dtype(), safetensors::Dtype::I32, "{name}");
            Some((step, t.shape().to_vec(), bytemuck::pod_collect_to_vec(t.data())))
        })
        .collect();
    sets.sort();
    sets
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
