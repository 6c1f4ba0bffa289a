//! The built-in demo model (models/ras-demo) through the whole engine:
//! prompt adherence on the held-out prompts (models/demo_prompts.json),
//! judged by the checker of models/eval_demo.py; RAS at its default
//! settings against dense from the same noise.

use std::path::Path;

use ras::eval::adherence::read_expected;
use ras::eval::{compare, warm_up, Palette};
use ras::gpu::{Gpu, GpuOptions};
use ras::pipeline::{GenerateRequest, Pipeline, PipelineOptions, DEMO_MODEL};
use ras::ras::RasConfig;

/// For the tests other than the held-out one: fewer steps than the CLI's
/// 28 so the suite stays short on lavapipe.
const STEPS: usize = 20;
const GUIDANCE: f32 = 5.0;
/// The held-out test takes every third prompt (10 of 28, every caption
/// form): all 28 at the CLI defaults, dense and RAS, take about 6 minutes
/// on lavapipe. bench/RESULTS.md has the figures of all 28
/// (`ras compare --adherence`).
const PROMPT_STRIDE: usize = 3;

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default())
        .expect("a GPU adapter (without a GPU: apt-get install -y mesa-vulkan-drivers)")
}

fn request(prompt: &str, seed: u64) -> GenerateRequest {
    let mut req = GenerateRequest::new(prompt);
    req.width = 256;
    req.height = 256;
    req.steps = STEPS;
    req.guidance = GUIDANCE;
    req.seed = seed;
    req
}

/// Dense and RAS adherence and shape scores and the SSIM of each RAS image
/// against its dense image, over the held-out prompts taken.
struct Scores {
    dense: f64,
    ras: f64,
    dense_shape: f64,
    ras_shape: f64,
    ssim: Vec<f64>,
}

impl Scores {
    fn mean_ssim(&self) -> f64 {
        self.ssim.iter().sum::<f64>() / self.ssim.len() as f64
    }

    fn min_ssim(&self) -> f64 {
        self.ssim.iter().copied().fold(f64::INFINITY, f64::min)
    }
}

/// Prompt i of the held-out set with seed i, at the CLI defaults (the
/// model's size, steps, guidance and RAS settings).
fn score_held_out_prompts() -> Scores {
    let gpu = gpu();
    let options = PipelineOptions {
        keep_loaded: true,
        ..Default::default()
    };
    let mut pipeline = Pipeline::load(&gpu, DEMO_MODEL, options).unwrap();
    let palette = Palette::from_file(&Path::new(DEMO_MODEL).join("demo_palette.json")).unwrap();
    let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo_prompts.json");
    let expected = read_expected(&prompts).unwrap();
    assert!(expected.len() >= 20, "{} held-out prompts", expected.len());
    let defaults = pipeline.request("");
    assert_eq!(
        defaults.ras.high_ratio, 0.0,
        "models/ras-demo/ras_defaults.json is read"
    );
    warm_up(&mut pipeline, &defaults, &defaults.ras).unwrap();
    let (mut dense_ok, mut ras_ok, mut ssim) = (0, 0, Vec::new());
    let (mut dense_shape, mut ras_shape) = (0, 0);
    let taken: Vec<_> = expected.iter().enumerate().step_by(PROMPT_STRIDE).collect();
    for &(i, e) in &taken {
        let mut req = pipeline.request(&e.prompt);
        req.seed = i as u64;
        let c = compare(&mut pipeline, &req, &req.ras).unwrap();
        let dense = palette.check(&c.dense.generation.images[0]);
        let sparse = palette.check(&c.ras.generation.images[0]);
        dense_ok += dense.passes(e) as usize;
        ras_ok += sparse.passes(e) as usize;
        dense_shape += dense.shape_right(e) as usize;
        ras_shape += sparse.shape_right(e) as usize;
        ssim.push(c.ssim);
        eprintln!(
            "{i:>2} dense {}/{} ras {}/{} ssim {:.3} psnr {:.1}  {}  (dense saw {:?})",
            dense.passes(e),
            dense.shape_right(e),
            sparse.passes(e),
            sparse.shape_right(e),
            c.ssim,
            c.psnr,
            e.prompt,
            dense
        );
    }
    let n = taken.len() as f64;
    let scores = Scores {
        dense: dense_ok as f64 / n,
        ras: ras_ok as f64 / n,
        dense_shape: dense_shape as f64 / n,
        ras_shape: ras_shape as f64 / n,
        ssim,
    };
    eprintln!(
        "{} prompts: adherence dense {:.3} ras {:.3}; shape dense {:.3} ras {:.3}; SSIM mean {:.3} min {:.3}",
        taken.len(),
        scores.dense,
        scores.ras,
        scores.dense_shape,
        scores.ras_shape,
        scores.mean_ssim(),
        scores.min_ssim()
    );
    scores
}

/// From one pass over the held-out prompts taken, at the CLI defaults:
/// issue 14's bars: dense adherence (background, colour, position) ≥ 95%
/// and shape ≥ 80%; RAS at the model's defaults within 3 points of dense
/// adherence, mean SSIM against dense ≥ 0.90 and lowest ≥ 0.80.
#[test]
fn demo_model_follows_held_out_prompts_with_and_without_ras() {
    let s = score_held_out_prompts();
    assert!(s.dense >= 0.95, "dense adherence {:.3} < 0.95", s.dense);
    assert!(
        s.dense_shape >= 0.8,
        "dense shape score {:.3} < 0.8",
        s.dense_shape
    );
    assert!(
        (s.dense - s.ras).abs() <= 0.03,
        "RAS adherence {:.3} vs dense {:.3}",
        s.ras,
        s.dense
    );
    assert!(
        s.mean_ssim() >= 0.90,
        "mean SSIM of RAS vs dense {:.3} < 0.90",
        s.mean_ssim()
    );
    assert!(
        s.min_ssim() >= 0.80,
        "lowest SSIM of RAS vs dense {:.3} < 0.80",
        s.min_ssim()
    );
}

#[test]
fn demo_model_at_ratio_one_is_dense() {
    let gpu = gpu();
    let mut pipeline = Pipeline::load(&gpu, DEMO_MODEL, PipelineOptions::default()).unwrap();
    let mut req = request("a red circle on a blue background", 7);
    req.steps = 8;
    let c = compare(&mut pipeline, &req, &RasConfig::dense(8)).unwrap();
    assert_eq!(c.dense.generation.images[0], c.ras.generation.images[0]);
}

/// `Precision::F16` (f16 activations and K/V cache) against f32, with half
/// the cache memory. Dense, the images stay at SSIM ≥ 0.99 (the precision
/// itself: the demo's differ by at most 2 of 255). With RAS, a score that
/// f16 moves by a rounding error can swap which token is computed, and the
/// image then takes another, equally valid RAS path: on this prompt the
/// first RAS step computes 1 of its 128 tokens differently, the swaps grow
/// to 15 by the last step, and the images are at SSIM 0.96. So RAS f16 is
/// held to issue 14's RAS bar against RAS f32 (≥ 0.90), and its first
/// selection to a rounding-level difference from f32's: at most 1 token
/// in 32 (a wrong f16 score would move far more).
#[test]
fn demo_model_f16_matches_f32() {
    use ras::eval::compare::ssim;
    use ras::models::Precision;
    let gpu = gpu();
    if !gpu.capabilities().shader_f16 {
        assert!(std::env::var("CI").is_err(), "CI's adapter has shader-f16");
        return;
    }
    let options = PipelineOptions {
        keep_loaded: true,
        ..Default::default()
    };
    let mut pipeline = Pipeline::load(&gpu, DEMO_MODEL, options).unwrap();
    // One prompt keeps the demo tests near 3 minutes on lavapipe.
    let prompt = "a red circle on a blue background";
    let ras = pipeline.ras_defaults(&request("", 0));
    let mut generate = |req: &GenerateRequest| {
        pipeline
            .generate(req, |_| std::ops::ControlFlow::Continue(()))
            .unwrap()
    };
    let mut req = request(prompt, 100);
    for (ras, floor) in [(RasConfig::dense(req.steps), 0.99), (ras.clone(), 0.90)] {
        req.ras = ras;
        req.precision = Precision::F32;
        let f32_image = generate(&req);
        req.precision = Precision::F16;
        let f16_image = generate(&req);
        let s = ssim(&f32_image.images[0], &f16_image.images[0]).unwrap();
        let with_ras = req.ras.sample_ratio < 1.0;
        let kind = if with_ras { "RAS" } else { "dense" };
        eprintln!("{prompt}: {kind} SSIM f16 vs f32 {s:.5}");
        assert!(s >= floor, "{prompt}: {kind} SSIM {s:.4} < {floor}");
        assert_eq!(with_ras, !f32_image.active.is_empty(), "RAS steps are reported");
        assert_eq!(f32_image.active.len(), f16_image.active.len());
        if let (Some((step, a)), Some((_, b))) = (f32_image.active.first(), f16_image.active.first()) {
            let swapped = a[0].iter().filter(|t| !b[0].contains(t)).count();
            eprintln!(
                "{prompt}: step {step}, {swapped} of {} tokens swapped",
                a[0].len()
            );
            assert_eq!(a[0].len(), b[0].len());
            assert!(
                swapped * 32 <= a[0].len(),
                "{prompt}: f16 computes {swapped} of {} tokens other than f32 at the first RAS step",
                a[0].len()
            );
        }
        assert!(
            !with_ras || f16_image.kv_cache_bytes * 2 == f32_image.kv_cache_bytes,
            "the f16 cache holds {} bytes, the f32 one {}",
            f16_image.kv_cache_bytes,
            f32_image.kv_cache_bytes
        );
    }
}
