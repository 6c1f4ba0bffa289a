//! RAS on the SD3 transformer: the sparse forward against the dense one,
//! and `ras sample` against the Python re-enactment of the original
//! algorithm (tests/fixtures/make_ras.py).

use std::path::{Path, PathBuf};

use ras::gpu::{Gpu, GpuOptions, Tensor};
use ras::models::sd3::{Sd3Inputs, Sd3Transformer, TokenPlan};
use ras::reference::rel_err;
use ras::weights::{load_f32, Weights};

#[path = "common/active.rs"]
mod active;
use active::active_sets;

fn sd3_fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sd3")
        .join(case)
}

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions {
        poison: true,
        ..Default::default()
    })
    .expect("a GPU adapter (without a GPU: apt-get install -y mesa-vulkan-drivers)")
}

struct Loaded {
    model: Sd3Transformer,
    x: Tensor,
    ctx: Tensor,
    pooled: Tensor,
    t: Vec<f32>,
}

fn load(gpu: &Gpu, case: &str) -> Loaded {
    let dir = sd3_fixture(case);
    let model = Sd3Transformer::load_dir(gpu, &dir.join("transformer")).unwrap();
    let file = Weights::from_files(&[dir.join("inputs.safetensors")]).unwrap();
    let up = |name| {
        let (v, s) = load_f32(&file, name).unwrap();
        gpu.upload_f32(&v, &s).unwrap()
    };
    let t = load_f32(&file, "timestep").unwrap().0;
    Loaded {
        x: up("hidden_states"),
        ctx: up("encoder_hidden_states"),
        pooled: up("pooled_projections"),
        model,
        t,
    }
}

impl Loaded {
    /// SD3's conditioning: the prompt tokens and pooled projection.
    fn cond(&self) -> ras::models::Conditioning {
        ras::models::Conditioning {
            tokens: self.ctx.clone(),
            pooled: Some(self.pooled.clone()),
            mask: None,
            text_weights: None,
        }
    }
}

/// Token `t`'s values of `[B, C, H, W]` for patch size 2, batch row `b`.
fn token_values(v: &[f32], shape: &[usize], b: usize, t: usize) -> Vec<f32> {
    let (c, h, w) = (shape[1], shape[2], shape[3]);
    let (r, col) = (t / (w / 2), t % (w / 2));
    let mut out = Vec::new();
    for ch in 0..c {
        for (py, px) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            out.push(v[((b * c + ch) * h + 2 * r + py) * w + 2 * col + px]);
        }
    }
    out
}

#[test]
fn sparse_forward_matches_dense_on_active_tokens() {
    let gpu = gpu();
    let m = load(&gpu, "f32_nonsquare_b2");
    let inputs = Sd3Inputs {
        hidden_states: &m.x,
        encoder_hidden_states: &m.ctx,
        pooled_projections: &m.pooled,
        timestep: &m.t,
        text_weights: None,
    };
    let (b, n, l) = m.model.token_counts(&inputs).unwrap();
    let dense = m.model.forward(&gpu, &inputs).unwrap();
    let want = gpu.read_f32(&dense).unwrap();
    let cache = m.model.kv_cache(&gpu, b, n, l).unwrap();

    // Every token active, over a cache holding garbage: equals dense.
    let all: Vec<Vec<u32>> = vec![(0..n as u32).collect(); b];
    let plan = TokenPlan::sparse(&gpu, n, l, &all).unwrap();
    let got = gpu
        .read_f32(
            &m.model
                .forward_planned(
                    &gpu,
                    &inputs,
                    &plan,
                    Some(&cache),
                    Default::default(),
                    Default::default(),
                )
                .unwrap(),
        )
        .unwrap();
    let err = rel_err(&got, &want);
    assert!(err < 1e-5, "all-active RAS step vs dense: {err:.3e}");

    // A third of the tokens, different per row, over the cache a dense
    // step filled from the same input, reusing that step's projected text
    // (the run memo): the active tokens equal dense.
    let memo = ras::models::RunMemo::default();
    m.model
        .forward_planned(
            &gpu,
            &inputs,
            &TokenPlan::dense(&gpu, b, n, l).unwrap(),
            Some(&cache),
            ras::models::Memos {
                run: Some(&memo),
                step: None,
            },
            Default::default(),
        )
        .unwrap();
    assert!(memo.bytes() > 0, "the dense step did not fill the memo");
    let active: Vec<Vec<u32>> = (0..b)
        .map(|r| {
            (0..n as u32)
                .filter(|t| (t + r as u32).is_multiple_of(3))
                .collect()
        })
        .collect();
    let plan = TokenPlan::sparse(&gpu, n, l, &active).unwrap();
    let got = gpu
        .read_f32(
            &m.model
                .forward_planned(
                    &gpu,
                    &inputs,
                    &plan,
                    Some(&cache),
                    ras::models::Memos {
                        run: Some(&memo),
                        step: None,
                    },
                    Default::default(),
                )
                .unwrap(),
        )
        .unwrap();
    let shape = dense.shape();
    for (r, toks) in active.iter().enumerate() {
        let (g, w): (Vec<f32>, Vec<f32>) = toks
            .iter()
            .flat_map(|&t| {
                token_values(&got, shape, r, t as usize)
                    .into_iter()
                    .zip(token_values(&want, shape, r, t as usize))
            })
            .unzip();
        let err = rel_err(&g, &w);
        assert!(err < 1e-5, "row {r}: active tokens vs dense {err:.3e}");
    }
}

fn ras_fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ras")
        .join(case)
}

/// `ras sample` on a fixture folder with the settings of its case.json,
/// except the flags in `extra`, which replace the case's.
fn run_sample(case: &str, extra: &[&str], out: &Path) -> PathBuf {
    let dir = ras_fixture(case);
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let arg = |k: &str| c[k].to_string();
    let resets: Vec<String> = c["error_reset_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ras"));
    cmd.arg("sample")
        .arg("--transformer")
        .arg(dir.join("transformer"));
    cmd.arg("--inputs")
        .arg(dir.join("inputs.safetensors"))
        .arg("--output")
        .arg(out)
        .arg("--save-active");
    for (flag, key) in [
        ("--steps", "steps"),
        ("--guidance", "guidance"),
        ("--shift", "shift"),
        ("--sample-ratio", "sample_ratio"),
        ("--high-ratio", "high_ratio"),
        ("--starvation-scale", "starvation_scale"),
        ("--scheduler-start-step", "scheduler_start_step"),
        ("--scheduler-end-step", "scheduler_end_step"),
        ("--skip-num-step", "skip_num_step"),
        ("--skip-num-step-length", "skip_num_step_length"),
    ] {
        if !extra.contains(&flag) {
            cmd.arg(flag).arg(arg(key));
        }
    }
    cmd.arg("--metric").arg(c["metric"].as_str().unwrap());
    cmd.arg("--error-reset-steps").arg(resets.join(","));
    cmd.args(extra).env("RUST_BACKTRACE", "0");
    let run = cmd.output().unwrap();
    assert!(
        run.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    out.to_owned()
}

fn latents(path: &Path) -> Vec<f32> {
    load_f32(&Weights::from_files(&[path.to_owned()]).unwrap(), "latents_final")
        .unwrap()
        .0
}

#[test]
fn ras_sample_matches_reference_runs() {
    let cases = [
        "std_hr03_static_nonsquare_b2",
        "l2_hr1_dynamic_square_b1",
        "std_hr03_starve_end_b2",
        "l2_hr1_static_b2",
        "dense_b2",
    ];
    let tmp = tempfile::tempdir().unwrap();
    for case in cases {
        let got = run_sample(case, &[], &tmp.path().join(format!("{case}.safetensors")));
        let want = ras_fixture(case).join("expected.safetensors");
        let err = rel_err(&latents(&got), &latents(&want));
        eprintln!("{case}: latents rel err {err:.3e}");
        assert!(err < 1e-3, "{case}: final latents differ by {err:.3e}");
        let (got, want) = (active_sets(&got), active_sets(&want));
        assert_eq!(
            got.iter().map(|a| a.0).collect::<Vec<_>>(),
            want.iter().map(|a| a.0).collect::<Vec<_>>()
        );
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{case}: active set of step {}", w.0);
        }
    }
}

#[test]
fn ratio_one_is_exactly_dense() {
    let tmp = tempfile::tempdir().unwrap();
    let case = "std_hr03_static_nonsquare_b2";
    let a = run_sample(case, &["--sample-ratio", "1"], &tmp.path().join("a.safetensors"));
    let b = run_sample(case, &["--dense"], &tmp.path().join("b.safetensors"));
    assert_eq!(latents(&a), latents(&b));
    assert!(active_sets(&a).is_empty(), "no RAS step at ratio 1");
    let ras = run_sample(case, &[], &tmp.path().join("c.safetensors"));
    assert!(
        rel_err(&latents(&ras), &latents(&a)) > 1e-3,
        "RAS at 0.5 must differ from dense"
    );
}

/// `--precision f16` (f16 activations and K/V cache) stays within 1e-2 of
/// the f32 run and of diffusers' reference run.
#[test]
fn f16_cache_stays_close_to_f32() {
    let gpu = gpu();
    if !gpu.capabilities().shader_f16 {
        assert!(std::env::var("CI").is_err(), "CI's adapter has shader-f16");
        return;
    }
    drop(gpu);
    let tmp = tempfile::tempdir().unwrap();
    for case in ["std_hr03_static_nonsquare_b2", "l2_hr1_dynamic_square_b1"] {
        let f32_run = run_sample(case, &[], &tmp.path().join(format!("{case}-f32.safetensors")));
        let f16_run = run_sample(
            case,
            &["--precision", "f16"],
            &tmp.path().join(format!("{case}-f16.safetensors")),
        );
        let want = latents(&ras_fixture(case).join("expected.safetensors"));
        let (a, b) = (latents(&f32_run), latents(&f16_run));
        let (vs_f32, vs_ref) = (rel_err(&b, &a), rel_err(&b, &want));
        eprintln!("{case}: f16 cache vs f32 {vs_f32:.3e}, vs reference {vs_ref:.3e}");
        assert!(
            vs_f32 < 1e-2 && vs_ref < 1e-2,
            "{case}: {vs_f32:.3e} / {vs_ref:.3e}"
        );
        assert!(
            vs_f32 > 0.0,
            "{case}: the f16 run is bit-identical; was the flag ignored?"
        );
    }
}

/// `Dit::prepare` (what the loop submits while the previous step's scores
/// come back) fills the step memo; the forward that reuses it gives the same
/// prediction with fewer launches, on SD3 (with and without qk-norm) and
/// on a sparse call.
#[test]
fn prepared_step_matches_unprepared() {
    use ras::models::{Dit, DitCall, Memos, RunMemo};
    let gpu = gpu();
    for case in ["f32_nonsquare_b2", "f32_qk_norm_b2"] {
        let m = load(&gpu, case);
        let cond = m.cond();
        let (b, h, w) = (m.x.shape()[0], m.x.shape()[2], m.x.shape()[3]);
        let n = (h / 2) * (w / 2);
        let active: Vec<Vec<u32>> = (0..b).map(|_| (0..n as u32).step_by(3).collect()).collect();
        let cache = m.model.kv_cache(&gpu, b, n, m.ctx.shape()[1]).unwrap();
        let dense_call = DitCall {
            latents: &m.x,
            timestep: &m.t,
            cond: &cond,
            active: None,
            cache: Some(&cache),
            memo: Memos::default(),
            precision: Default::default(),
        };
        Dit::forward(&m.model, &gpu, &dense_call).unwrap();
        let step = RunMemo::default();
        let call = |memo| DitCall {
            active: Some(&active),
            memo,
            ..dense_call
        };
        let plain_before = gpu.counters().dispatches;
        let plain = gpu
            .read_f32(&Dit::forward(&m.model, &gpu, &call(Memos::default())).unwrap())
            .unwrap();
        let plain_launches = gpu.counters().dispatches - plain_before;
        m.model
            .prepare(
                &gpu,
                &call(Memos {
                    run: None,
                    step: Some(&step),
                }),
            )
            .unwrap();
        assert!(step.bytes() > 0, "{case}: prepare left the step memo empty");
        let memo = Memos {
            run: None,
            step: Some(&step),
        };
        let before = gpu.counters().dispatches;
        let prepared = gpu
            .read_f32(&Dit::forward(&m.model, &gpu, &call(memo)).unwrap())
            .unwrap();
        let launches = gpu.counters().dispatches - before;
        // Bitwise: rows of tokens not computed hold the same poison NaN.
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&prepared), bits(&plain), "{case}: a prepared step differs");
        assert!(
            launches < plain_launches,
            "{case}: {launches} launches with the prepared values, {plain_launches} without"
        );
    }
}

/// f16 activations (`Precision::F16`) stay within 1e-2 of the f32 forward
/// on the tiny SD3 models (with and without qk-norm), dense and sparse.
#[test]
fn f16_activations_forward_within_1e_2() {
    use ras::models::{Dit, DitCall, Memos, Precision};
    let gpu = gpu();
    if !gpu.capabilities().shader_f16 {
        assert!(std::env::var("CI").is_err(), "CI's adapter has shader-f16");
        return;
    }
    for case in ["f32_nonsquare_b2", "f32_qk_norm_b2", "bf16_square_b1"] {
        let m = load(&gpu, case);
        let cond = m.cond();
        let (b, h, w) = (m.x.shape()[0], m.x.shape()[2], m.x.shape()[3]);
        let n = (h / 2) * (w / 2);
        let run = |precision: Precision| {
            let call = DitCall {
                latents: &m.x,
                timestep: &m.t,
                cond: &cond,
                active: None,
                cache: None,
                memo: Memos::default(),
                precision,
            };
            gpu.read_f32(&Dit::forward(&m.model, &gpu, &call).unwrap())
                .unwrap()
        };
        let (full, half) = (run(Precision::F32), run(Precision::F16));
        let err = rel_err(&half, &full);
        eprintln!("{case}: f16 activations vs f32: rel err {err:.3e}");
        assert!(err < 1e-2 && err > 0.0, "{case}: {err:.3e}");
        // Sparse, over an f16 cache a dense f16 call filled.
        let cache = m
            .model
            .kv_cache_in(&gpu, b, n, m.ctx.shape()[1], ras::gpu::DType::F16)
            .unwrap();
        let active: Vec<Vec<u32>> = (0..b).map(|_| (0..n as u32).step_by(2).collect()).collect();
        let call = |active| DitCall {
            latents: &m.x,
            timestep: &m.t,
            cond: &cond,
            active,
            cache: Some(&cache),
            memo: Memos::default(),
            precision: Precision::F16,
        };
        Dit::forward(&m.model, &gpu, &call(None)).unwrap();
        let sparse = gpu
            .read_f32(&Dit::forward(&m.model, &gpu, &call(Some(&active))).unwrap())
            .unwrap();
        let shape = [b, m.model.config.out_channels(), h, w];
        let (mut got, mut want) = (Vec::new(), Vec::new());
        for (r, toks) in active.iter().enumerate() {
            for &t in toks {
                got.extend(token_values(&sparse, &shape, r, t as usize));
                want.extend(token_values(&full, &shape, r, t as usize));
            }
        }
        let err = rel_err(&got, &want);
        eprintln!("{case}: sparse f16 vs dense f32 on the active tokens: {err:.3e}");
        assert!(err < 1e-2, "{case}: {err:.3e}");
    }
}
