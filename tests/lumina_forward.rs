//! Lumina-Next transformer parity: `ras forward`'s `forward_files` on the tiny diffusers
//! fixtures (tests/fixtures/make_lumina.py) against diffusers' own output,
//! RAS-sparse calls against dense ones, and clear errors for broken weight
//! folders and inputs.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use ras::gpu::{Gpu, GpuOptions, Tensor};
use ras::models::dit::{Conditioning, DitCall};
use ras::models::lumina::{LuminaOptions, LuminaTransformer};
use ras::pipeline::forward_files;
use ras::reference::rel_err;
use ras::weights::{load_f32, Weights};

#[path = "common/broken.rs"]
mod broken;
use broken::broken_copy;

/// One device for the binary, its buffers poisoned with NaN; tests take
/// turns (lavapipe already uses every core).
fn gpu() -> MutexGuard<'static, Gpu> {
    static GPU: OnceLock<Mutex<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        let options = GpuOptions {
            poison: true,
            ..Default::default()
        };
        Mutex::new(
            Gpu::new(&options)
                .expect("a GPU adapter (without a GPU: apt-get install -y mesa-vulkan-drivers)"),
        )
    })
    .lock()
    .unwrap_or_else(|p| p.into_inner())
}

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lumina")
        .join(case)
}

fn read(path: &Path, name: &str) -> (Vec<f32>, Vec<usize>) {
    load_f32(&Weights::from_files(&[path.to_owned()]).unwrap(), name).unwrap()
}

const CASES: [&str; 3] = [
    "f32_hd12_scaled_b2",
    "f32_hd12_nonsquare_ntk_b2",
    "bf16_hd72_shared_q_b2",
];

/// The reference of every case is diffusers' forward computed in f32 from
/// the stored weights (also for the bf16 checkpoint, whose weights the
/// engine keeps 16-bit and widens in the shader), so all cases hold to 1e-4.
#[test]
fn forward_files_matches_diffusers() {
    let gpu = gpu();
    let dir = tempfile::tempdir().unwrap();
    for case in CASES {
        let model = LuminaTransformer::load_dir(&gpu, &fixture(case).join("transformer")).unwrap();
        assert_eq!(model.shares_query(), case.contains("shared_q"), "{case}");
        let out = dir.path().join(format!("{case}.safetensors"));
        forward_files(&gpu, &model, &fixture(case).join("inputs.safetensors"), &out).unwrap();
        let (got, shape) = read(&out, "sample");
        let (want, want_shape) = read(&fixture(case).join("outputs.safetensors"), "sample");
        assert_eq!(shape, want_shape, "{case}");
        let err = rel_err(&got, &want);
        eprintln!("{case}: rel err {err:.3e}");
        assert!(
            err < 1e-4,
            "{case}: relative error {err:.3e} against diffusers exceeds 1e-4"
        );
    }
}

/// The CLI contract: `ras forward` picks the Lumina model from the
/// folder's config.json and gives diffusers' output.
#[test]
fn ras_forward_command_matches_diffusers() {
    let case = CASES[1];
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_ras"))
        .arg("forward")
        .arg("--transformer")
        .arg(fixture(case).join("transformer"))
        .arg("--inputs")
        .arg(fixture(case).join("inputs.safetensors"))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (got, _) = read(&out, "sample");
    let (want, _) = read(&fixture(case).join("outputs.safetensors"), "sample");
    let err = rel_err(&got, &want);
    assert!(
        err < 1e-4,
        "{case}: relative error {err:.3e} against diffusers exceeds 1e-4"
    );
}

/// One call's inputs, uploaded.
struct Inputs {
    latents: Tensor,
    timestep: Vec<f32>,
    cond: Conditioning,
}

fn inputs(gpu: &Gpu, case: &str) -> Inputs {
    let path = fixture(case).join("inputs.safetensors");
    let (x, xs) = read(&path, "hidden_states");
    let (cap, cs) = read(&path, "encoder_hidden_states");
    Inputs {
        latents: gpu.upload_f32(&x, &xs).unwrap(),
        timestep: read(&path, "timestep").0,
        cond: Conditioning {
            tokens: gpu.upload_f32(&cap, &cs).unwrap(),
            pooled: None,
            mask: Some(read(&path, "encoder_mask").0),
            text_weights: None,
        },
    }
}

fn call<'a>(
    i: &'a Inputs,
    active: Option<&'a [Vec<u32>]>,
    cache: Option<&'a ras::models::KvCache>,
) -> DitCall<'a> {
    DitCall {
        latents: &i.latents,
        timestep: &i.timestep,
        cond: &i.cond,
        active,
        cache,
        memo: Default::default(),
        precision: Default::default(),
    }
}

#[test]
fn options_match_the_pipeline() {
    let gpu = gpu();
    let case = "f32_hd12_scaled_b2";
    let mut model = LuminaTransformer::load_dir(&gpu, &fixture(case).join("transformer")).unwrap();
    // As in make_lumina.py's OPTIONS: the first row's t = 0.3 is past this
    // watershed (NTK scaling), and no proportional attention.
    model.options = LuminaOptions {
        scaling_watershed: 0.2,
        proportional_attn: false,
    };
    let i = inputs(&gpu, case);
    let out = model.forward(&gpu, &call(&i, None, None)).unwrap();
    let (want, _) = read(&fixture(case).join("outputs.safetensors"), "sample_options");
    let err = rel_err(&gpu.read_f32(&out).unwrap(), &want);
    eprintln!("{case} with options: rel err {err:.3e}");
    assert!(
        err < 1e-4,
        "relative error {err:.3e} against diffusers exceeds 1e-4"
    );
}

/// Output values `[B, C, H, W]` at the pixels of each row's `active`
/// tokens (patch `p`), in a fixed order.
fn at_tokens(out: &[f32], shape: &[usize], p: usize, active: &[Vec<u32>]) -> Vec<f32> {
    let (c, h, w) = (shape[1], shape[2], shape[3]);
    let mut values = Vec::new();
    for (b, tokens) in active.iter().enumerate() {
        for &t in tokens {
            let (r, col) = (t as usize / (w / p), t as usize % (w / p));
            for ch in 0..c {
                for py in 0..p {
                    for px in 0..p {
                        values.push(out[((b * c + ch) * h + r * p + py) * w + col * p + px]);
                    }
                }
            }
        }
    }
    values
}

/// A sparse call computing every token equals the dense call, whatever the
/// cache held before (it is overwritten everywhere); a dense call that
/// fills the cache equals one without.
#[test]
fn sparse_call_with_every_token_equals_dense() {
    let gpu = gpu();
    for case in ["f32_hd12_scaled_b2", "bf16_hd72_shared_q_b2"] {
        let model = LuminaTransformer::load_dir(&gpu, &fixture(case).join("transformer")).unwrap();
        let i = inputs(&gpu, case);
        let s = i.latents.shape();
        let n = (s[2] / 2) * (s[3] / 2);
        let dense = gpu
            .read_f32(&model.forward(&gpu, &call(&i, None, None)).unwrap())
            .unwrap();
        let cache = model.kv_cache(&gpu, s[0], n).unwrap();
        let filled = model.forward(&gpu, &call(&i, None, Some(&cache))).unwrap();
        let err = rel_err(&gpu.read_f32(&filled).unwrap(), &dense);
        assert!(
            err < 1e-6,
            "{case}: dense call filling the cache differs by {err:.3e}"
        );
        let all: Vec<Vec<u32>> = vec![(0..n as u32).collect(); s[0]];
        let fresh = model.kv_cache(&gpu, s[0], n).unwrap();
        let sparse = model.forward(&gpu, &call(&i, Some(&all), Some(&fresh))).unwrap();
        let err = rel_err(&gpu.read_f32(&sparse).unwrap(), &dense);
        eprintln!("{case}: all-active sparse vs dense: rel err {err:.3e}");
        assert!(err < 1e-6, "{case}: all-active sparse call differs by {err:.3e}");
    }
}

/// With the cache filled by a dense call on the same inputs, a sparse call
/// on a different subset per batch row reproduces the dense output at the
/// computed tokens: their queries see the same keys, and RoPE and
/// proportional attention use the true positions and the full length.
#[test]
fn sparse_call_matches_dense_on_active_tokens() {
    let gpu = gpu();
    for case in ["f32_hd12_scaled_b2", "bf16_hd72_shared_q_b2"] {
        let model = LuminaTransformer::load_dir(&gpu, &fixture(case).join("transformer")).unwrap();
        let i = inputs(&gpu, case);
        let s = i.latents.shape().to_vec();
        let n = (s[2] / 2) * (s[3] / 2);
        let cache = model.kv_cache(&gpu, s[0], n).unwrap();
        let dense = model.forward(&gpu, &call(&i, None, Some(&cache))).unwrap();
        let dense = gpu.read_f32(&dense).unwrap();
        // About a third of the tokens, a different set in each row.
        let count = n / 3;
        let active: Vec<Vec<u32>> = (0..s[0])
            .map(|b| {
                let mut t: Vec<u32> = (0..n as u32)
                    .filter(|t| (t * 7 + 5 * b as u32).is_multiple_of(3))
                    .collect();
                t.truncate(count);
                t
            })
            .collect();
        assert_ne!(active[0], active[1]);
        let sparse = model
            .forward(&gpu, &call(&i, Some(&active), Some(&cache)))
            .unwrap();
        let shape = sparse.shape().to_vec();
        let got = at_tokens(&gpu.read_f32(&sparse).unwrap(), &shape, 2, &active);
        let err = rel_err(&got, &at_tokens(&dense, &shape, 2, &active));
        eprintln!("{case}: sparse vs dense on {count} active tokens per row: rel err {err:.3e}");
        assert!(err < 1e-6, "{case}: sparse call differs from dense by {err:.3e}");
    }
}

#[test]
fn bad_calls_are_explained() {
    let gpu = gpu();
    let case = "f32_hd12_scaled_b2";
    let model = LuminaTransformer::load_dir(&gpu, &fixture(case).join("transformer")).unwrap();
    let mut i = inputs(&gpu, case);
    let active: Vec<Vec<u32>> = vec![vec![0, 1], vec![2, 3]];
    let err = model
        .forward(&gpu, &call(&i, Some(&active), None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("a sparse call needs the K/V cache"), "{err}");
    let cache = model.kv_cache(&gpu, 1, 36).unwrap();
    let err = model
        .forward(&gpu, &call(&i, None, Some(&cache)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("must hold 3 layers of f32 or f16 [72, 24]"), "{err}");
    let unsorted: Vec<Vec<u32>> = vec![vec![1, 0], vec![2, 3]];
    let cache = model.kv_cache(&gpu, 2, 36).unwrap();
    let err = model
        .forward(&gpu, &call(&i, Some(&unsorted), Some(&cache)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ascending"), "{err}");
    i.cond.mask = Some(vec![0.0; 14]);
    let err = model
        .forward(&gpu, &call(&i, None, None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("caption row 0 has no real token"), "{err}");
}

fn load_error(dir: &Path) -> String {
    match LuminaTransformer::load_dir(&gpu(), dir) {
        Ok(_) => panic!("a broken folder must fail to load"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_key_is_named() {
    let dir = broken_copy(&fixture("f32_hd12_scaled_b2").join("transformer"), |t| {
        t.retain(|(n, ..)| n != "layers.2.attn2.norm_k.bias")
    });
    let err = load_error(dir.path());
    assert!(
        err.contains("missing tensor 'layers.2.attn2.norm_k.bias'"),
        "{err}"
    );
}

#[test]
fn wrong_shape_is_named() {
    let dir = broken_copy(&fixture("f32_hd12_scaled_b2").join("transformer"), |t| {
        let w = t
            .iter_mut()
            .find(|(n, ..)| n == "layers.1.attn1.to_k.weight")
            .unwrap();
        w.2 = vec![w.2[1], w.2[0]];
    });
    let err = load_error(dir.path());
    assert!(
        err.contains("'layers.1.attn1.to_k.weight'") && err.contains("has shape [48, 24], expected [24, 48]"),
        "{err}"
    );
}

#[test]
fn unused_key_is_named() {
    let dir = broken_copy(&fixture("f32_hd12_scaled_b2").join("transformer"), |t| {
        let extra = t.iter().find(|(n, ..)| n == "layers.0.gate").unwrap().clone();
        t.push(("layers.0.attn1.to_out.0.weight".into(), extra.1, extra.2, extra.3));
    });
    let err = load_error(dir.path());
    assert!(
        err.contains("does not use") && err.contains("layers.0.attn1.to_out.0.weight"),
        "{err}"
    );
}

/// f16 activations (`Precision::F16`) stay within 1e-2 of the f32 forward,
/// dense, and sparse over an f16 cache (head dims 12 and 72, RoPE scaling,
/// grouped K/V heads, the caption's f32 keys and values).
#[test]
fn f16_activations_within_1e_2() {
    use ras::gpu::DType;
    use ras::models::Precision;
    let gpu = gpu();
    if !gpu.capabilities().shader_f16 {
        assert!(std::env::var("CI").is_err(), "CI's adapter has shader-f16");
        return;
    }
    for case in ["f32_hd12_scaled_b2", "bf16_hd72_shared_q_b2"] {
        let model = LuminaTransformer::load_dir(&gpu, &fixture(case).join("transformer")).unwrap();
        let i = inputs(&gpu, case);
        let s = i.latents.shape().to_vec();
        let n = (s[2] / 2) * (s[3] / 2);
        let full = gpu
            .read_f32(&model.forward(&gpu, &call(&i, None, None)).unwrap())
            .unwrap();
        let half = |active, cache| DitCall {
            precision: Precision::F16,
            ..call(&i, active, cache)
        };
        let dense = gpu
            .read_f32(&model.forward(&gpu, &half(None, None)).unwrap())
            .unwrap();
        let err = rel_err(&dense, &full);
        eprintln!("{case}: f16 activations vs f32: rel err {err:.3e}");
        assert!(err < 1e-2 && err > 0.0, "{case}: {err:.3e}");
        let cache = model.kv_cache_in(&gpu, s[0], n, DType::F16).unwrap();
        model.forward(&gpu, &half(None, Some(&cache))).unwrap();
        let active: Vec<Vec<u32>> = (0..s[0]).map(|_| (0..n as u32).step_by(3).collect()).collect();
        let sparse = model.forward(&gpu, &half(Some(&active), Some(&cache))).unwrap();
        let got = at_tokens(&gpu.read_f32(&sparse).unwrap(), &s, 2, &active);
        let err = rel_err(&got, &at_tokens(&full, &s, 2, &active));
        eprintln!("{case}: sparse f16 vs dense f32 on the active tokens: {err:.3e}");
        assert!(err < 1e-2, "{case}: {err:.3e}");
    }
}
