//! What each fuzz target checks, shared by the targets (fuzz/fuzz_targets/,
//! nightly, `cargo fuzz`) and by the stable replay of the committed corpus
//! (tests/fuzz_corpus.rs): one function per target, which takes the raw
//! input and panics when a property fails. "No panic" is always one of them;
//! the others are written next to each function.

#![allow(dead_code)] // Each fuzz target uses one function of this file.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ras::models::lumina::LuminaConfig;
use ras::models::sd3::Sd3Config;
use ras::models::text::clip::ClipConfig;
use ras::models::text::gemma::GemmaConfig;
use ras::models::text::t5::{bucket, T5Config};
use ras::models::vae::VaeConfig;
use ras::pipeline::{
    encode_png, parameters, read_latents_init, read_parameters, GenerateRequest, Image, ModelIndex,
};
use ras::sampling::{FlowMatchEuler, SchedulerConfig};
use ras::text::{ClipTokenizer, GemmaTokenizer, T5Tokenizer, CLIP_MAX_LEN, T5_MAX_LEN};
use ras::weights::{load_f32, Weights};

/// A target's check: panics when the input breaks a property.
pub type Check = fn(&[u8]);

/// The names of the targets, as fuzz/fuzz_targets/ and tests/fuzz_corpus/
/// name them, with their check.
pub const TARGETS: &[(&str, Check)] = &[
    ("configs", configs),
    ("weights", weights),
    ("latents_init", latents_init),
    ("tokenizers", tokenizers),
    ("png_metadata", png_metadata),
];

/// The repository root (the fixtures' tokenizer files live under it).
fn repo() -> &'static Path {
    // DEMO_MODEL is `<repo>/models/ras-demo`, fixed when ras is compiled.
    Path::new(ras::pipeline::DEMO_MODEL)
        .ancestors()
        .nth(2)
        .expect("DEMO_MODEL has two parents")
}

/// Every config reader parses the same text: each either refuses it or
/// returns a config whose derived sizes compute without overflow or division
/// by zero and whose scheduler sigmas are finite and in [0, 1].
pub fn configs(data: &[u8]) {
    // A file that is not UTF-8 fails in read_to_string, before any parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("config.json");
    if let Ok(c) = Sd3Config::from_json(text, path) {
        let _ = (c.inner_dim(), c.out_channels(), c.pos_grid(), c.base_size());
        assert!(c.forward_flops(2, 4096, 333).is_finite());
    }
    if let Ok(c) = LuminaConfig::from_json(text, path) {
        let _ = (c.head_dim(), c.kv_heads(), c.temb_dim(), c.out_channels());
        let _ = (c.ffn_dim(), c.default_image_size());
        assert!(c.forward_flops(2, 4096, 128, true).is_finite());
    }
    if let Ok(c) = VaeConfig::from_json(text, path) {
        let _ = c.scale_factor();
        // The decoder unscales latents by 1 / scaling_factor.
        assert!((1.0 / c.scaling_factor).is_finite());
    }
    let _ = ClipConfig::from_json(text, path);
    if let Ok(c) = T5Config::from_json(text, path) {
        let (n, max) = (
            c.relative_attention_num_buckets,
            c.relative_attention_max_distance,
        );
        for relative in [
            -1_000_000,
            -(max as i64) - 1,
            -7,
            -1,
            0,
            1,
            7,
            max as i64,
            1_000_000,
        ] {
            assert!(bucket(relative, n, max) < n, "bucket of {relative} out of {n}");
        }
    }
    if let Ok(c) = GemmaConfig::from_json(text, path) {
        assert!(c.layers_run() >= 1);
    }
    if let Ok(c) = SchedulerConfig::from_json(text, path) {
        for steps in [1, 2, 28] {
            let s = FlowMatchEuler::new(steps, c.shift);
            assert!(
                s.sigmas.iter().all(|v| (0.0..=1.0).contains(v)),
                "shift {}: sigmas {:?}",
                c.shift,
                s.sigmas
            );
        }
    }
    let _ = ModelIndex::from_json(text, path);
}

/// Writes `files` into a fresh temporary folder and runs `f` on it.
fn with_files<T>(files: &[(String, &[u8])], f: impl FnOnce(&Path) -> T) -> T {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).expect("writing a fuzz file");
    }
    f(dir.path())
}

/// Splits an input into files at each `#SHARD#`.
pub const SHARD_SEPARATOR: &[u8] = b"#SHARD#";

fn split_files(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(i) = rest
        .windows(SHARD_SEPARATOR.len())
        .position(|w| w == SHARD_SEPARATOR)
    {
        parts.push(&rest[..i]);
        rest = &rest[i + SHARD_SEPARATOR.len()..];
    }
    parts.push(rest);
    parts
}

/// A weights folder: one part is `model.safetensors`; several are
/// `model.safetensors.index.json` and shards `s1`, `s2`, … Loading either
/// fails with an error or gives a store whose every tensor reads (or is
/// refused) without panicking, with as many values as its shape says, and
/// whose lookups with absurd requested shapes are refused.
pub fn weights(data: &[u8]) {
    let parts = split_files(data);
    let files: Vec<(String, &[u8])> = match parts.as_slice() {
        [single] => vec![("model.safetensors".into(), single)],
        [index, shards @ ..] => std::iter::once(("model.safetensors.index.json".into(), *index))
            .chain(
                shards
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (format!("s{}", i + 1), *s)),
            )
            .collect(),
        [] => unreachable!("split_files gives at least one part"),
    };
    with_files(&files, |dir| {
        let Ok(w) = Weights::from_dir(dir, "model") else {
            return;
        };
        for key in w.unused() {
            let shape = w.shape(&key).expect("a listed key has a shape");
            if let Ok((values, got)) = load_f32(&w, &key) {
                assert_eq!(got, shape);
                assert_eq!(values.len(), shape.iter().product::<usize>(), "{key}");
            }
            let mut padded = vec![1];
            padded.extend(&shape);
            if let Ok(values) = w.get_host(&key, &padded) {
                assert_eq!(values.len(), shape.iter().product::<usize>(), "{key}");
            }
            assert!(w.get_host(&key, &[usize::MAX, 3]).is_err());
            if let [rows, cols] = shape[..] {
                let last = rows.saturating_sub(1) as u32;
                if let Ok(v) = w.get_rows(&key, &shape, &[0, last]) {
                    assert_eq!(v.len(), 2 * cols);
                }
                assert!(w.get_rows(&key, &shape, &[rows as u32]).is_err() || rows > u32::MAX as usize);
            }
        }
    });
}

/// `--latents-init` files: refused, or four non-zero dimensions holding
/// exactly that many finite values.
pub fn latents_init(data: &[u8]) {
    let files = [("latents.safetensors".to_owned(), data)];
    with_files(&files, |dir| {
        if let Ok((values, shape)) = read_latents_init(&dir.join("latents.safetensors")) {
            assert_eq!(shape.len(), 4);
            assert!(!shape.contains(&0));
            assert_eq!(values.len(), shape.iter().product::<usize>());
            assert!(values.iter().all(|v| v.is_finite()));
        }
    });
}

/// The prompt tokenizers of both families, loaded once from the fixtures.
struct Tokenizers {
    clip_eos_pad: ClipTokenizer,
    clip_zero_pad: ClipTokenizer,
    t5: T5Tokenizer,
    gemma: GemmaTokenizer,
}

fn tokenizers_once() -> &'static Tokenizers {
    static TOKENIZERS: OnceLock<Tokenizers> = OnceLock::new();
    TOKENIZERS.get_or_init(|| {
        let fixtures: PathBuf = repo().join("tests/fixtures");
        let clip = |pad| {
            let dir = fixtures.join("tokenizers/clip");
            ClipTokenizer::from_files(dir.join("vocab.json"), dir.join("merges.txt"), pad)
                .expect("CLIP tokenizer")
        };
        Tokenizers {
            clip_eos_pad: clip(49407),
            clip_zero_pad: clip(0),
            t5: T5Tokenizer::from_file(fixtures.join("tokenizers/t5/tokenizer.json")).expect("T5 tokenizer"),
            gemma: GemmaTokenizer::from_dir(&fixtures.join("gemma/tokenizer")).expect("Gemma tokenizer"),
        }
    })
}

/// Any prompt (the CLI's are valid Unicode; invalid bytes become U+FFFD)
/// tokenizes without error to exactly the lengths the text encoders expect.
pub fn tokenizers(data: &[u8]) {
    let prompt = String::from_utf8_lossy(data);
    let t = tokenizers_once();
    for clip in [&t.clip_eos_pad, &t.clip_zero_pad] {
        let ids = clip
            .encode(&prompt, CLIP_MAX_LEN)
            .expect("CLIP encodes any prompt");
        assert_eq!(ids.len(), CLIP_MAX_LEN);
        assert_eq!(ids[0], 49406, "BOS first");
        assert!(ids.contains(&49407), "EOS present");
    }
    let ids = t.t5.encode(&prompt, T5_MAX_LEN).expect("T5 encodes any prompt");
    assert_eq!(ids.len(), T5_MAX_LEN);
    let g = t
        .gemma
        .encode_prompt(&prompt, 256)
        .expect("Gemma encodes any prompt");
    assert_eq!(g.ids.len(), 1);
    assert!(g.len() <= 256 && g.len().is_multiple_of(8) && !g.is_empty());
    assert_eq!(g.mask[0].len(), g.len());
    let n = t
        .gemma
        .encode_negative(&prompt, g.len())
        .expect("Gemma encodes any negative prompt");
    assert_eq!(n.len(), g.len());
}

/// A PNG written with the `parameters` text of any prompt and negative
/// prompt reads back with exactly that text, which starts with the prompt.
pub fn png_metadata(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // The first half is the prompt, the rest the negative prompt.
    let mut cut = text.len() / 2;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let (prompt, negative) = text.split_at(cut);
    let mut req = GenerateRequest::new(prompt);
    req.negative_prompt = negative.to_owned();
    let params = parameters(&req, "fuzz", Some(true), 0);
    assert!(params.starts_with(&format!("{prompt}\nNegative prompt: {negative}\nSteps: ")));
    let image = Image {
        width: 2,
        height: 1,
        rgb: vec![0, 64, 128, 255, 32, 16],
    };
    let mut png = Vec::new();
    encode_png(&mut png, &image, &params).expect("encoding to memory");
    let back = read_parameters(Cursor::new(png)).expect("reading our own PNG");
    assert_eq!(back.as_deref(), Some(params.as_str()));
}
