//! `ras compare`: dense vs RAS from the same seed and noise, with images,
//! maps, PSNR/SSIM, timings, thresholds for CI and a JSON summary.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use ras::eval::adherence::read_expected;
use ras::eval::{compare, compute_map, diff_heatmap, token_counts, warm_up, Palette, PromptComparison};
use ras::models::Family;
use ras::pipeline::{parameters, write_png, GenerateRequest, Pipeline, PipelineOptions};
use serde_json::json;

use super::generate::DEFAULT_MODEL;
use super::ras_args::RasArgs;

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Model folder or cached Hugging Face repo id (default: the built-in demo model).
    #[arg(long, env = "RAS_MODEL")]
    pub model: Option<String>,
    /// One prompt.
    #[arg(long, conflicts_with_all = ["prompts", "adherence"], required_unless_present_any = ["prompts", "adherence"])]
    pub prompt: Option<String>,
    /// A file with one prompt per line (empty lines and lines starting with # are skipped).
    #[arg(long, conflicts_with = "adherence")]
    pub prompts: Option<PathBuf>,
    /// The demo model's prompt-adherence check: a demo_prompts.json (prompt,
    /// shape, colour, background, position per entry); both images of every
    /// prompt are judged with the model folder's demo_palette.json, and two
    /// scores are reported: adherence (background, colour and any named
    /// position right) and shape (the object's outline matches the asked
    /// shape).
    #[arg(long)]
    pub adherence: Option<PathBuf>,
    #[arg(long = "negative-prompt", default_value = "")]
    pub negative_prompt: String,
    /// Seed of the initial noise, shared by both runs (prompt i uses seed + i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Default: the model's (SD3 28, Lumina-Next 30).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Default: the model's (SD3 7, Lumina-Next 4).
    #[arg(long)]
    pub guidance: Option<f32>,
    /// Default: the model's native size.
    #[arg(long)]
    pub width: Option<usize>,
    #[arg(long)]
    pub height: Option<usize>,
    #[arg(long = "max-sequence-length", default_value_t = 256)]
    pub max_sequence_length: usize,
    #[arg(long = "no-t5")]
    pub no_t5: bool,
    /// Where dense.png, ras.png, diff.png (|dense − ras|, inferno, saturating
    /// at 64/255) and compute.png (per token: on how many steps it was
    /// computed, over the RAS image) go; a numbered subfolder per prompt
    /// when there are several.
    #[arg(long = "out-dir", default_value = "compare")]
    pub out_dir: PathBuf,
    /// Exit with status 1 when a prompt's SSIM is below this.
    #[arg(long = "min-ssim")]
    pub min_ssim: Option<f64>,
    /// Exit with status 1 when a prompt's PSNR (dB) is below this.
    #[arg(long = "min-psnr")]
    pub min_psnr: Option<f64>,
    /// Print a machine-readable summary (JSON) on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub ras: RasArgs,
}

/// Runs the comparison; `Ok(false)` when a threshold failed.
pub fn run(gpu: &ras::gpu::Gpu, args: &CompareArgs) -> Result<bool> {
    let expected = match &args.adherence {
        Some(file) => Some(read_expected(file)?),
        None => None,
    };
    let prompts = match (&args.prompt, &args.prompts, &expected) {
        (_, _, Some(e)) => e.iter().map(|e| e.prompt.clone()).collect(),
        (Some(p), _, _) => vec![p.clone()],
        (None, Some(file), _) => std::fs::read_to_string(file)
            .with_context(|| format!("reading {}", file.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect(),
        (None, None, None) => bail!("give --prompt, --prompts or --adherence"),
    };
    if prompts.is_empty() {
        bail!("no prompts to compare");
    }
    let model = args.model.clone().unwrap_or_else(|| DEFAULT_MODEL.to_owned());
    let options = PipelineOptions {
        keep_loaded: true,
        no_t5: args.no_t5,
        cancel: Some(super::catch_interrupts()),
    };
    let mut pipeline =
        Pipeline::load(gpu, &model, options).with_context(|| format!("opening the model '{model}'"))?;
    let t5 = (pipeline.family() == Family::Sd3).then_some(pipeline.dir.has_t5 && !args.no_t5);
    let palette = match &expected {
        Some(_) => Some(Palette::from_file(&pipeline.dir.root.join("demo_palette.json"))?),
        None => None,
    };
    let request = |pipeline: &Pipeline, prompt: &str| {
        let mut req = pipeline.request(prompt);
        req.negative_prompt = args.negative_prompt.clone();
        req.width = args.width.unwrap_or(req.width);
        req.height = args.height.unwrap_or(req.height);
        req.steps = args.steps.unwrap_or(req.steps);
        req.guidance = args.guidance.unwrap_or(req.guidance);
        req.max_sequence_length = args.max_sequence_length;
        req
    };
    let template = request(&pipeline, "");
    let ras = args.ras.config(
        template.steps,
        pipeline.image_tokens(&template),
        pipeline.ras_defaults(&template),
    )?;
    let mut rows = Vec::new();
    let mut ok = true;
    for (i, prompt) in prompts.iter().enumerate() {
        let mut req = request(&pipeline, prompt);
        req.seed = args.seed + i as u64;
        req.ras = ras.clone();
        pipeline.validate(&req)?;
        if i == 0 {
            warm_up(&mut pipeline, &req, &ras)?;
        }
        if !args.json {
            eprintln!("[{}/{}] {prompt}", i + 1, prompts.len());
        }
        let c = compare(&mut pipeline, &req, &ras)?;
        let dir = if prompts.len() == 1 {
            args.out_dir.clone()
        } else {
            args.out_dir.join(format!("{i:03}"))
        };
        write_outputs(&dir, &pipeline, &req, &c, t5)?;
        let pass = args.min_ssim.is_none_or(|m| c.ssim >= m) && args.min_psnr.is_none_or(|m| c.psnr >= m);
        ok &= pass;
        let (judged, shaped) = match (&palette, &expected) {
            (Some(p), Some(e)) => {
                let (dense, ras) = (
                    p.check(&c.dense.generation.images[0]),
                    p.check(&c.ras.generation.images[0]),
                );
                (
                    json!({"dense": dense.passes(&e[i]), "ras": ras.passes(&e[i])}),
                    json!({"dense": dense.shape_right(&e[i]), "ras": ras.shape_right(&e[i]),
                           "dense_found": dense.shape, "ras_found": ras.shape}),
                )
            }
            _ => (json!(null), json!(null)),
        };
        rows.push(json!({
            "adherent": judged,
            "shape_right": shaped,
            "prompt": prompt,
            "seed": req.seed,
            "psnr_db": finite(c.psnr),
            "ssim": c.ssim,
            "dense_s": c.dense.denoise_s,
            "ras_s": c.ras.denoise_s,
            "speedup": c.speedup(),
            "pass": pass,
            "dir": dir.display().to_string(),
        }));
    }
    let mean = |k: &str| rows.iter().filter_map(|r| r[k].as_f64()).sum::<f64>() / rows.len() as f64;
    let min = |k: &str| {
        rows.iter()
            .filter_map(|r| r[k].as_f64())
            .fold(f64::INFINITY, f64::min)
    };
    let summary = json!({
        "model": pipeline.dir.name,
        "adapter": gpu.adapter_name(),
        "steps": template.steps,
        "guidance": template.guidance,
        "ras": {
            "sample_ratio": ras.sample_ratio,
            "metric": ras.metric.name(),
            "high_ratio": ras.high_ratio,
            "starvation_scale": ras.starvation_scale,
            "scheduler_start_step": ras.scheduler_start_step,
            "scheduler_end_step": ras.scheduler_end_step,
            "error_reset_steps": ras.error_reset_steps,
            "skip_num_step": ras.skip_num_step,
            "skip_num_step_length": ras.skip_num_step_length,
        },
        "min_ssim": args.min_ssim,
        "min_psnr": args.min_psnr,
        "mean_ssim": mean("ssim"),
        "lowest_ssim": min("ssim"),
        "lowest_psnr_db": finite(min("psnr_db")),
        "mean_speedup": mean("speedup"),
        "adherence": expected.as_ref().map(|_| {
            let share = |what: &str, k: &str| {
                rows.iter().filter(|r| r[what][k] == json!(true)).count() as f64 / rows.len() as f64
            };
            json!({"dense": share("adherent", "dense"), "ras": share("adherent", "ras"),
                   "shape_dense": share("shape_right", "dense"), "shape_ras": share("shape_right", "ras")})
        }),
        "pass": ok,
        "prompts": rows,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{:>4} {:>9} {:>7} {:>9} {:>9} {:>8}  prompt",
            "#", "PSNR dB", "SSIM", "dense s", "RAS s", "speed-up"
        );
        for (i, r) in summary["prompts"].as_array().into_iter().flatten().enumerate() {
            println!(
                "{:>4} {:>9} {:>7.4} {:>9.2} {:>9.2} {:>7.2}x  {}{}",
                i,
                r["psnr_db"].as_f64().map_or("inf".into(), |v| format!("{v:.2}")),
                r["ssim"].as_f64().unwrap_or(0.0),
                r["dense_s"].as_f64().unwrap_or(0.0),
                r["ras_s"].as_f64().unwrap_or(0.0),
                r["speedup"].as_f64().unwrap_or(0.0),
                r["prompt"].as_str().unwrap_or(""),
                if r["pass"].as_bool() == Some(false) {
                    "  BELOW THRESHOLD"
                } else {
                    ""
                }
            );
        }
        if let Some(a) = summary["adherence"].as_object() {
            let pct = |k: &str| a[k].as_f64().unwrap_or(0.0) * 100.0;
            println!(
                "prompt adherence (colour, position, background): dense {:.1}%, RAS {:.1}%; shape: dense {:.1}%, RAS {:.1}%",
                pct("dense"),
                pct("ras"),
                pct("shape_dense"),
                pct("shape_ras")
            );
        }
        println!(
            "mean SSIM {:.4}, mean speed-up {:.2}x on {}; images in {}",
            mean("ssim"),
            mean("speedup"),
            gpu.adapter_name(),
            args.out_dir.display()
        );
    }
    Ok(ok)
}

/// JSON has no infinity: identical images (PSNR ∞) are written as null.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn write_outputs(
    dir: &Path,
    p: &Pipeline,
    req: &GenerateRequest,
    c: &PromptComparison,
    t5: Option<bool>,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (dense, ras) = (&c.dense.generation.images[0], &c.ras.generation.images[0]);
    let dense_req = GenerateRequest {
        ras: ras::ras::RasConfig::dense(req.steps),
        ..req.clone()
    };
    write_png(
        &dir.join("dense.png"),
        dense,
        &parameters(&dense_req, &p.dir.name, t5, 0),
    )?;
    write_png(&dir.join("ras.png"), ras, &parameters(req, &p.dir.name, t5, 0))?;
    write_png(
        &dir.join("diff.png"),
        &diff_heatmap(dense, ras)?,
        "|dense - ras|, inferno, full scale 64",
    )?;
    let grid = p.size_multiple();
    let (gw, gh) = (req.width / grid, req.height / grid);
    let counts = token_counts(req.steps, &c.ras.generation.active, gw * gh, 0);
    let map = compute_map(ras, &counts, gw, req.steps)?;
    write_png(
        &dir.join("compute.png"),
        &map,
        "steps each token was computed, inferno",
    )?;
    Ok(())
}
