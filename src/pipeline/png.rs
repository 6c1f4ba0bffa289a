//! PNG output with the generation settings as text metadata, in the
//! `parameters` chunk layout of the AUTOMATIC1111 web UI that other
//! diffusion tools read: the prompt, a `Negative prompt:` line, then
//! `Key: value` pairs.

use std::path::Path;

use crate::error::Result;
use crate::output::write_atomic;
use crate::ras::RasConfig;

use super::generate::{GenerateRequest, Image};

/// The `parameters` text of image `index` of a request; `t5` is whether an
/// SD3 model ran with T5 (`None` for models without one).
pub fn parameters(req: &GenerateRequest, model: &str, t5: Option<bool>, index: usize) -> String {
    let r: &RasConfig = &req.ras;
    let resets: Vec<String> = r.error_reset_steps.iter().map(usize::to_string).collect();
    let ras = if r.is_dense() {
        "off (dense)".to_owned()
    } else {
        format!(
            "sample ratio {}, metric {}, high ratio {}, starvation scale {}, start step {}, end step {}, \
             reset steps [{}], skip num step {}, skip num step length {}",
            r.sample_ratio,
            r.metric.name(),
            r.high_ratio,
            r.starvation_scale,
            r.scheduler_start_step,
            r.scheduler_end_step,
            resets.join(" "),
            r.skip_num_step,
            r.skip_num_step_length
        )
    };
    format!(
        "{}\nNegative prompt: {}\nSteps: {}, Sampler: Euler (flow matching), CFG scale: {}, Seed: {}, \
         Batch index: {index}, Size: {}x{}, Model: {model}, {}Max sequence length: {}, \
         Latents: {}, RAS: {ras}, Version: ras {}",
        req.prompt,
        req.negative_prompt,
        req.steps,
        req.guidance,
        req.seed,
        req.width,
        req.height,
        match t5 {
            Some(true) => "T5: on, ",
            Some(false) => "T5: off, ",
            None => "",
        },
        req.max_sequence_length,
        if req.latents_init.is_some() {
            "from file"
        } else {
            "seeded ChaCha8 normal"
        },
        env!("CARGO_PKG_VERSION"),
    )
}

/// Writes an RGB PNG with a `parameters` text chunk (tEXt when the text is
/// Latin-1, else UTF-8 iTXt), atomically (see [`crate::output`]).
pub fn write_png(path: &Path, image: &Image, parameters: &str) -> Result<()> {
    write_atomic(path, |out| {
        let mut encoder = png::Encoder::new(out, image.width as u32, image.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let latin1 = parameters.chars().all(|c| (c as u32) < 256 && c != '\0');
        let key = "parameters".to_owned();
        if latin1 {
            encoder.add_text_chunk(key, parameters.to_owned())
        } else {
            encoder.add_itxt_chunk(key, parameters.to_owned())
        }
        .map_err(std::io::Error::other)?;
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(&image.rgb)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })
}
