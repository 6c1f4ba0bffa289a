//! Embedding `ras` in an application that owns its GPU: the host creates the
//! wgpu device and a texture, hands the device to the engine, and gets the
//! generated image written into its texture on the GPU. Here the texture is
//! then copied back only to save it as a PNG.
//!
//!     cargo run --release --example embed -- "a red circle on a blue background" embed.png

use anyhow::{Context, Result};
use ras::gpu::{Gpu, GpuOptions};
use ras::pipeline::{GenerateRequest, Pipeline, PipelineOptions, DEMO_MODEL};

/// Generates `prompt` into a host texture with `steps` steps and saves it.
fn run(prompt: &str, steps: usize, out: &str) -> Result<()> {
    // The host's device, created however the host likes.
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .context("no GPU adapter (without a GPU: apt-get install -y mesa-vulkan-drivers)")?;
    let (device, queue) = pollster::block_on(adapter.request_device(&Default::default()))?;

    let gpu = Gpu::from_device(
        device.clone(),
        queue.clone(),
        adapter.get_info(),
        &GpuOptions::default(),
    );
    let mut pipeline = Pipeline::load(&gpu, DEMO_MODEL, PipelineOptions::default())?;
    let mut request = GenerateRequest::new(prompt);
    request.width = 256;
    request.height = 256;
    request.steps = steps;
    request.ras = ras::ras::RasConfig::sd3_example(steps);

    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("generated"),
        size: wgpu::Extent3d {
            width: 256,
            height: 256,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba8Unorm,
        usage: wgpu::TextureUsages::STORAGE_BINDING
            | wgpu::TextureUsages::TEXTURE_BINDING
            | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let mut job = pipeline.start(&request)?;
    while !job.is_done() {
        job.step()?; // a render loop would do one of these per frame
    }
    job.finish_into(&texture)?;

    // Only to save the result: copy the texture to a buffer and read it.
    let row = 256 * 4;
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (row * 256) as u64,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_texture_to_buffer(
        texture.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row),
                rows_per_image: None,
            },
        },
        texture.size(),
    );
    queue.submit([encoder.finish()]);
    buffer
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.expect("map"));
    device.poll(wgpu::PollType::wait_indefinitely())?;
    let rgba = buffer.slice(..).get_mapped_range()?.to_vec();
    image::RgbaImage::from_raw(256, 256, rgba)
        .context("texture size")?
        .save(out)
        .with_context(|| format!("writing {out}"))?;
    println!("wrote {out} on {}", gpu.adapter_name());
    Ok(())
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let prompt = args
        .first()
        .map_or("a red circle on a blue background", String::as_str);
    let out = args.get(1).map_or("embed.png", String::as_str);
    run(prompt, 28, out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn embeds_into_a_host_texture() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("embed.png");
        super::run("a red circle on a blue background", 6, out.to_str().unwrap()).unwrap();
        let img = image::open(&out).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (256, 256));
    }
}
