//! Gemma's tokenizer, the Gemma text encoder and Lumina's prompt encoding
//! against transformers / diffusers (tests/fixtures/make_gemma.py): ids and
//! masks exactly, hidden states and prompt embeddings within 1e-4 on the
//! real (unpadded) token rows, padding rows finite.

use std::path::{Path, PathBuf};

use ras::gpu::{Gpu, GpuOptions};
use ras::models::text::GemmaEncoder;
use ras::pipeline::{LuminaTextEncoder, ModelDir};
use ras::reference::rel_err;
use ras::text::GemmaTokenizer;
use ras::weights::{load_f32, Weights};
use serde::Deserialize;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions {
        poison: true,
        ..Default::default()
    })
    .expect("a GPU adapter (without a GPU: apt-get install -y mesa-vulkan-drivers)")
}

#[derive(Deserialize)]
struct TokenizerCases {
    batches: Vec<Batch>,
    prompts: Vec<PromptCase>,
}

#[derive(Deserialize)]
struct Batch {
    texts: Vec<String>,
    max_length: usize,
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
}

#[derive(Deserialize)]
struct PromptCase {
    prompt: String,
    negative_prompt: String,
    max_sequence_length: usize,
    input_ids: Vec<u32>,
    attention_mask: Vec<u32>,
    negative_input_ids: Vec<u32>,
    negative_attention_mask: Vec<u32>,
}

fn json<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Both tokenizer folders: the hand-written one (tokenizer_config.json like
/// Lumina-Next's, with add_bos_token) and the pipeline's, re-saved by
/// transformers 5 (no add_bos_token: BOS comes from tokenizer.json's template).
fn tokenizers() -> Vec<(&'static str, GemmaTokenizer)> {
    ["gemma/tokenizer", "lumina_pipeline/model/tokenizer"]
        .into_iter()
        .map(|d| (d, GemmaTokenizer::from_dir(&fixtures().join(d)).unwrap()))
        .collect()
}

#[test]
fn tokenizer_matches_transformers() {
    let cases: TokenizerCases = json(&fixtures().join("gemma/tokenizer_cases.json"));
    assert!(cases.batches.len() >= 5 && cases.prompts.len() >= 16);
    for (dir, tok) in tokenizers() {
        for b in &cases.batches {
            let texts: Vec<&str> = b.texts.iter().map(String::as_str).collect();
            let got = tok.encode_longest(&texts, b.max_length, 8).unwrap();
            assert_eq!(
                got.ids, b.input_ids,
                "{dir}: ids of {texts:?} (max {})",
                b.max_length
            );
            assert_eq!(got.mask, b.attention_mask, "{dir}: mask of {texts:?}");
        }
        for c in &cases.prompts {
            let what = format!("{dir}: {:?} (max {})", c.prompt, c.max_sequence_length);
            let p = tok.encode_prompt(&c.prompt, c.max_sequence_length).unwrap();
            assert_eq!(
                (&p.ids[0], &p.mask[0]),
                (&c.input_ids, &c.attention_mask),
                "{what}"
            );
            let n = tok.encode_negative(&c.negative_prompt, p.len()).unwrap();
            assert_eq!(
                (&n.ids[0], &n.mask[0]),
                (&c.negative_input_ids, &c.negative_attention_mask),
                "{what}, negative {:?}",
                c.negative_prompt
            );
        }
    }
}

#[test]
fn tokenizer_refuses_what_transformers_refuses() {
    let tok = GemmaTokenizer::from_dir(&fixtures().join("gemma/tokenizer")).unwrap();
    let e = tok.encode_prompt("a cat", 20).unwrap_err().to_string();
    assert!(e.contains("20 is not a multiple of 8"), "{e}");
    let e = GemmaTokenizer::from_dir(&fixtures().join("gemma"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("tokenizer/ folder"),
        "{e}"
    );
}

/// An i64 (or i32) tensor of a safetensors file as `[rows][cols]` u32.
fn int_rows(path: &Path, key: &str) -> Vec<Vec<u32>> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = file.tensor(key).unwrap();
    let flat: Vec<u32> = match t.dtype() {
        safetensors::Dtype::I64 => t
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect(),
        safetensors::Dtype::I32 => bytemuck::pod_collect_to_vec::<u8, i32>(t.data())
            .into_iter()
            .map(|v| v as u32)
            .collect(),
        other => panic!("{key}: {other:?}"),
    };
    flat.chunks(t.shape()[1]).map(<[u32]>::to_vec).collect()
}

fn floats(path: &Path, key: &str) -> Vec<f32> {
    load_f32(&Weights::from_files(&[path.to_owned()]).unwrap(), key)
        .unwrap()
        .0
}

/// Relative error over the real token rows of `[B, L, D]` values (mask
/// `[B][L]`), after checking that every value, padding included, is finite.
fn real_rows_err(got: &[f32], want: &[f32], mask: &[Vec<u32>], what: &str) -> f64 {
    assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite output");
    let rows = mask.concat();
    let d = got.len() / rows.len();
    let pick = |x: &[f32]| -> Vec<f32> {
        x.chunks(d)
            .zip(&rows)
            .filter(|(_, &m)| m == 1)
            .flat_map(|(r, _)| r.to_vec())
            .collect()
    };
    let err = rel_err(&pick(got), &pick(want));
    println!(
        "{what}: rel err {err:.3e} over {} real rows",
        rows.iter().filter(|&&m| m == 1).count()
    );
    err
}

#[test]
fn gemma_hidden_states_match_transformers() {
    let gpu = gpu();
    // Head dim 256 with 8 query heads on one kv head (Gemma-2B's shape; the
    // pipeline's bf16 text encoder), and 4 heads of 16 on 2 kv heads
    // (a sharded f16 GemmaForCausalLM with "model." keys).
    for (model_dir, reference) in [
        (
            "lumina_pipeline/model/text_encoder",
            "gemma/hidden_mqa.safetensors",
        ),
        ("gemma/gqa", "gemma/hidden_gqa.safetensors"),
    ] {
        let model = GemmaEncoder::load_dir(&gpu, &fixtures().join(model_dir)).unwrap();
        let reference = fixtures().join(reference);
        let (ids, mask) = (
            int_rows(&reference, "input_ids"),
            int_rows(&reference, "attention_mask"),
        );
        assert!(
            mask.iter().any(|m| m[0] == 0),
            "{model_dir}: some rows are left padded"
        );
        let out = model.forward(&gpu, &ids, &mask).unwrap();
        assert_eq!(out.shape(), [ids.len(), ids[0].len(), model.config.hidden_size]);
        let got = gpu.read_f32(&out).unwrap();
        let err = real_rows_err(&got, &floats(&reference, "hidden_states"), &mask, model_dir);
        assert!(err < 1e-4, "{model_dir}: {err:.3e}");
        let vocab = model.config.vocab_size as u32;
        let e = model
            .forward(&gpu, &[vec![2, vocab]], &[vec![1, 1]])
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("token id {vocab} is outside")), "{e}");
    }
}

#[derive(Deserialize)]
struct EncodeCase {
    prompt: String,
    negative_prompt: Option<String>,
    guidance: bool,
    num_images_per_prompt: usize,
    max_sequence_length: usize,
}

#[test]
fn lumina_prompt_encoding_matches_diffusers() {
    let gpu = gpu();
    let root = fixtures().join("lumina_pipeline/model");
    let dir = ModelDir::open(root.to_str().unwrap()).unwrap();
    assert_eq!(dir.family, ras::models::Family::Lumina);
    let encoder = LuminaTextEncoder::load(&gpu, &dir).unwrap();
    let cases: std::collections::BTreeMap<String, EncodeCase> =
        json(&fixtures().join("gemma/encode_cases.json"));
    assert_eq!(cases.len(), 4);
    for (name, c) in &cases {
        // diffusers' default negative prompt is "" when guiding.
        let negative = c.guidance.then(|| c.negative_prompt.as_deref().unwrap_or(""));
        let (cond, uncond) = encoder
            .encode(
                &gpu,
                &c.prompt,
                negative,
                c.num_images_per_prompt,
                c.max_sequence_length,
            )
            .unwrap();
        let reference = fixtures().join(format!("gemma/encode_{name}.safetensors"));
        let check = |cond: &ras::models::Conditioning, prefix: &str| {
            let mask = int_rows(&reference, &format!("{prefix}prompt_attention_mask"));
            let want = floats(&reference, &format!("{prefix}prompt_embeds"));
            let (b, l) = (mask.len(), mask[0].len());
            assert_eq!(b, c.num_images_per_prompt, "{name}");
            assert_eq!(cond.tokens.shape()[..2], [b, l], "{name} {prefix}prompt_embeds");
            let got_mask: Vec<u32> = cond.mask.as_ref().unwrap().iter().map(|&m| m as u32).collect();
            assert_eq!(got_mask, mask.concat(), "{name} {prefix}prompt_attention_mask");
            assert!(cond.pooled.is_none() && cond.text_weights.is_none());
            let got = gpu.read_f32(&cond.tokens).unwrap();
            let err = real_rows_err(&got, &want, &mask, &format!("{name} {prefix}prompt_embeds"));
            assert!(err < 1e-4, "{name} {prefix}prompt_embeds: {err:.3e}");
        };
        check(&cond, "");
        match uncond {
            Some(uncond) => check(&uncond, "negative_"),
            None => assert!(!c.guidance, "{name}: a guided case needs a negative"),
        }
    }
}

#[test]
fn gemma_configs_as_released_and_refused() {
    use ras::models::text::gemma::GemmaConfig;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    // Gemma-2B as Lumina-Next ships it (transformers 4 layout: legacy "gelu",
    // top-level rope_theta, rope_scaling null).
    let released = r#"{"architectures": ["GemmaModel"], "attention_bias": false, "attention_dropout": 0.0,
        "bos_token_id": 2, "eos_token_id": 1, "head_dim": 256, "hidden_act": "gelu", "hidden_activation": null,
        "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 16384,
        "max_position_embeddings": 8192, "model_type": "gemma", "num_attention_heads": 8,
        "num_hidden_layers": 18, "num_key_value_heads": 1, "pad_token_id": 0, "rms_norm_eps": 1e-06,
        "rope_scaling": null, "rope_theta": 10000.0, "torch_dtype": "float32", "vocab_size": 256000}"#;
    std::fs::write(&path, released).unwrap();
    let c = GemmaConfig::from_file(&path).unwrap();
    assert_eq!((c.layers_run(), c.head_dim, c.rope_theta), (17, 256, 10000.0));
    for (from, to, message) in [
        (
            r#""hidden_act": "gelu""#,
            r#""hidden_act": "relu""#,
            "hidden_act 'relu' is not supported",
        ),
        (
            r#""rope_scaling": null"#,
            r#""rope_scaling": {"rope_type": "linear", "factor": 2.0}"#,
            "scaled RoPE",
        ),
        (
            r#""num_key_value_heads": 1"#,
            r#""num_key_value_heads": 3"#,
            "8 query heads, 3 kv heads",
        ),
    ] {
        std::fs::write(&path, released.replace(from, to)).unwrap();
        let e = GemmaConfig::from_file(&path).unwrap_err().to_string();
        assert!(e.contains(message) && e.contains("config.json"), "{e}");
    }
}
