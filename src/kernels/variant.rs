//! Picks each kernel family's implementation for a device, safely: a
//! variant runs only where the device has the features it needs **and** it
//! matched the portable kernel in a short self-test on this device (the
//! verdict is cached per adapter, driver, `ras` version and kernel source,
//! so later runs skip the test). Software adapters keep the portable kernels, which are
//! tuned for them. `RAS_KERNELS=portable|tiled|coopmat` forces a variant
//! (an error where the device lacks its features).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use super::linear::{linear_into_variant, Epilogue, LinearOptions, Rows};
use super::rows::{convert, Indices};
use crate::error::{Error, Result};
use crate::gpu::{Choice, DType, Gpu, Variant, Variants};
use crate::reference::{filler, rel_err};

/// The environment variable that forces a variant.
pub const ENV: &str = "RAS_KERNELS";

/// What `variant` needs that this device lacks, if anything.
pub fn missing_features(gpu: &Gpu, variant: Variant) -> Option<String> {
    let caps = gpu.capabilities();
    let mut missing = Vec::new();
    if variant == Variant::Coopmat {
        if !caps.cooperative_matrix {
            missing.push("cooperative matrices (16×16×16 f16 → f32)");
        }
        if !caps.shader_f16 {
            missing.push("shader-f16");
        }
        if gpu.fixed_subgroup_size().is_none() {
            missing.push("a fixed subgroup size");
        }
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// The variants this device can run (the portable one always).
pub fn runnable(gpu: &Gpu) -> Vec<Variant> {
    Variant::ALL
        .into_iter()
        .filter(|v| missing_features(gpu, *v).is_none())
        .collect()
}

/// The device's chosen variants, choosing (and self-testing) on first use.
pub fn variants(gpu: &Gpu) -> Result<Arc<Variants>> {
    if let Some(v) = gpu.chosen_variants() {
        return Ok(v);
    }
    let forced = std::env::var(ENV).ok();
    Ok(gpu.set_variants(choose(gpu, forced.as_deref())?))
}

/// The choice for this device with `forced` as the value of `RAS_KERNELS`
/// (not recorded on the device; [`variants`] does that).
pub fn choose(gpu: &Gpu, forced: Option<&str>) -> Result<Variants> {
    Ok(Variants {
        linear: choose_family(gpu, Family::Linear, forced)?,
        attention: choose_family(gpu, Family::Attention, forced)?,
    })
}

/// The kernel families with variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Linear,
    Attention,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Linear => "linear",
            Family::Attention => "attention",
        }
    }
}

/// Candidates on a hardware adapter, fastest first.
const CANDIDATES: [Variant; 2] = [Variant::Coopmat, Variant::Tiled];

fn choose_family(gpu: &Gpu, family: Family, forced: Option<&str>) -> Result<Choice> {
    if let Some(forced) = forced {
        let variant = Variant::parse(forced).ok_or_else(|| {
            Error::Invalid(format!(
                "{ENV}={forced} is not a kernel variant; use portable, tiled or coopmat"
            ))
        })?;
        if let Some(missing) = missing_features(gpu, variant) {
            return Err(Error::Invalid(format!(
                "{ENV}={forced}: this adapter ({}) lacks {missing}; use portable or tiled",
                gpu.adapter_name()
            )));
        }
        return Ok(Choice {
            variant,
            reason: format!("forced by {ENV}"),
            warning: None,
        });
    }
    if gpu.is_software() {
        return Ok(Choice {
            variant: Variant::Portable,
            reason: "software adapter: kernels without workgroup memory or barriers run fastest on CPU-backed Vulkan"
                .into(),
            warning: None,
        });
    }
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    for candidate in CANDIDATES {
        if let Some(missing) = missing_features(gpu, candidate) {
            notes.push(format!("{} needs {missing}", candidate.name()));
            continue;
        }
        let (verdict, cached) = verdict(gpu, family, candidate)?;
        let how = if cached { "cached self-test" } else { "self-test" };
        match verdict {
            Ok(()) => {
                notes.insert(0, format!("passed its {how} against the portable kernel"));
                return Ok(Choice {
                    variant: candidate,
                    reason: notes.join("; "),
                    warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
                });
            }
            Err(why) => {
                let line = format!("{} failed its {how} ({why})", candidate.name());
                warnings.push(line.clone());
                notes.push(line);
            }
        }
    }
    Ok(Choice {
        variant: Variant::Portable,
        reason: notes.join("; "),
        warning: (!warnings.is_empty())
            .then(|| format!("{}; using the portable kernel", warnings.join("; "))),
    })
}

/// Where verdicts are kept: `RAS_CACHE_DIR`, else `$XDG_CACHE_HOME/ras`,
/// else `~/.cache/ras`.
fn cache_file() -> Option<PathBuf> {
    let dir = std::env::var_os("RAS_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("ras")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("ras")))?;
    Some(dir.join("kernel-verdicts.tsv"))
}

/// FNV-1a of a family's shader sources, so a verdict is redone whenever a
/// kernel changes, not only with the version.
fn kernels_hash(family: Family) -> u64 {
    let prefix = format!("shaders/{}", family.name());
    crate::gpu::all_sources()
        .iter()
        .filter(|(path, _)| path.starts_with(&prefix))
        .flat_map(|(_, source)| source.bytes())
        .fold(0xcbf29ce484222325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        })
}

/// The self-test verdict of `variant` on this device: from the cache, or
/// run now and cached. `(verdict, from the cache)`.
fn verdict(gpu: &Gpu, family: Family, variant: Variant) -> Result<(std::result::Result<(), String>, bool)> {
    let key = format!(
        "{}\t{} {:016x}\t{} {}",
        gpu.driver_key(),
        env!("CARGO_PKG_VERSION"),
        kernels_hash(family),
        family.name(),
        variant.name()
    );
    let file = cache_file();
    if let Some(text) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        // The last line for a key wins.
        if let Some(line) = text.lines().rev().find(|l| l.starts_with(&format!("{key}\t"))) {
            let rest = &line[key.len() + 1..];
            let verdict = match rest.strip_prefix("fail ") {
                Some(why) => Err(why.to_string()),
                None => Ok(()),
            };
            return Ok((verdict, true));
        }
    }
    let verdict = match family {
        Family::Linear => self_test(gpu, variant)?,
        Family::Attention => attention_self_test(gpu, variant)?,
    };
    if let Some(f) = file {
        // A read-only or missing cache only costs the self-test next time.
        let line = match &verdict {
            Ok(()) => format!("{key}\tpass\n"),
            Err(why) => format!("{key}\tfail {}\n", why.replace(['\n', '\t'], " ")),
        };
        let _ = f.parent().map(std::fs::create_dir_all);
        if let Ok(mut out) = std::fs::OpenOptions::new().create(true).append(true).open(&f) {
            let _ = out.write_all(line.as_bytes());
        }
    }
    Ok((verdict, false))
}

/// How far `variant` may stray from the portable kernel.
fn tolerance(variant: Variant, act: DType) -> f64 {
    match (variant, act) {
        // f16 products (coopmat) round each input to 11 bits.
        (Variant::Coopmat, _) => 1e-2,
        // f16 outputs round the sums, whose order differs between kernels.
        (_, DType::F16) => 2e-3,
        _ => 1e-5,
    }
}

/// Runs `run` with the portable kernel and with `variant` and compares:
/// `Some(why)` when `variant` fails (kernel errors such as a driver
/// rejecting the shader are a failed verdict; a lost device is an error).
fn against_portable(
    variant: Variant,
    act: DType,
    run: impl Fn(Variant) -> Result<Vec<f32>>,
    what: impl FnOnce() -> String,
) -> Result<Option<String>> {
    let want = run(Variant::Portable)?;
    let got = match run(variant) {
        Ok(got) => got,
        Err(e @ Error::DeviceLost { .. }) => return Err(e),
        Err(e) => return Ok(Some(e.to_string())),
    };
    let (err, tol) = (rel_err(&got, &want), tolerance(variant, act));
    Ok((err.is_nan() || err > tol).then(|| format!("{}: relative error {err:.2e} > {tol:.0e}", what())))
}

/// Runs `variant` and the portable linear kernel on the same inputs (sizes
/// off the tile grid, each weight dtype, bias, gathered and scattered rows,
/// and, where the device has shader-f16, f16 activations with a GELU
/// epilogue) and compares. Kernel failures (a driver rejecting the shader) are a
/// failed verdict, not an error; a lost device is an error.
pub fn self_test(gpu: &Gpu, variant: Variant) -> Result<std::result::Result<(), String>> {
    // (m, n, k, weight dtype, activation dtype)
    let mut cases = vec![
        (70, 75, 48, DType::F16, DType::F32),
        (33, 130, 37, DType::F32, DType::F32),
        (65, 66, 68, DType::BF16, DType::F32),
    ];
    if gpu.capabilities().shader_f16 {
        cases.push((77, 40, 52, DType::F16, DType::F16));
    }
    for (i, &(m, n, k, dtype, act)) in cases.iter().enumerate() {
        let run = |v: Variant| -> Result<Vec<f32>> {
            let x = convert(
                gpu,
                &gpu.upload_f32(&filler(m * k, 3 * i as u32 + 1), &[m, k])?,
                act,
            )?;
            let w = weights(gpu, &filler(n * k, 3 * i as u32 + 2), &[n, k], dtype)?;
            let b = weights(gpu, &filler(n, 3 * i as u32 + 3), &[n], dtype)?;
            // Reversed input rows into every other output row.
            let src: Vec<u32> = (0..m as u32).rev().collect();
            let dst: Vec<u32> = (0..m as u32).map(|r| 2 * r).collect();
            let (si, di) = (Indices::upload(gpu, &src)?, Indices::upload(gpu, &dst)?);
            let out = convert(gpu, &gpu.upload_f32(&vec![0.0; 2 * m * n], &[2 * m, n])?, act)?;
            let rows = Rows {
                input: Some(&si),
                output: Some(&di),
            };
            let options = LinearOptions {
                rows,
                epilogue: match act {
                    DType::F16 => Epilogue::GeluTanh,
                    _ => Epilogue::None,
                },
                ..Default::default()
            };
            linear_into_variant(gpu, &x, &w, Some(&b), &out, options, v)?;
            gpu.read_f32(&out)
        };
        let what = || {
            format!(
                "linear {m}x{n}x{k} {} weights, {} activations",
                dtype.name(),
                act.name()
            )
        };
        if let Some(why) = against_portable(variant, act, run, what)? {
            return Ok(Err(why));
        }
    }
    Ok(Ok(()))
}

fn weights(gpu: &Gpu, v: &[f32], shape: &[usize], dtype: DType) -> Result<crate::gpu::Tensor> {
    let bytes: Vec<u8> = match dtype {
        DType::F16 => v
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        DType::BF16 => v
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect(),
        _ => bytemuck::cast_slice(v).to_vec(),
    };
    gpu.upload_weight(&bytes, shape, dtype)
}

/// Runs `variant` and the portable attention kernel on the same inputs
/// (grouped heads, head dims 64 and 72, lengths off the tile grid, a key
/// bias with masked keys, strided views, and f16 activations where the
/// device has shader-f16) and compares, as [`self_test`] does for linear.
pub fn attention_self_test(gpu: &Gpu, variant: Variant) -> Result<std::result::Result<(), String>> {
    use super::attention::{attention_views_variant, AttentionOptions, HeadsView};
    // (batch, queries, keys, query heads, kv heads, head dim, key bias, dtype)
    let mut cases = vec![
        (2, 37, 45, 4, 2, 64, true, DType::F32),
        (1, 70, 19, 3, 3, 72, false, DType::F32),
    ];
    if gpu.capabilities().shader_f16 {
        cases.push((1, 65, 33, 2, 1, 64, true, DType::F16));
    }
    for (i, &(b, lq, lk, hq, hkv, d, biased, act)) in cases.iter().enumerate() {
        let seed = 10 * i as u32;
        let run = |v: Variant| -> Result<Vec<f32>> {
            let q = convert(
                gpu,
                &gpu.upload_f32(&filler(b * lq * hq * d, seed + 1), &[b, lq, hq, d])?,
                act,
            )?;
            // K and V side by side in one buffer, as SD3's fused cache holds them.
            let kv = convert(
                gpu,
                &gpu.upload_f32(&filler(b * lk * 2 * hkv * d, seed + 2), &[b * lk, 2 * hkv * d])?,
                act,
            )?;
            let mask: Vec<f32> = (0..b * lk)
                .map(|j| {
                    if j % 7 == 3 {
                        f32::NEG_INFINITY
                    } else {
                        (j % 3) as f32 * 0.5
                    }
                })
                .collect();
            let key_bias = gpu.upload_f32(&mask, &[b, lk])?;
            let half = |offset| HeadsView {
                tensor: &kv,
                batch: b,
                len: lk,
                heads: hkv,
                head_dim: d,
                offset,
                row_stride: 2 * hkv * d,
            };
            let opts = AttentionOptions {
                key_bias: biased.then_some(&key_bias),
                ..AttentionOptions::scale(1.0 / (d as f32).sqrt())
            };
            let out = attention_views_variant(
                gpu,
                HeadsView::contiguous("q", &q)?,
                half(0),
                half(hkv * d),
                &opts,
                v,
            )?;
            gpu.read_f32(&out)
        };
        let what = || {
            format!(
                "attention {b}x{lq}x{lk} {hq}/{hkv} heads of {d}, {} activations",
                act.name()
            )
        };
        if let Some(why) = against_portable(variant, act, run, what)? {
            return Ok(Err(why));
        }
    }
    Ok(Ok(()))
}
