//! PNG output with the generation settings as text metadata, in the
//! `parameters` chunk layout of the AUTOMATIC1111 web UI that other
//! diffusion tools read: the prompt, a `Negative prompt:` line, then
//! `Key: value` pairs.

use std::io::{BufRead, Seek, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::output::write_atomic;
use crate::ras::RasConfig;

use super::generate::Image;
use super::request::GenerateRequest;

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

/// Writes an RGB PNG with a `parameters` text chunk (see [`encode_png`]),
/// atomically (see [`crate::output`]).
pub fn write_png(path: &Path, image: &Image, parameters: &str) -> Result<()> {
    write_atomic(path, |out| encode_png(out, image, parameters))
}

/// Encodes an RGB PNG with a `parameters` text chunk: tEXt when the text is
/// Latin-1 without NUL (what most readers show), else UTF-8 iTXt.
pub fn encode_png(out: impl Write, image: &Image, parameters: &str) -> std::io::Result<()> {
    let mut encoder = png::Encoder::new(out, image.width as u32, image.height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let latin1 = parameters.chars().all(|c| (c as u32) < 256 && c != '\0');
    let key = PARAMETERS.to_owned();
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
}

/// The `parameters` text of a PNG (as [`encode_png`] writes it, in either
/// chunk kind), `None` when it has none.
pub fn read_parameters(png: impl BufRead + Seek) -> Result<Option<String>> {
    let bad = |e: &dyn std::fmt::Display| Error::Invalid(format!("not a readable PNG: {e}"));
    let mut reader = png::Decoder::new(png).read_info().map_err(|e| bad(&e))?;
    // Text chunks may follow the image data: read to the end.
    let mut pixels = vec![
        0;
        reader
            .output_buffer_size()
            .ok_or_else(|| bad(&"image too large"))?
    ];
    reader.next_frame(&mut pixels).map_err(|e| bad(&e))?;
    reader.finish().map_err(|e| bad(&e))?;
    let info = reader.info();
    if let Some(t) = info
        .uncompressed_latin1_text
        .iter()
        .find(|t| t.keyword == PARAMETERS)
    {
        return Ok(Some(t.text.clone()));
    }
    if let Some(t) = info
        .compressed_latin1_text
        .iter()
        .find(|t| t.keyword == PARAMETERS)
    {
        return t.get_text().map(Some).map_err(|e| bad(&e));
    }
    match info.utf8_text.iter().find(|t| t.keyword == PARAMETERS) {
        Some(t) => t.get_text().map(Some).map_err(|e| bad(&e)),
        None => Ok(None),
    }
}

const PARAMETERS: &str = "parameters";
