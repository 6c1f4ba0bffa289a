//! The whole SD3 pipeline against diffusers' StableDiffusion3Pipeline on a tiny
//! random model folder (tests/fixtures/make_pipeline.py): prompt embeddings,
//! images from the same initial latents, tiled VAE decode, seeded
//! reproducibility, PNG metadata and the errors a user meets first.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use ras::gpu::{Gpu, GpuOptions};
use ras::models::vae::VaeDecoder;
use ras::pipeline::{
    parameters, write_png, GenerateRequest, ModelConfig, ModelDir, Pipeline, PipelineOptions, TextEncoders,
    RAS_DEFAULTS_FILE,
};
use ras::ras::RasConfig;
use ras::reference::rel_err;
use ras::weights::{load_f32, Weights};
use serde_json::Value;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pipeline")
        .join(path)
}

fn model() -> String {
    fixture("model").display().to_string()
}

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions {
        poison: true,
        ..Default::default()
    })
    .expect("a GPU adapter (without a GPU: apt-get install -y mesa-vulkan-drivers)")
}

fn tensor(case: &str, file: &str, key: &str) -> (Vec<f32>, Vec<usize>) {
    load_f32(&Weights::from_files(&[fixture(case).join(file)]).unwrap(), key).unwrap()
}

/// diffusers' 8-bit image `[B, H, W, 3]` (stored as i32).
fn rgb(case: &str) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(fixture(case).join("expected.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = file.tensor("rgb").unwrap();
    let values: Vec<i32> = bytemuck::pod_collect_to_vec(t.data());
    (values.into_iter().map(|v| v as f32).collect(), t.shape().to_vec())
}

/// A copy of the fixture model folder (components hold files only)
/// without the component `except` ("" keeps them all).
fn copied_model(except: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture("model")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == except {
            continue;
        }
        let to = dir.path().join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir(&to).unwrap();
            for f in std::fs::read_dir(entry.path()).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
            }
        } else {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
    dir
}

fn case(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("case.json")).unwrap()).unwrap()
}

fn request(name: &str) -> GenerateRequest {
    let c = case(name);
    let steps = c["num_inference_steps"].as_u64().unwrap() as usize;
    let mut req = GenerateRequest::new(c["prompt"].as_str().unwrap());
    req.negative_prompt = c["negative_prompt"].as_str().unwrap().to_owned();
    req.width = c["width"].as_u64().unwrap() as usize;
    req.height = c["height"].as_u64().unwrap() as usize;
    req.steps = steps;
    req.guidance = c["guidance_scale"].as_f64().unwrap() as f32;
    req.num_images = c["num_images_per_prompt"].as_u64().unwrap() as usize;
    req.max_sequence_length = c["max_sequence_length"].as_u64().unwrap() as usize;
    req.ras = RasConfig::dense(steps);
    req.latents_init = Some(tensor(name, "inputs.safetensors", "latents_init").0);
    req
}

fn options(name: &str) -> PipelineOptions {
    PipelineOptions {
        no_t5: case(name)["no_t5"].as_bool().unwrap(),
        ..Default::default()
    }
}

#[test]
fn prompt_embeddings_match_diffusers() {
    let gpu = gpu();
    let dir = ModelDir::open(&model()).unwrap();
    for name in ["t5", "no_t5"] {
        let req = request(name);
        let text = TextEncoders::load(&gpu, &dir, !options(name).no_t5).unwrap();
        assert_eq!(text.has_t5(), name == "t5");
        for (prompt, key) in [(&req.prompt, ""), (&req.negative_prompt, "negative_")] {
            let prompts = vec![prompt.as_str(); req.num_images];
            let out = text.encode(&gpu, &prompts, req.max_sequence_length, 80).unwrap();
            // Without T5 its zero rows are kept once, standing for all of them.
            assert_eq!(out.text_weights.is_some(), name == "no_t5");
            let embeds = out.expanded(&gpu).unwrap();
            for (got, what) in [(&embeds, "prompt_embeds"), (&out.pooled, "pooled_prompt_embeds")] {
                let (want, shape) = tensor(name, "expected.safetensors", &format!("{key}{what}"));
                assert_eq!(got.shape(), &shape[..], "{name} {key}{what}");
                let err = rel_err(&gpu.read_f32(got).unwrap(), &want);
                assert!(err < 1e-4, "{name} {key}{what}: {err:.3e}");
            }
        }
    }
}

/// A folder whose `tokenizer/` says `model_max_length` 12 pads both
/// prompts to 12 CLIP rows (diffusers' `tokenizer_max_length`). CLIP is
/// causal, so those rows and the pooled embedding are diffusers' 77-row
/// ones cut short, and the T5 zero rows follow them.
#[test]
fn a_shorter_clip_context_is_the_first_rows_of_diffusers_embeddings() {
    let gpu = gpu();
    let tmp = copied_model("");
    let copy = tmp.path();
    let config_path = copy.join("tokenizer/tokenizer_config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["model_max_length"] = 12.into();
    std::fs::write(&config_path, config.to_string()).unwrap();

    let name = "no_t5";
    let req = request(name);
    let text = TextEncoders::load(&gpu, &ModelDir::open(copy.to_str().unwrap()).unwrap(), false).unwrap();
    let out = text
        .encode(&gpu, &[req.prompt.as_str()], req.max_sequence_length, 80)
        .unwrap();
    let s = req.max_sequence_length;
    assert_eq!(out.embeds.shape(), &[1, 12 + 1, 80]);
    let embeds = gpu.read_f32(&out.expanded(&gpu).unwrap()).unwrap();
    let (want, shape) = tensor(name, "expected.safetensors", "prompt_embeds");
    assert_eq!(shape, [req.num_images, 77 + s, 80]);
    let want_rows: Vec<f32> = want[..12 * 80]
        .iter()
        .chain(&want[77 * 80..(77 + s) * 80])
        .copied()
        .collect();
    let err = rel_err(&embeds, &want_rows);
    assert!(err < 1e-4, "rows: {err:.3e}");
    let (want_pooled, _) = tensor(name, "expected.safetensors", "pooled_prompt_embeds");
    let pooled = gpu.read_f32(&out.pooled).unwrap();
    let err = rel_err(&pooled, &want_pooled[..pooled.len()]);
    assert!(err < 1e-4, "pooled: {err:.3e}");

    config["model_max_length"] = 100.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let msg = TextEncoders::load(&gpu, &ModelDir::open(copy.to_str().unwrap()).unwrap(), false)
        .err()
        .expect("longer than the position table")
        .to_string();
    assert!(msg.contains("model_max_length 100"), "{msg}");
}

#[test]
fn images_match_diffusers_from_the_same_latents() {
    let gpu = gpu();
    for name in ["t5", "no_t5"] {
        let mut pipeline = Pipeline::load(&gpu, &model(), options(name)).unwrap();
        let req = request(name);
        let mut steps = 0;
        let out = pipeline
            .generate(&req, |e| {
                if let ras::pipeline::Event::Step(_) = e {
                    steps += 1;
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(steps, req.steps);
        let (want, shape) = rgb(name);
        assert_eq!(out.images.len(), shape[0]);
        let got: Vec<u8> = out.images.iter().flat_map(|i| i.rgb.clone()).collect();
        assert_eq!(got.len(), want.len());
        assert_eq!((out.images[0].height, out.images[0].width), (shape[1], shape[2]));
        let mean_abs = got
            .iter()
            .zip(&want)
            .map(|(&g, &w)| (g as f32 - w).abs())
            .sum::<f32>()
            / got.len() as f32;
        let max_abs = got
            .iter()
            .zip(&want)
            .map(|(&g, &w)| (g as f32 - w).abs())
            .fold(0.0, f32::max);
        assert!(
            mean_abs <= 1.0,
            "{name}: mean |Δ| {mean_abs} (max {max_abs}) in 8-bit units"
        );
        assert!(out.peak_bytes > 0);
    }
}

#[test]
fn tiled_decode_matches_diffusers() {
    let gpu = gpu();
    let vae = VaeDecoder::load_dir(&gpu, &fixture("model/vae")).unwrap();
    for name in ["t5", "no_t5"] {
        let (latents, shape) = tensor(name, "expected.safetensors", "latents_final");
        let z = gpu.upload_f32(&latents, &shape).unwrap();
        let got = vae.decode_tiled(&gpu, &z, 8).unwrap();
        let (want, want_shape) = tensor(name, "expected.safetensors", "tiled_image");
        assert_eq!(got.len(), want.len(), "{name}: {want_shape:?}");
        let err = rel_err(&got, &want);
        assert!(err < 1e-4, "{name} tiled: {err:.3e}");
        // One tile covering everything is the plain decode.
        let whole = gpu.read_f32(&vae.decode(&gpu, &z).unwrap()).unwrap();
        let big = vae.decode_tiled(&gpu, &z, 4 * shape[2].max(shape[3])).unwrap();
        assert!(rel_err(&big, &whole) < 1e-6, "{name}: a single tile differs");
    }
    assert!(vae
        .decode_tiled(&gpu, &gpu.upload_f32(&[0.0; 16 * 64], &[1, 16, 8, 8]).unwrap(), 6)
        .is_err());
}

#[test]
fn same_seed_gives_the_same_png_bytes() {
    let gpu = gpu();
    let mut pipeline = Pipeline::load(&gpu, &model(), PipelineOptions::default()).unwrap();
    let mut req = request("t5");
    req.latents_init = None;
    req.num_images = 1;
    req.seed = 42;
    req.ras = RasConfig::sd3_example(req.steps);
    let dir = tempfile::tempdir().unwrap();
    let mut run = |req: &GenerateRequest, file: &str| {
        let out = pipeline.generate(req, |_| ControlFlow::Continue(())).unwrap();
        let path = dir.path().join(file);
        write_png(&path, &out.images[0], &parameters(req, "fixture", Some(true), 0)).unwrap();
        std::fs::read(path).unwrap()
    };
    let a = run(&req, "a.png");
    let b = run(&req, "b.png");
    assert_eq!(a, b, "same seed, different PNG bytes");
    req.seed = 43;
    assert_ne!(a, run(&req, "c.png"), "another seed gave the same image");

    // The settings travel in the PNG.
    let decoder = png::Decoder::new(std::io::Cursor::new(a));
    let reader = decoder.read_info().unwrap();
    let text = &reader.info().uncompressed_latin1_text;
    let params = text
        .iter()
        .find(|t| t.keyword == "parameters")
        .expect("a parameters chunk");
    assert!(params
        .text
        .starts_with("A red circle, on a blue background!\nNegative prompt: blurry"));
    for field in [
        "Steps: 3",
        "CFG scale: 4.5",
        "Seed: 42",
        "Size: 56x40",
        "sample ratio 0.5",
    ] {
        assert!(
            params.text.contains(field),
            "'{field}' missing from {}",
            params.text
        );
    }
}

#[test]
fn cancelling_stops_the_run() {
    let gpu = gpu();
    let mut pipeline = Pipeline::load(&gpu, &model(), PipelineOptions::default()).unwrap();
    let req = request("no_t5");
    let err = pipeline
        .generate(&req, |e| match e {
            ras::pipeline::Event::Step(s) if s.step == 1 => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .err()
        .expect("cancelled");
    assert!(matches!(err, ras::Error::Cancelled), "{err}");
}

/// The options' cancel flag (what Ctrl-C sets) stops a run with
/// `Cancelled`; cleared, the same pipeline generates the same image as a
/// fresh one.
#[test]
fn cancel_flag_stops_a_run_and_the_pipeline_stays_usable() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let gpu = gpu();
    let flag = Arc::new(AtomicBool::new(false));
    let with_flag = PipelineOptions {
        cancel: Some(flag.clone()),
        ..options("no_t5")
    };
    let mut pipeline = Pipeline::load(&gpu, &model(), with_flag).unwrap();
    let req = request("no_t5");
    let err = pipeline
        .generate(&req, |e| {
            if let ras::pipeline::Event::Step(s) = e {
                flag.store(s.step == 0, Ordering::Relaxed);
            }
            ControlFlow::Continue(())
        })
        .err()
        .expect("cancelled");
    assert!(matches!(err, ras::Error::Cancelled), "{err}");
    flag.store(false, Ordering::Relaxed);
    let again = pipeline.generate(&req, |_| ControlFlow::Continue(())).unwrap();
    let mut fresh = Pipeline::load(&gpu, &model(), options("no_t5")).unwrap();
    let want = fresh.generate(&req, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(again.images[0], want.images[0]);
}

#[test]
fn bad_requests_fail_before_any_work() {
    let gpu = gpu();
    let pipeline = Pipeline::load(&gpu, &model(), PipelineOptions::default()).unwrap();
    let mut req = request("t5");
    req.width = 44; // not a multiple of 8 (VAE factor 4 × patch 2)
    let msg = pipeline.validate(&req).unwrap_err().to_string();
    assert!(msg.contains("width 44 must be a positive multiple of 8"), "{msg}");
    req.width = 8 * 64; // beyond the 16-patch position table
    let msg = pipeline.validate(&req).unwrap_err().to_string();
    assert!(msg.contains("position table"), "{msg}");
    req.width = 56;
    let height = std::mem::replace(&mut req.height, 0);
    let msg = pipeline.validate(&req).unwrap_err().to_string();
    assert!(msg.contains("height 0 must be a positive multiple of 8"), "{msg}");
    req.height = height;
    req.latents_init = Some(vec![0.0; 3]);
    assert!(pipeline
        .validate(&req)
        .unwrap_err()
        .to_string()
        .contains("latents_init"));

    // A folder without its VAE names the missing component.
    let dir = copied_model("vae");
    let msg = Pipeline::load(&gpu, dir.path().to_str().unwrap(), PipelineOptions::default())
        .err()
        .expect("missing vae")
        .to_string();
    assert!(msg.contains("'vae' component is missing"), "{msg}");
    let msg = Pipeline::load(&gpu, "no-such-org/no-such-model", PipelineOptions::default())
        .err()
        .expect("not cached")
        .to_string();
    assert!(msg.contains("Hugging Face cache"), "{msg}");
}

#[test]
fn repeated_text_rows_computed_once_give_the_same_output() {
    use ras::models::sd3::{Sd3Inputs, Sd3Transformer};
    let gpu = gpu();
    let model = Sd3Transformer::load_dir(&gpu, &fixture("model/transformer")).unwrap();
    let (b, c, h, w, j) = (2, 16, 10, 12, 80);
    let (distinct, copies) = (9, 40);
    let noise = |n: usize, k: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + k) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    };
    let latents = gpu.upload_f32(&noise(b * c * h * w, 1), &[b, c, h, w]).unwrap();
    let pooled = gpu.upload_f32(&noise(b * 56, 2), &[b, 56]).unwrap();
    // Per batch row: 9 distinct rows, then one row repeated 40 times.
    let head = noise(b * distinct * j, 3);
    let tail = noise(b * j, 4);
    let (mut full, mut compact) = (Vec::new(), Vec::new());
    for r in 0..b {
        full.extend_from_slice(&head[r * distinct * j..][..distinct * j]);
        compact.extend_from_slice(&head[r * distinct * j..][..distinct * j]);
        for _ in 0..copies {
            full.extend_from_slice(&tail[r * j..][..j]);
        }
        compact.extend_from_slice(&tail[r * j..][..j]);
    }
    let full = gpu.upload_f32(&full, &[b, distinct + copies, j]).unwrap();
    let compact = gpu.upload_f32(&compact, &[b, distinct + 1, j]).unwrap();
    let mut weights = vec![1.0; distinct];
    weights.push(copies as f32);
    let run = |ctx, text_weights| {
        let inputs = Sd3Inputs {
            hidden_states: &latents,
            encoder_hidden_states: ctx,
            pooled_projections: &pooled,
            timestep: &[300.0, 800.0],
            text_weights,
        };
        gpu.read_f32(&model.forward(&gpu, &inputs).unwrap()).unwrap()
    };
    let want = run(&full, None);
    let got = run(&compact, Some(&weights[..]));
    let err = rel_err(&got, &want);
    assert!(err < 1e-5, "compacted text rows: {err:.3e}");
    // Without the weights the compacted call is a different model input.
    assert!(rel_err(&run(&compact, None), &want) > 1e-3);
}

/// A model folder's ras_defaults.json tunes the step-independent RAS
/// defaults over the family's example; a bad one is refused naming the file.
#[test]
fn a_model_folder_can_carry_its_ras_defaults() {
    let dir = copied_model("");
    let file = dir.path().join(RAS_DEFAULTS_FILE);
    let load = || ModelConfig::open(dir.path().to_str().unwrap());
    let mut req = load().unwrap().request("a red circle");
    req.steps = 10;
    let example = RasConfig::sd3_example(10);
    assert_eq!(
        load().unwrap().ras_defaults(&req),
        example,
        "no file: the example"
    );
    std::fs::write(
        &file,
        r#"{"_comment": "why", "high_ratio": 0.0, "sample_ratio": 0.25, "metric": "l2norm"}"#,
    )
    .unwrap();
    let tuned = load().unwrap().ras_defaults(&req);
    assert_eq!(
        tuned,
        RasConfig {
            high_ratio: 0.0,
            sample_ratio: 0.25,
            metric: ras::kernels::metric::Metric::L2Norm,
            ..example
        }
    );
    assert_eq!(
        load().unwrap().request("x").ras.high_ratio,
        0.0,
        "requests start from it"
    );
    for (text, says) in [
        (r#"{"high_ratio": 2}"#, "high_ratio 2 must be in [0, 1]"),
        (
            r#"{"error_reset_steps": [3]}"#,
            "unknown field `error_reset_steps`",
        ),
        (r#"{"metric": "max"}"#, "metric 'max' is not std or l2norm"),
    ] {
        std::fs::write(&file, text).unwrap();
        let err = load().unwrap_err().to_string();
        assert!(
            err.contains(RAS_DEFAULTS_FILE) && err.contains(says),
            "{text}: {err}"
        );
    }
}
