//! Long runs and concurrency (issue 13, item 7) on the built-in demo model:
//! many images in one process, dense and RAS alternating and the size
//! changing, with the GPU memory the engine holds back at the same level
//! after each; two threads generating on one shared `Gpu` giving the bytes
//! of sequential runs; a run cancelled from its event callback leaving the
//! pipeline reusable and holding nothing it would not hold otherwise.
//!
//! The soak makes `RAS_SOAK` images (default [`SOAK_DEFAULT`], short
//! enough for CI on lavapipe); `RAS_SOAK=200 cargo test --test soak soak --
//! --nocapture` is the full run recorded in bench/RESULTS.md.

use std::ops::ControlFlow;
use std::sync::Barrier;
use std::time::Instant;

use ras::gpu::{Allocations, Gpu, GpuOptions};
use ras::pipeline::{Event, GenerateRequest, Image, Pipeline, PipelineOptions, DEMO_MODEL};
use ras::ras::RasConfig;

const SOAK_DEFAULT: usize = 4 * PERIOD;
/// Few steps and small sizes keep an image well under a second on lavapipe;
/// 6 steps leave room for dense warm-up, RAS steps and an error reset.
const STEPS: usize = 6;
/// Multiples of the demo model's 16 (VAE factor 8 × patch 2), all different
/// token grids (4×4, 8×6, 6×10) so every pooled activation size changes.
const SIZES: [(usize, usize); 3] = [(64, 64), (128, 96), (96, 160)];
const PROMPTS: [&str; 3] = [
    "a small red star at the top left on a light blue background",
    "a large yellow circle at the bottom right on a purple background",
    "a small green square in the center on a white background",
];
/// Images before every (size, dense or RAS) pair has run once.
const PERIOD: usize = 2 * SIZES.len();

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default())
        .expect("a GPU adapter (without a GPU: apt-get install -y mesa-vulkan-drivers)")
}

fn pipeline(gpu: &Gpu, keep_loaded: bool) -> Pipeline {
    let options = PipelineOptions {
        keep_loaded,
        ..Default::default()
    };
    Pipeline::load(gpu, DEMO_MODEL, options).unwrap()
}

/// Image `i` of a run: dense and RAS alternate, the size changes every
/// second image, prompt and seed every image.
fn request(i: usize) -> GenerateRequest {
    let (width, height) = SIZES[i / 2 % SIZES.len()];
    let mut req = GenerateRequest::new(PROMPTS[i % PROMPTS.len()]);
    req.width = width;
    req.height = height;
    req.steps = STEPS;
    req.guidance = 5.0;
    req.seed = i as u64;
    // The demo model has no T5: its part of the context is zeros, so a short
    // one changes nothing but the time.
    req.max_sequence_length = 8;
    req.ras = match i % 2 {
        0 => RasConfig::dense(STEPS),
        // Steps 2, 3 and 5 are RAS steps, 4 refreshes the K/V cache.
        _ => RasConfig {
            scheduler_start_step: 2,
            error_reset_steps: vec![4],
            ..RasConfig::sd3_example(STEPS)
        },
    };
    req
}

fn generate(pipeline: &mut Pipeline, req: &GenerateRequest) -> Vec<Image> {
    let out = pipeline.generate(req, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(out.images.len(), 1);
    assert_eq!(
        (out.images[0].width, out.images[0].height),
        (req.width, req.height)
    );
    out.images
}

/// What the engine holds on the device, once the GPU is idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Level {
    /// Activation buffers of live tensors.
    live: u64,
    /// Released activation buffers the pool keeps for reuse.
    cached: u64,
    weights: u64,
    /// The backend allocator's figures: the pool's do not see upload,
    /// read-back and parameter buffers, or a buffer wgpu never frees.
    allocated: Option<Allocations>,
}

impl Level {
    /// Everything but the allocator's bytes: its padding in front of each
    /// buffer depends on where the buffer landed, which wgpu's timing and
    /// the allocator's hash-set order decide (once, 56 bytes apart between
    /// the same requests a period apart). The pool's bytes and the number
    /// of allocations are exact: a leaked buffer of any size changes one.
    fn placement_free(self) -> (u64, u64, u64, Option<usize>) {
        let count = self.allocated.map(|a| a.count);
        (self.live, self.cached, self.weights, count)
    }

    fn now(gpu: &Gpu) -> Level {
        // Dropped buffers are freed once their last submission is done.
        gpu.sync().unwrap();
        let m = gpu.memory();
        Level {
            live: m.live_bytes,
            cached: m.cached_bytes,
            weights: m.weight_bytes,
            allocated: gpu.allocations(),
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The soak. An honest "no leak" here is exact equality, not a tolerance.
/// What the pool caches after an image depends on the images before it:
/// it recycles buffers by exact size and keeps them, so the first image of
/// each (size, dense or RAS) pair adds buffers of its sizes (caches
/// growing, not a leak), and a RAS run trims the cache when it frees its
/// K/V cache, so the level after an image also depends on its
/// predecessor. But the requests repeat with a period of [`PERIOD`]
/// images, and from the third period on (a full period after each size's
/// cache has seen its most demanding user) the history an image sees is
/// the same as one period earlier: the pool's bytes and the allocator's
/// count of buffers must then equal those a period before (the allocator's
/// bytes also count padding that depends on placement, see
/// [`Level::placement_free`]). A leak of even one buffer per image breaks
/// that at the next period, and a sequence that repeats exactly cannot
/// grow.
///
/// The first three quarters keep the model loaded between images (a
/// host's set-up); the rest load and free every component per image (the
/// CLI's), where after each image and a `trim` the engine must hold
/// nothing at all and the allocator be back where it was before the
/// pipeline existed, to the byte (what is left then was placed before
/// the pipeline and never moved). Dropping the pipeline at the end must
/// give everything back.
#[test]
fn soak_memory_returns_to_the_same_level_after_every_image() {
    let count = std::env::var("RAS_SOAK")
        .map(|v| v.parse().expect("RAS_SOAK is a number of images"))
        .unwrap_or(SOAK_DEFAULT);
    assert!(
        count >= 4 * PERIOD,
        "RAS_SOAK={count}: at least {} images",
        4 * PERIOD
    );
    let gpu = gpu();
    let start = Instant::now();
    // wgpu frees the staging buffer of its own set-up writes at the
    // device's first submit: the level to come back to is the one after it.
    drop(gpu.read_f32(&gpu.upload_f32(&[0.0], &[1]).unwrap()).unwrap());
    gpu.trim();
    let before = Level::now(&gpu);
    eprintln!(
        "{} ({}), {count} images; before: {before:?}",
        gpu.adapter_name(),
        gpu.backend()
    );
    let mut pipeline = pipeline(&gpu, true);
    let kept = count - count / 4;
    let mut levels: Vec<Level> = Vec::new();
    let mut peak = 0;
    for i in 0..count {
        if i == kept {
            pipeline.options.keep_loaded = false;
        }
        let t = Instant::now();
        let req = request(i);
        generate(&mut pipeline, &req);
        peak = peak.max(gpu.memory().peak_bytes);
        let level = Level::now(&gpu);
        eprintln!(
            "{i:>3} {}x{} {} {:.2} s: live {:.3} MiB, cached {:.3} MiB, weights {:.3} MiB, allocated {:?}",
            req.width,
            req.height,
            if req.ras.is_dense() { "dense" } else { "RAS  " },
            t.elapsed().as_secs_f64(),
            mib(level.live),
            mib(level.cached),
            mib(level.weights),
            level
                .allocated
                .map(|a| format!("{:.3} MiB in {}", mib(a.bytes), a.count)),
        );
        if i < kept {
            if i >= 2 * PERIOD {
                let earlier = levels[i - PERIOD];
                assert_eq!(
                    level.placement_free(),
                    earlier.placement_free(),
                    "image {i}: not the level of image {} ({level:?} then {earlier:?})",
                    i - PERIOD
                );
            }
            levels.push(level);
        } else {
            // Nothing stays loaded: what is left is the pool's cache only.
            assert_eq!((level.live, level.weights), (0, 0), "image {i}: {level:?}");
            gpu.trim();
            let trimmed = Level::now(&gpu);
            assert_eq!(trimmed, before, "image {i}: not all given back");
        }
    }
    drop(pipeline);
    gpu.trim();
    assert_eq!(
        Level::now(&gpu),
        before,
        "dropping the pipeline gave back less than it took"
    );
    let most = levels.iter().filter_map(|l| l.allocated).map(|a| a.bytes).max();
    eprintln!(
        "{count} images in {:.1} s; peak held in a run {:.2} MiB; most allocated after an image {:.2} MiB",
        start.elapsed().as_secs_f64(),
        mib(peak),
        most.map_or(0.0, mib)
    );
}

/// Two threads, each with its own pipeline on one shared `Gpu` (they share
/// its command recorder, buffer pool and queue), generate different
/// requests at once, several times over: every image must be the bytes
/// the same request gives run alone.
#[test]
fn two_threads_on_one_gpu_give_the_bytes_of_sequential_runs() {
    const REPEATS: usize = 3;
    let gpu = gpu();
    // A dense and a RAS request of different sizes, prompts and seeds.
    let requests = [request(0), request(3)];
    let alone: Vec<Vec<Image>> = requests
        .iter()
        .map(|req| generate(&mut pipeline(&gpu, false), req))
        .collect();
    assert_ne!(alone[0], alone[1]);
    let start = Barrier::new(requests.len());
    let together: Vec<Vec<Vec<Image>>> = std::thread::scope(|s| {
        let threads: Vec<_> = requests
            .iter()
            .map(|req| {
                let (gpu, start) = (&gpu, &start);
                s.spawn(move || {
                    let mut pipeline = pipeline(gpu, true);
                    start.wait();
                    (0..REPEATS).map(|_| generate(&mut pipeline, req)).collect()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for (r, (images, want)) in together.iter().zip(&alone).enumerate() {
        for (k, got) in images.iter().enumerate() {
            assert!(
                got == want,
                "thread {r}, image {k}: not the bytes of the run alone"
            );
        }
    }
}

/// Where a run is stopped from its event callback.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Loading(&'static str),
    Encoding,
    Denoising,
    Step(usize),
    Decoding,
}

impl Stop {
    fn hit(self, e: &Event) -> bool {
        match (self, e) {
            (Stop::Loading(a), Event::Loading(b)) => a == *b,
            (Stop::Encoding, Event::Encoding) | (Stop::Denoising, Event::Denoising) => true,
            (Stop::Step(k), Event::Step(s)) => s.step == k,
            (Stop::Decoding, Event::Decoding { .. }) => true,
            _ => false,
        }
    }
}

/// A run stopped by its event callback (`ControlFlow::Break`) at every kind
/// of event, in both loading modes, returns `Cancelled`; the same pipeline
/// then generates the bytes of a fresh pipeline, and a pipeline that does
/// not keep its model loaded holds no weights after the stop (what it
/// loaded for the stopped run is freed, as a finished run's is). A job
/// dropped half-way (how the step-by-step API cancels) does the same.
#[test]
fn cancelling_from_the_event_callback_leaves_the_pipeline_reusable() {
    let gpu = gpu();
    let req = request(1);
    let want = generate(&mut pipeline(&gpu, false), &req);
    let stops = [
        Stop::Loading("text encoders"),
        Stop::Encoding,
        Stop::Loading("transformer"),
        Stop::Denoising,
        Stop::Step(0),
        Stop::Step(3), // a RAS step: the K/V cache and planner state are live
        Stop::Loading("VAE"),
        Stop::Decoding,
    ];
    for keep_loaded in [false, true] {
        let mut pipeline = pipeline(&gpu, keep_loaded);
        for stop in stops {
            // Kept components are loaded once: stop the first run at their
            // loading and the next where the stop is.
            let mut stopped = false;
            let err = pipeline
                .generate(&req, |e| match stop.hit(&e) {
                    true => {
                        stopped = true;
                        ControlFlow::Break(())
                    }
                    false => ControlFlow::Continue(()),
                })
                .err();
            let what = format!("keep_loaded {keep_loaded}, stopped at {stop:?}");
            match (stopped, err) {
                (true, Some(ras::Error::Cancelled)) => {}
                (false, None) => assert!(keep_loaded, "{what}: the event never came"),
                (_, e) => panic!("{what}: {e:?}"),
            }
            if !keep_loaded {
                assert_eq!(gpu.memory().weight_bytes, 0, "{what}: weights left loaded");
            }
            assert_eq!(generate(&mut pipeline, &req), want, "{what}: then another image");
        }
        let mut job = pipeline.start(&req).unwrap();
        for _ in 0..4 {
            job.step().unwrap();
        }
        drop(job);
        if !keep_loaded {
            assert_eq!(gpu.memory().weight_bytes, 0, "job dropped: weights left loaded");
        }
        assert_eq!(
            generate(&mut pipeline, &req),
            want,
            "keep_loaded {keep_loaded}: after a dropped job"
        );
    }
}
