//! Admission and limits (issue 13): a request estimated not to fit is
//! refused before any work with what to change; the estimate bounds what a
//! run really holds; an allocation past the memory budget mid-job is a
//! typed out-of-memory error after which the pipeline still works; a device
//! opened with low limits (small bindings and buffers, no f16, no
//! subgroups) still generates; a GPU validation error names the launch.

use std::ops::ControlFlow;
use std::path::Path;

use ras::gpu::{Gpu, GpuOptions, Kernel};
use ras::pipeline::{GenerateRequest, Pipeline, PipelineOptions};
use ras::ras::RasConfig;

fn model() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pipeline/model")
        .display()
        .to_string()
}

fn gpu(options: GpuOptions) -> Gpu {
    Gpu::new(&options).expect("a GPU adapter (without a GPU: apt-get install -y mesa-vulkan-drivers)")
}

fn request() -> GenerateRequest {
    let mut req = GenerateRequest::new("a small red circle");
    req.width = 40;
    req.height = 32;
    req.steps = 5;
    req.guidance = 3.0;
    req.max_sequence_length = 8;
    req.seed = 5;
    req.ras = RasConfig {
        scheduler_start_step: 2,
        ..RasConfig::sd3_example(5)
    };
    req
}

fn generate(pipeline: &mut Pipeline, req: &GenerateRequest) -> ras::Result<ras::pipeline::Generation> {
    pipeline.generate(req, |_| ControlFlow::Continue(()))
}

#[test]
fn a_request_over_the_budget_is_refused_before_any_work() {
    let gpu = gpu(GpuOptions {
        max_memory_bytes: Some(1 << 20),
        ..Default::default()
    });
    let mut pipeline = Pipeline::load(&gpu, &model(), PipelineOptions::default()).unwrap();
    let before = gpu.counters();
    let Err(err) = generate(&mut pipeline, &request()) else {
        panic!("1 MiB cannot hold the model");
    };
    assert!(matches!(err, ras::Error::MemoryBudget { .. }), "{err}");
    let msg = err.to_string();
    for part in [
        "--max-gpu-memory",
        "1 MiB",
        "transformer",
        "smaller size",
        "--precision f16",
    ] {
        assert!(msg.contains(part), "'{part}' missing from: {msg}");
    }
    assert_eq!(
        gpu.counters().dispatches,
        before.dispatches,
        "work ran before the refusal"
    );
    assert_eq!(
        gpu.memory().weight_bytes,
        0,
        "weights were loaded before the refusal"
    );
}

#[test]
fn the_estimate_bounds_the_measured_peak() {
    let gpu = gpu(GpuOptions::default());
    let mut pipeline = Pipeline::load(&gpu, &model(), PipelineOptions::default()).unwrap();
    for (w, h, images) in [(40, 32, 1), (64, 48, 2)] {
        let req = GenerateRequest {
            width: w,
            height: h,
            num_images: images,
            ..request()
        };
        let estimate = pipeline.estimate_memory(&req).peak;
        let peak = generate(&mut pipeline, &req).unwrap().peak_bytes;
        // An upper bound, and one of the right order (not a blanket "huge").
        assert!(
            estimate >= peak,
            "{w}x{h}×{images}: estimate {estimate} < measured {peak}"
        );
        assert!(
            estimate <= 4 * peak,
            "{w}x{h}×{images}: estimate {estimate} ≫ measured {peak}"
        );
    }
}

/// Out of memory in the middle of a job (simulated with the budget: the
/// device itself has plenty) is an error from `step()` or `generate()`, not
/// a panic or a hang; with the budget lifted the same pipeline generates
/// the same image.
#[test]
fn out_of_memory_mid_job_is_an_error_and_the_pipeline_recovers() {
    let gpu = gpu(GpuOptions::default());
    let mut pipeline = Pipeline::load(&gpu, &model(), PipelineOptions::default()).unwrap();
    let req = request();
    let want = generate(&mut pipeline, &req).unwrap().images;
    let is_oom =
        |e: &ras::Error| matches!(e, ras::Error::OutOfMemory { .. }) && e.to_string().contains("budget");

    // From step(): with the pool's cached buffers dropped and the budget at
    // what live tensors and weights hold, the next step's temporaries
    // cannot be allocated.
    let mut job = pipeline.start(&req).unwrap();
    job.step().unwrap();
    gpu.trim();
    gpu.set_memory_budget(Some(gpu.memory().held()));
    let err = job.step().expect_err("a step within no spare memory");
    assert!(is_oom(&err), "{err}");
    drop(job);
    gpu.set_memory_budget(None);

    // From generate(): the budget drops during denoising, so loading the
    // VAE after it fails.
    let g = gpu.clone();
    let result = pipeline.generate(&req, |e| {
        if let ras::pipeline::Event::Step(_) = e {
            g.set_memory_budget(Some(g.memory().held()));
        }
        ControlFlow::Continue(())
    });
    let Err(err) = result else {
        panic!("generate() ran within no spare memory");
    };
    assert!(is_oom(&err), "{err}");

    gpu.set_memory_budget(None);
    assert_eq!(generate(&mut pipeline, &req).unwrap().images, want);
}

/// A device with the limits of a small GPU: 32 MiB bindings, 256 MiB
/// buffers, 16 KiB of workgroup memory, no shader-f16 and no subgroups.
/// Every stage must tile or fall back; the image matches the full device's
/// to rounding (other kernels may run, so not bit for bit).
#[test]
fn a_device_with_low_limits_generates_the_same_image() {
    let low = gpu(GpuOptions {
        low_limits: true,
        ..Default::default()
    });
    assert!(low.max_binding_bytes() <= 32 << 20);
    assert!(low.max_buffer_bytes() <= 256 << 20);
    let caps = low.capabilities();
    assert!(!caps.shader_f16 && !caps.subgroups, "{caps:?}");
    let req = request();
    let mut pipeline = Pipeline::load(&low, &model(), PipelineOptions::default()).unwrap();
    let got = generate(&mut pipeline, &req).unwrap().images;
    let full = gpu(GpuOptions::default());
    let mut pipeline = Pipeline::load(&full, &model(), PipelineOptions::default()).unwrap();
    let want = generate(&mut pipeline, &req).unwrap().images;
    for (g, w) in got.iter().zip(&want) {
        let worst = g
            .rgb
            .iter()
            .zip(&w.rgb)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= 1, "low limits differ by {worst} levels");
    }
}

/// A launch that binds one buffer both as input and output is a wgpu
/// validation error; it comes back naming the kernel and the tensors.
#[test]
fn a_validation_error_names_the_kernel_and_its_shapes() {
    let gpu = gpu(GpuOptions::default());
    let x = gpu.upload_f32(&[1.0; 35], &[5, 7]).unwrap();
    let kernel = Kernel::new("elementwise").constant("OP", 0);
    gpu.dispatch(
        &kernel,
        &[x.arg().unwrap(), x.arg().unwrap()],
        &[x.arg().unwrap()],
        &[0; 32],
        1,
    )
    .unwrap();
    let err = gpu.flush().expect_err("conflicting buffer usage");
    let msg = err.to_string();
    assert!(matches!(err, ras::Error::Validation { .. }), "{msg}");
    assert!(msg.contains("elementwise/main"), "{msg}");
    assert!(msg.contains("[5, 7] f32"), "{msg}");
    // The device stays usable for correct work (the refused submit, x's
    // upload included, did not run: x is uploaded again).
    let x = gpu.upload_f32(&[1.0; 35], &[5, 7]).unwrap();
    let y = ras::kernels::elementwise::add(&gpu, &x, &x).unwrap();
    assert_eq!(gpu.read_f32(&y).unwrap(), vec![2.0; 35]);
}
