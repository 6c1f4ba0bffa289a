//! SD3's three prompt tokenizers (model-spec.md §D.1-§D.3), assembled from the
//! `tokenizers` crate's parts exactly as transformers assembles them, so that a prompt
//! gets the ids diffusers' `StableDiffusion3Pipeline` gives the text encoders.

use std::path::Path;

use tokenizers::models::bpe::{self, BPE};
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, NormalizerWrapper, Replace, Sequence, NFC};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, Model, PaddingDirection, PostProcessor, SplitDelimiterBehavior, Tokenizer,
    TruncationDirection,
};

use crate::error::{Error, Result};

/// CLIP's context: BOS + at most 75 prompt tokens + EOS, then padding. A
/// folder's `tokenizer_config.json` may set a shorter `model_max_length`.
pub const CLIP_MAX_LEN: usize = 77;
/// SD3's T5 sequence length (`max_sequence_length` of the pipeline).
pub const T5_MAX_LEN: usize = 256;

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";
const T5_EOS: &str = "</s>";
const T5_PAD_ID: u32 = 0;

/// transformers' `CLIPTokenizer` split pattern; with `invert` the matches are the pieces
/// and everything between them (whitespace) is dropped.
const CLIP_SPLIT: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// The byte-level BPE tokenizer of both SD3 CLIP text encoders.
pub struct ClipTokenizer {
    inner: Tokenizer,
    pad_id: u32,
    pad_token: String,
}

impl ClipTokenizer {
    /// Loads `vocab.json` and `merges.txt` (SD3's `tokenizer/` or `tokenizer_2/`).
    /// `pad_id` is 49407 (`<|endoftext|>`) for CLIP-L and 0 (`!`) for OpenCLIP bigG.
    pub fn from_files(
        vocab_json: impl AsRef<Path>,
        merges_txt: impl AsRef<Path>,
        pad_id: u32,
    ) -> Result<Self> {
        let (vocab_path, merges_path) = (vocab_json.as_ref(), merges_txt.as_ref());
        let model = read_bpe(vocab_path, merges_path)?;
        let vocab_err = |message: String| file_error(vocab_path, message);
        let id = |token: &str| {
            model.token_to_id(token).ok_or_else(|| {
                vocab_err(format!(
                    "has no '{token}' token; is this a CLIP tokenizer's vocab.json?"
                ))
            })
        };
        let (bos_id, eos_id) = (id(BOS)?, id(EOS)?);
        let pad_token = model.id_to_token(pad_id).ok_or_else(|| {
            vocab_err(format!(
                "has no token with the pad id {pad_id}; SD3 pads with 49407 or 0"
            ))
        })?;

        let mut inner = Tokenizer::new(model);
        // No Strip (transformers has none either): the split below drops all whitespace.
        let normalizer: Vec<NormalizerWrapper> = vec![
            NFC.into(),
            Replace::new(ReplacePattern::Regex(r"\s+".into()), " ")
                .map_err(build_error)?
                .into(),
            Lowercase.into(),
        ];
        inner.with_normalizer(Some(Sequence::new(normalizer)));
        let split = Split::new(
            SplitPattern::Regex(CLIP_SPLIT.into()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(build_error)?;
        // Python's ByteLevel(add_prefix_space=False) keeps trim_offsets and use_regex on.
        inner.with_pre_tokenizer(Some(PreSequence::new(vec![
            split.into(),
            ByteLevel::new(false, true, true).into(),
        ])));
        inner.with_post_processor(Some(
            RobertaProcessing::new((EOS.into(), eos_id), (BOS.into(), bos_id))
                .trim_offsets(false)
                .add_prefix_space(false),
        ));
        // The flags of SD3's tokenizer_config.json: a special token in the prompt text maps
        // to its id, and a pad token other than EOS ("!" for bigG) becomes one too, so every
        // "!" of a bigG prompt is id 0, as in diffusers.
        let mut specials = vec![
            AddedToken::from(BOS, true).normalized(true),
            AddedToken::from(EOS, true).normalized(false),
        ];
        if pad_id != eos_id && pad_id != bos_id {
            specials.push(AddedToken::from(pad_token.clone(), true).normalized(false));
        }
        inner.add_special_tokens(&specials);
        Ok(Self {
            inner,
            pad_id,
            pad_token,
        })
    }

    /// Ids for one prompt: BOS, at most `max_len - 2` prompt tokens, EOS, then the pad id
    /// up to `max_len` (`padding="max_length", truncation=True` in transformers).
    pub fn encode(&self, prompt: &str, max_len: usize) -> Result<Vec<u32>> {
        fixed_length(&self.inner, prompt, max_len, self.pad_id, &self.pad_token)
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
}

/// The SentencePiece unigram tokenizer of SD3's T5 encoder.
pub struct T5Tokenizer {
    inner: Tokenizer,
    pad_token: String,
}

impl T5Tokenizer {
    /// Loads `tokenizer.json` (SD3's `tokenizer_3/`). Like transformers 5's `T5Tokenizer`,
    /// only the unigram model, its added tokens and the SentencePiece normalization table
    /// come from the file; the splitting on whitespace and the appended `</s>` are T5's
    /// own, whatever older converter layout the file has (read as it is, such a file
    /// tokenizes leading or repeated whitespace and text around `</s>` differently).
    pub fn from_file(tokenizer_json: impl AsRef<Path>) -> Result<Self> {
        let path = tokenizer_json.as_ref();
        check_readable(path)?;
        let err = |message: String| file_error(path, message);
        let mut inner = Tokenizer::from_file(path).map_err(|e| {
            err(format!(
                "{e}; expected a tokenizers JSON file (tokenizer_3/tokenizer.json of SD3)"
            ))
        })?;
        let eos_id = inner
            .token_to_id(T5_EOS)
            .ok_or_else(|| err(format!("has no '{T5_EOS}' token; is this a T5 tokenizer?")))?;
        let pad_token = inner
            .id_to_token(T5_PAD_ID)
            .ok_or_else(|| err(format!("has no token with id {T5_PAD_ID} (T5's <pad>)")))?;

        let normalizer = inner.get_normalizer().and_then(precompiled);
        inner.with_normalizer(normalizer);
        inner.with_pre_tokenizer(Some(PreSequence::new(vec![
            WhitespaceSplit.into(),
            Metaspace::new('▁', PrependScheme::Always, true).into(),
        ])));
        let post = TemplateProcessing::builder()
            .try_single(format!("$A {T5_EOS}"))
            .and_then(|b| b.try_pair(format!("$A {T5_EOS} $B {T5_EOS}")))
            .map_err(|e| Error::Tokenize(format!("T5 template: {e}")))?
            .special_tokens(vec![(T5_EOS, eos_id)])
            .build()
            .map_err(build_error)?;
        inner.with_post_processor(Some(post));
        Ok(Self { inner, pad_token })
    }

    /// Ids for one prompt: at most `max_len - 1` prompt tokens, `</s>`, then 0 up to
    /// `max_len` (transformers' `padding="max_length", truncation=True`).
    pub fn encode(&self, prompt: &str, max_len: usize) -> Result<Vec<u32>> {
        fixed_length(&self.inner, prompt, max_len, T5_PAD_ID, &self.pad_token)
    }
}

/// Truncation that keeps the special tokens, post-processing, padding: the steps
/// `TokenizerImpl::post_process` runs with truncation and padding enabled, done here
/// because `max_len` is per call while the crate keeps those settings as mutable state.
fn fixed_length(tok: &Tokenizer, prompt: &str, max_len: usize, pad_id: u32, pad: &str) -> Result<Vec<u32>> {
    let specials = tok.get_post_processor().map_or(0, |p| p.added_tokens(false));
    if max_len <= specials {
        return Err(Error::Invalid(format!(
            "max_len {max_len} leaves no room for the prompt next to {specials} special tokens"
        )));
    }
    let mut content = tok
        .encode(prompt, false)
        .map_err(|e| Error::Tokenize(e.to_string()))?;
    content.truncate(max_len - specials, 0, TruncationDirection::Right);
    let mut enc = tok
        .post_process(content, None, true)
        .map_err(|e| Error::Tokenize(e.to_string()))?;
    enc.pad(max_len, pad_id, 0, pad, PaddingDirection::Right);
    Ok(enc.get_ids().to_vec())
}

/// The SentencePiece table of a T5 `tokenizer.json` normalizer, alone or inside a
/// `Sequence` (the older converters append a `Replace`, which whitespace splitting makes moot).
fn precompiled(normalizer: &NormalizerWrapper) -> Option<NormalizerWrapper> {
    match normalizer {
        NormalizerWrapper::Precompiled(_) => Some(normalizer.clone()),
        NormalizerWrapper::Sequence(seq) => seq.as_ref().iter().find_map(precompiled),
        _ => None,
    }
}

fn read_bpe(vocab_path: &Path, merges_path: &Path) -> Result<BPE> {
    check_readable(vocab_path)?;
    check_readable(merges_path)?;
    let (vocab_str, merges_str) = (utf8_path(vocab_path)?, utf8_path(merges_path)?);
    let blame = |e: Box<dyn std::error::Error + Send + Sync>| {
        // The crate's errors do not say which of the two files is wrong.
        let in_vocab = "expected a JSON object of token -> id (CLIP's vocab.json)";
        let in_merges = "expected the merges.txt that belongs to this vocab.json";
        match e.downcast_ref::<bpe::Error>() {
            Some(bpe::Error::BadMerges(_) | bpe::Error::MergeTokenOutOfVocabulary(_)) => {
                file_error(merges_path, format!("{e}; {in_merges}"))
            }
            Some(bpe::Error::BadVocabulary | bpe::Error::UnkTokenOutOfVocabulary(_)) => {
                file_error(vocab_path, format!("{e}; {in_vocab}"))
            }
            _ if e.is::<serde_json::Error>() => file_error(vocab_path, format!("{e}; {in_vocab}")),
            _ => Error::TokenizerFile {
                path: format!("{} or {}", vocab_path.display(), merges_path.display()),
                message: format!("{e}; {in_vocab}, {in_merges}"),
            },
        }
    };
    let (vocab, merges) = BPE::read_file(vocab_str, merges_str).map_err(blame)?;
    BPE::builder()
        .vocab_and_merges(vocab, merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix("</w>".into())
        .fuse_unk(false)
        .unk_token(EOS.into())
        .build()
        .map_err(blame)
}

fn check_readable(path: &Path) -> Result<()> {
    std::fs::File::open(path).map(drop).map_err(|e| {
        file_error(
            path,
            format!("{e}; point to the tokenizer files of an SD3 model folder (tokenizer/, tokenizer_2/, tokenizer_3/)"),
        )
    })
}

fn utf8_path(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| {
        file_error(
            path,
            "the path is not valid UTF-8; rename or move the file".into(),
        )
    })
}

fn file_error(path: &Path, message: String) -> Error {
    Error::TokenizerFile {
        path: path.display().to_string(),
        message,
    }
}

fn build_error(e: impl std::fmt::Display) -> Error {
    Error::Tokenize(format!("building the tokenizer pipeline: {e}"))
}
