//! Embedding: the host's own device, the step-by-step job API with previews,
//! and the image written into the host's texture without a read-back.

use std::ops::ControlFlow;
use std::path::Path;

use ras::gpu::{Gpu, GpuOptions};
use ras::pipeline::{Advance, GenerateRequest, Pipeline, PipelineOptions};
use ras::ras::RasConfig;

fn model() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pipeline/model")
        .display()
        .to_string()
}

/// A device created the way a host application would, handed to the engine.
fn host_device() -> (wgpu::Device, wgpu::Queue, Gpu) {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .expect("a GPU adapter (without a GPU: apt-get install -y mesa-vulkan-drivers)");
    let (device, queue) = pollster::block_on(adapter.request_device(&Default::default())).unwrap();
    let gpu = Gpu::from_device(
        device.clone(),
        queue.clone(),
        adapter.get_info(),
        &GpuOptions::default(),
    );
    (device, queue, gpu)
}

fn request() -> GenerateRequest {
    let mut req = GenerateRequest::new("a small red circle");
    req.width = 40;
    req.height = 32;
    req.steps = 6;
    req.guidance = 3.0;
    req.max_sequence_length = 8;
    req.seed = 3;
    req.ras = RasConfig {
        scheduler_start_step: 2,
        error_reset_steps: vec![4],
        ..RasConfig::sd3_example(6)
    };
    req
}

fn texture(device: &wgpu::Device, format: wgpu::TextureFormat, usage: wgpu::TextureUsages) -> wgpu::Texture {
    device.create_texture(&wgpu::TextureDescriptor {
        label: Some("host texture"),
        size: wgpu::Extent3d {
            width: 40,
            height: 32,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage,
        view_formats: &[],
    })
}

/// The texture's texels as bytes, rows packed.
fn read_texture(device: &wgpu::Device, queue: &wgpu::Queue, t: &wgpu::Texture, texel: u32) -> Vec<u8> {
    let (w, h) = (t.width(), t.height());
    let row = (w * texel).div_ceil(256) * 256;
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (row * h) as u64,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_texture_to_buffer(
        t.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row),
                rows_per_image: None,
            },
        },
        t.size(),
    );
    queue.submit([encoder.finish()]);
    buffer.slice(..).map_async(wgpu::MapMode::Read, |r| r.unwrap());
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let data = buffer.slice(..).get_mapped_range().unwrap();
    data.chunks(row as usize)
        .flat_map(|r| r[..(w * texel) as usize].to_vec())
        .collect()
}

#[test]
fn job_steps_previews_and_texture_output_match_generate() {
    let (device, queue, gpu) = host_device();
    let mut pipeline = Pipeline::load(&gpu, &model(), PipelineOptions::default()).unwrap();
    let req = request();
    let whole = pipeline.generate(&req, |_| ControlFlow::Continue(())).unwrap();
    let want = &whole.images[0];

    // Step by step, with a preview after every step.
    let mut job = pipeline.start(&req).unwrap();
    let mut kinds = Vec::new();
    while !job.is_done() {
        kinds.push(job.step().unwrap().kind);
        let preview = job.preview().unwrap();
        assert_eq!((preview[0].width, preview[0].height), (10, 8));
        assert_eq!(preview[0].rgb.len(), 10 * 8 * 3);
    }
    assert_eq!(kinds.len(), 6);
    assert!(kinds.contains(&ras::ras::StepKind::Ras));
    let stepped = job.finish().unwrap();
    assert_eq!(&stepped.images[0], want, "step-by-step differs from generate()");

    // Straight into the host's textures.
    for (format, texel) in [
        (wgpu::TextureFormat::Rgba8Unorm, 4),
        (wgpu::TextureFormat::Rgba16Float, 8),
    ] {
        let usage = wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_SRC;
        let tex = texture(&device, format, usage);
        let mut job = pipeline.start(&req).unwrap();
        while !job.is_done() {
            job.step().unwrap();
        }
        let out = job.finish_into(&tex).unwrap();
        assert!(out.images.is_empty());
        let bytes = read_texture(&device, &queue, &tex, texel);
        let texels: Vec<f32> = match texel {
            4 => bytes.iter().map(|&b| b as f32).collect(),
            _ => bytemuck::pod_collect_to_vec::<u8, half::f16>(&bytes)
                .iter()
                .map(|v| v.to_f32() * 255.0)
                .collect(),
        };
        for (i, px) in texels.chunks(4).enumerate() {
            assert_eq!(px[3], 255.0, "{format:?}: alpha at {i}");
            for (c, (&got, &rgb)) in px[..3].iter().zip(&want.rgb[i * 3..i * 3 + 3]).enumerate() {
                let d = (got - rgb as f32).abs();
                assert!(d <= 1.0, "{format:?}: pixel {i} channel {c}: {got} vs {rgb}");
            }
        }
    }

    // A texture without STORAGE_BINDING is a clear error.
    let tex = texture(
        &device,
        wgpu::TextureFormat::Rgba8Unorm,
        wgpu::TextureUsages::COPY_SRC,
    );
    let mut job = pipeline.start(&req).unwrap();
    while !job.is_done() {
        job.step().unwrap();
    }
    let msg = job.finish_into(&tex).err().expect("needs storage").to_string();
    assert!(msg.contains("STORAGE_BINDING"), "{msg}");
}

/// Bounded submissions: under a tiny submit budget every launch larger
/// than it is split into launches over ranges of its workgroups and each
/// submit carries little; `advance` hands a step to the GPU a budget at a
/// time. Both give exactly the bytes of an unbounded run.
#[test]
fn bounded_submits_and_advance_give_identical_images() {
    let (_, _, gpu) = host_device();
    let mut pipeline = Pipeline::load(&gpu, &model(), PipelineOptions::default()).unwrap();
    let req = request();
    gpu.set_max_submit_ms(Some(f64::INFINITY));
    let before = gpu.counters();
    let want = pipeline
        .generate(&req, |_| ControlFlow::Continue(()))
        .unwrap()
        .images;
    let after = gpu.counters();
    let (dispatches, submits) = (
        after.dispatches - before.dispatches,
        after.submits - before.submits,
    );

    // Estimated at a software adapter's rates, 1e-4 ms is a few hundred
    // FLOPs: nearly every launch of more than one workgroup splits.
    gpu.set_max_submit_ms(Some(1e-4));
    let before = gpu.counters();
    let split = pipeline
        .generate(&req, |_| ControlFlow::Continue(()))
        .unwrap()
        .images;
    let after = gpu.counters();
    assert_eq!(split, want, "split launches changed the image");
    let more = after.dispatches - before.dispatches;
    assert!(
        more > 2 * dispatches,
        "{more} vs {dispatches} launches: nothing was split"
    );
    let more = after.submits - before.submits;
    assert!(
        more > 10 * submits,
        "{more} vs {submits} submits: work was not spread"
    );

    // advance() cuts a step into parts of its own budget, whatever the
    // submit budget (none, by default, on a software adapter).
    gpu.set_max_submit_ms(Some(f64::INFINITY));
    let mut job = pipeline.start(&req).unwrap();
    let (mut calls, mut steps) = (0, 0);
    while !job.is_done() {
        calls += 1;
        if let Advance::Stepped(info) = job.advance(0.01).unwrap() {
            assert_eq!(info.step, steps);
            steps += 1;
        }
    }
    assert_eq!(steps, 6);
    assert!(
        calls > 4 * steps,
        "{calls} calls for {steps} steps: advance did whole steps"
    );
    assert!(job.advance(0.01).is_err(), "a finished job cannot advance");
    assert_eq!(job.finish().unwrap().images, want, "advance changed the image");
    gpu.set_max_submit_ms(None);
}

#[test]
fn finishing_early_is_an_error() {
    let (_, _, gpu) = host_device();
    let mut pipeline = Pipeline::load(&gpu, &model(), PipelineOptions::default()).unwrap();
    let mut job = pipeline.start(&request()).unwrap();
    job.step().unwrap();
    let msg = job.finish().err().expect("not done").to_string();
    assert!(msg.contains("5 of 6 steps left"), "{msg}");
}

/// The host's device lost in the middle of a job: the next `step()` is a
/// `DeviceLost` error (no panic, no hang), the pipeline can be dropped, and
/// a new pipeline on a new device generates the same image as ever.
#[test]
fn device_loss_mid_job_is_an_error_and_a_new_device_recovers() {
    let (device, _queue, gpu) = host_device();
    let mut pipeline = Pipeline::load(&gpu, &model(), PipelineOptions::default()).unwrap();
    let mut job = pipeline.start(&request()).unwrap();
    job.step().unwrap();
    device.destroy();
    let err = job.step().expect_err("a step on a destroyed device");
    assert!(matches!(err, ras::Error::DeviceLost { .. }), "{err}");
    drop(job);
    drop(pipeline);
    let (_device, _queue, fresh) = host_device();
    let mut pipeline = Pipeline::load(&fresh, &model(), PipelineOptions::default()).unwrap();
    let got = pipeline
        .generate(&request(), |_| std::ops::ControlFlow::Continue(()))
        .unwrap();
    let (_device, _queue, other) = host_device();
    let mut reference = Pipeline::load(&other, &model(), PipelineOptions::default()).unwrap();
    let want = reference
        .generate(&request(), |_| std::ops::ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(got.images[0], want.images[0]);
}
