//! The SD3 tokenizers against transformers: every prompt of
//! tests/fixtures/tokenizers/expected.json (made by tests/fixtures/make_tokenizers.py)
//! must get exactly the ids the Python tokenizers gave, for both CLIP pad ids and T5.

use std::path::{Path, PathBuf};

use ras::text::{ClipTokenizer, T5Tokenizer, CLIP_MAX_LEN, T5_MAX_LEN};
use ras::Error;
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    clip_max_length: usize,
    t5_max_length: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    clip_pad_eos: Vec<u32>,
    clip_pad_zero: Vec<u32>,
    t5: Vec<u32>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers")
}

fn expected() -> Expected {
    let path = fixtures().join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let exp: Expected = serde_json::from_str(&text).expect("expected.json parses");
    assert_eq!(exp.clip_max_length, CLIP_MAX_LEN);
    assert_eq!(exp.t5_max_length, T5_MAX_LEN);
    assert!(exp.cases.len() >= 15);
    exp
}

fn clip(pad_id: u32) -> ClipTokenizer {
    let dir = fixtures().join("clip");
    ClipTokenizer::from_files(dir.join("vocab.json"), dir.join("merges.txt"), pad_id)
        .expect("CLIP tokenizer loads")
}

/// Compares every case and reports all mismatches at once, with the first differing position.
fn check(name: &str, mut encode: impl FnMut(&str) -> Vec<u32>, want: impl Fn(&Case) -> &Vec<u32>) {
    let mut failures = Vec::new();
    for case in expected().cases {
        let got = encode(&case.prompt);
        let want = want(&case);
        if &got != want {
            let at = got
                .iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            failures.push(format!(
                "{:?}: first difference at {at}\n   got  {:?}\n   want {:?}",
                case.prompt,
                &got[..got.len().min(at + 8)],
                &want[..want.len().min(at + 8)]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} prompts differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn clip_l_pads_with_eos_like_transformers() {
    let tok = clip(49407);
    check(
        "CLIP pad 49407",
        |p| tok.encode(p, CLIP_MAX_LEN).expect("encodes"),
        |c| &c.clip_pad_eos,
    );
}

#[test]
fn clip_bigg_pads_with_zero_like_transformers() {
    let tok = clip(0);
    check(
        "CLIP pad 0",
        |p| tok.encode(p, CLIP_MAX_LEN).expect("encodes"),
        |c| &c.clip_pad_zero,
    );
}

#[test]
fn t5_like_transformers() {
    let tok = T5Tokenizer::from_file(fixtures().join("t5/tokenizer.json")).expect("T5 tokenizer loads");
    check("T5", |p| tok.encode(p, T5_MAX_LEN).expect("encodes"), |c| &c.t5);
}

/// The layout older converters wrote (Replace normalizer, Metaspace without whitespace
/// splitting) must give the same ids: transformers 5 rebuilds the pipeline either way.
#[test]
fn t5_legacy_layout_like_transformers() {
    let tok =
        T5Tokenizer::from_file(fixtures().join("t5_legacy/tokenizer.json")).expect("T5 tokenizer loads");
    check(
        "T5 legacy layout",
        |p| tok.encode(p, T5_MAX_LEN).expect("encodes"),
        |c| &c.t5,
    );
}

#[test]
fn shorter_lengths_truncate_and_keep_the_end_token() {
    let tok = clip(49407);
    let ids = tok
        .encode("a photo of a cat sitting on a mat", 5)
        .expect("encodes");
    assert_eq!(ids.len(), 5);
    assert_eq!((ids[0], ids[4]), (49406, 49407));
    let t5 = T5Tokenizer::from_file(fixtures().join("t5/tokenizer.json")).expect("T5 tokenizer loads");
    let ids = t5
        .encode("a photo of a cat sitting on a mat", 3)
        .expect("encodes");
    assert_eq!((ids.len(), ids[2]), (3, 1));
    assert!(matches!(tok.encode("x", 2), Err(Error::Invalid(_))));
    assert!(matches!(t5.encode("x", 1), Err(Error::Invalid(_))));
}

fn message(result: Result<impl Sized, Error>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_files_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clip_dir = fixtures().join("clip");
    let missing = dir.path().join("nope/vocab.json");
    let msg = message(ClipTokenizer::from_files(
        &missing,
        clip_dir.join("merges.txt"),
        49407,
    ));
    assert!(
        msg.contains("nope/vocab.json") && msg.contains("tokenizer"),
        "{msg}"
    );
    let missing = dir.path().join("nope/merges.txt");
    let msg = message(ClipTokenizer::from_files(
        clip_dir.join("vocab.json"),
        &missing,
        49407,
    ));
    assert!(msg.contains("nope/merges.txt"), "{msg}");
    let missing = dir.path().join("nope/tokenizer.json");
    let msg = message(T5Tokenizer::from_file(&missing));
    assert!(msg.contains("nope/tokenizer.json"), "{msg}");
}

#[test]
fn corrupt_files_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clip_dir = fixtures().join("clip");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{ not json").expect("write");
    let msg = message(ClipTokenizer::from_files(
        &bad,
        clip_dir.join("merges.txt"),
        49407,
    ));
    assert!(msg.contains("bad.json") && msg.contains("vocab.json"), "{msg}");
    let msg = message(T5Tokenizer::from_file(&bad));
    assert!(
        msg.contains("bad.json") && msg.contains("tokenizer.json"),
        "{msg}"
    );

    let merges = dir.path().join("merges.txt");
    std::fs::write(&merges, "#version: 0.2\nthree parts here\n").expect("write");
    let msg = message(ClipTokenizer::from_files(
        clip_dir.join("vocab.json"),
        &merges,
        49407,
    ));
    assert!(
        msg.contains(&*merges.to_string_lossy()) && msg.contains("line 1"),
        "{msg}"
    );
    std::fs::write(&merges, "#version: 0.2\nzq@ xj#\n").expect("write");
    let msg = message(ClipTokenizer::from_files(
        clip_dir.join("vocab.json"),
        &merges,
        49407,
    ));
    assert!(
        msg.contains(&*merges.to_string_lossy()) && msg.contains("out of vocabulary"),
        "{msg}"
    );

    let msg = message(ClipTokenizer::from_files(
        clip_dir.join("vocab.json"),
        clip_dir.join("merges.txt"),
        60000,
    ));
    assert!(
        msg.contains("vocab.json") && msg.contains("pad id 60000"),
        "{msg}"
    );
}
