//! One denoising step per call, as a render loop would run it, with a cheap
//! preview of the current latents after every step (a linear latent → RGB
//! map, at latent resolution) and the final image at the end.
//!
//!     cargo run --release --example step_preview -- "a small red star at the top left on a light blue background" previews/

use std::path::Path;

use anyhow::{Context, Result};
use ras::gpu::Gpu;
use ras::pipeline::{GenerateRequest, Image, Pipeline, PipelineOptions, DEMO_MODEL};

fn save(image: &Image, path: &Path) -> Result<()> {
    image::RgbImage::from_raw(image.width as u32, image.height as u32, image.rgb.clone())
        .context("image size")?
        .save(path)
        .with_context(|| format!("writing {}", path.display()))
}

/// Writes `step_NN.png` previews and `final.png` into `dir`.
fn run(prompt: &str, steps: usize, dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir)?;
    let gpu = Gpu::new(&Default::default())?;
    let mut pipeline = Pipeline::load(&gpu, DEMO_MODEL, PipelineOptions::default())?;
    let mut request = GenerateRequest::new(prompt);
    request.width = 256;
    request.height = 256;
    request.steps = steps;
    request.ras = ras::ras::RasConfig::sd3_example(steps);
    let mut job = pipeline.start(&request)?;
    let mut previews = 0;
    while !job.is_done() {
        let info = job.step()?;
        let preview = &job.preview()?[0];
        save(preview, &dir.join(format!("step_{:02}.png", info.step)))?;
        println!(
            "step {:>2}/{}: {:?}, {} of {} tokens computed",
            info.step + 1,
            info.steps,
            info.kind,
            info.active_tokens,
            info.total_tokens
        );
        previews += 1;
    }
    let out = job.finish()?;
    save(&out.images[0], &dir.join("final.png"))?;
    Ok(previews)
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let prompt = args.first().map_or(
        "a small red star at the top left on a light blue background",
        String::as_str,
    );
    let dir = args.get(1).map_or("previews", String::as_str);
    run(prompt, 28, Path::new(dir))?;
    println!("previews and final.png in {dir}/");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_a_preview_per_step() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            super::run("a red circle on a blue background", 6, dir.path()).unwrap(),
            6
        );
        for i in 0..6 {
            let p = image::open(dir.path().join(format!("step_{i:02}.png"))).unwrap();
            assert_eq!((p.width(), p.height()), (32, 32));
        }
        assert_eq!(image::open(dir.path().join("final.png")).unwrap().width(), 256);
    }
}
