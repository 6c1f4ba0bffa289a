//! Gemma's tokenizer (Lumina-Next's `tokenizer/`), called the way diffusers'
//! `LuminaPipeline` calls it (model-spec §D.4).
//!
//! transformers 5's `GemmaTokenizer` takes only the BPE vocabulary, the merges
//! and (unless `tokenizer_config.json` sets `add_bos_token`/`add_eos_token`)
//! the post-processor from `tokenizer.json`; the rest is the class's own: a
//! BPE with byte fallback and fused `<unk>`, spaces replaced by `▁`, a split
//! on spaces (a no-op after that replacement) and padding on the left. This
//! module assembles the same pipeline from the `tokenizers` crate's parts.
//!
//! diffusers' prompt pre-processing is `prompt.lower().strip()`
//! ([`preprocess_prompt`]). With `clean_caption=True` (the pipeline's
//! default) and both `bs4` and `ftfy` installed, diffusers instead runs
//! DeepFloyd IF's caption cleaner twice (URL, HTML, CJK-range, hashtag,
//! punctuation and filename clean-ups, `ftfy.fix_text`, HTML unescaping);
//! without those packages it warns and falls back to lower-case + strip.
//! `ras` does not implement the cleaner: its prompts are what diffusers
//! encodes with `clean_caption=False` or without bs4/ftfy.

use std::path::Path;

use serde::Deserialize;
use tokenizers::normalizers::replace::{Replace, ReplacePattern};
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    Encoding, PaddingDirection, PostProcessor, SplitDelimiterBehavior, Tokenizer, TruncationDirection,
};

use crate::config::read_json;
use crate::error::{Error, Result};

/// Token ids and the attention mask (1 = real token, 0 = padding), one row
/// per text, every row the same length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GemmaTokens {
    pub ids: Vec<Vec<u32>>,
    pub mask: Vec<Vec<u32>>,
}

impl GemmaTokens {
    /// The common row length.
    pub fn len(&self) -> usize {
        self.ids.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A special token in `tokenizer_config.json`: a string or an `AddedToken` object.
#[derive(Deserialize)]
#[serde(untagged)]
enum SpecialToken {
    Text(String),
    Added { content: String },
}

impl SpecialToken {
    fn content(&self) -> &str {
        match self {
            SpecialToken::Text(s) | SpecialToken::Added { content: s } => s,
        }
    }
}

/// The fields of `tokenizer_config.json` the tokenizer's behaviour depends on.
#[derive(Deserialize, Default)]
struct TokenizerConfig {
    add_bos_token: Option<bool>,
    add_eos_token: Option<bool>,
    bos_token: Option<SpecialToken>,
    eos_token: Option<SpecialToken>,
    pad_token: Option<SpecialToken>,
    unk_token: Option<SpecialToken>,
    padding_side: Option<String>,
    truncation_side: Option<String>,
}

fn side(path: &Path, what: &str, value: Option<&str>, default: bool) -> Result<bool> {
    match value {
        None => Ok(default),
        Some("left") => Ok(true),
        Some("right") => Ok(false),
        Some(other) => Err(file_error(
            path,
            format!("{what} is '{other}'; expected \"left\" or \"right\""),
        )),
    }
}

/// Gemma's BPE tokenizer.
pub struct GemmaTokenizer {
    inner: Tokenizer,
    pad_id: u32,
    pad_token: String,
    /// Special tokens the post-processor adds to one text.
    specials: usize,
    pad_left: bool,
    truncate_left: bool,
}

impl GemmaTokenizer {
    /// Loads `tokenizer.json` and `tokenizer_config.json` (optional; the
    /// class defaults apply without it) from a Lumina `tokenizer/` folder.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let json_path = dir.join("tokenizer.json");
        let text = std::fs::read_to_string(&json_path).map_err(|e| {
            file_error(
                &json_path,
                format!("{e}; point to the tokenizer/ folder of a Lumina model"),
            )
        })?;
        let config_path = dir.join("tokenizer_config.json");
        let config: TokenizerConfig = if config_path.exists() {
            read_json(&config_path)?
        } else {
            TokenizerConfig::default()
        };
        let token = |t: &Option<SpecialToken>, default: &str| {
            t.as_ref().map_or(default, SpecialToken::content).to_owned()
        };
        let unk = token(&config.unk_token, "<unk>");
        let mut file: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| file_error(&json_path, format!("{e}; expected a tokenizers JSON file")))?;
        let model = file
            .get_mut("model")
            .and_then(|m| m.as_object_mut())
            .filter(|m| m.get("type").and_then(|t| t.as_str()) == Some("BPE"))
            .ok_or_else(|| {
                file_error(
                    &json_path,
                    "has no BPE model; is this Gemma's tokenizer.json?".into(),
                )
            })?;
        // GemmaTokenizer's own BPE settings over the file's.
        for (key, value) in [
            ("dropout", serde_json::Value::Null),
            ("unk_token", unk.into()),
            ("continuing_subword_prefix", serde_json::Value::Null),
            ("end_of_word_suffix", serde_json::Value::Null),
            ("fuse_unk", true.into()),
            ("byte_fallback", true.into()),
            ("ignore_merges", false.into()),
        ] {
            model.insert(key.into(), value);
        }
        let mut inner: Tokenizer = serde_json::from_value(file)
            .map_err(|e| file_error(&json_path, format!("{e}; expected a tokenizers JSON file")))?;
        inner.with_normalizer(Some(
            Replace::new(ReplacePattern::String(" ".into()), "▁").map_err(build_error)?,
        ));
        inner.with_pre_tokenizer(Some(
            Split::new(
                SplitPattern::String(" ".into()),
                SplitDelimiterBehavior::MergedWithPrevious,
                false,
            )
            .map_err(build_error)?,
        ));
        inner.with_truncation(None).map_err(build_error)?;
        inner.with_padding(None);

        let id = |inner: &Tokenizer, t: &str| {
            inner.token_to_id(t).ok_or_else(|| {
                file_error(
                    &json_path,
                    format!("has no '{t}' token; is this Gemma's tokenizer?"),
                )
            })
        };
        if config.add_bos_token.is_some()
            || config.add_eos_token.is_some()
            || inner.get_post_processor().is_none()
        {
            let mut single = vec!["$A:0".to_owned()];
            let mut specials = Vec::new();
            if config.add_bos_token == Some(true) {
                let bos = token(&config.bos_token, "<bos>");
                single.insert(0, format!("{bos}:0"));
                specials.push((bos.clone(), id(&inner, &bos)?));
            }
            if config.add_eos_token == Some(true) {
                let eos = token(&config.eos_token, "<eos>");
                single.push(format!("{eos}:0"));
                specials.push((eos.clone(), id(&inner, &eos)?));
            }
            let template = TemplateProcessing::builder()
                .try_single(single.join(" "))
                .map_err(|e| Error::Tokenize(format!("Gemma template: {e}")))?
                .special_tokens(specials)
                .build()
                .map_err(build_error)?;
            inner.with_post_processor(Some(template));
        }
        let specials = inner.get_post_processor().map_or(0, |p| p.added_tokens(false));
        let pad_token = token(&config.pad_token, "<pad>");
        Ok(Self {
            pad_id: id(&inner, &pad_token)?,
            pad_token,
            specials,
            pad_left: side(&config_path, "padding_side", config.padding_side.as_deref(), true)?,
            truncate_left: side(
                &config_path,
                "truncation_side",
                config.truncation_side.as_deref(),
                false,
            )?,
            inner,
        })
    }

    /// transformers' `tokenizer(texts, pad_to_multiple_of=multiple_of,
    /// max_length=max_len, truncation=True, padding=True)`: each text cut to
    /// `max_len` tokens (special tokens included), then all padded to the
    /// longest, rounded up to a multiple of `multiple_of`. Like transformers,
    /// refuses a `max_len` that is not such a multiple.
    pub fn encode_longest(&self, texts: &[&str], max_len: usize, multiple_of: usize) -> Result<GemmaTokens> {
        if multiple_of == 0 || !max_len.is_multiple_of(multiple_of) {
            return Err(Error::Invalid(format!(
                "max sequence length {max_len} is not a multiple of {multiple_of}, which the Gemma \
                 tokenizer pads to; use a multiple of {multiple_of} (diffusers refuses it too)"
            )));
        }
        let encodings = self.truncated(texts, max_len)?;
        let longest = encodings.iter().map(Encoding::len).max().unwrap_or(0);
        Ok(self.padded(encodings, longest.next_multiple_of(multiple_of)))
    }

    /// transformers' `tokenizer(texts, padding="max_length", max_length=len,
    /// truncation=True)`: every row exactly `len` tokens.
    pub fn encode_fixed(&self, texts: &[&str], len: usize) -> Result<GemmaTokens> {
        let encodings = self.truncated(texts, len)?;
        Ok(self.padded(encodings, len))
    }

    /// `LuminaPipeline._get_gemma_prompt_embeds`' tokenization of one prompt:
    /// [`preprocess_prompt`], then [`Self::encode_longest`] with multiples of 8.
    pub fn encode_prompt(&self, prompt: &str, max_len: usize) -> Result<GemmaTokens> {
        self.encode_longest(&[&preprocess_prompt(prompt)], max_len, 8)
    }

    /// `LuminaPipeline.encode_prompt`'s tokenization of the negative prompt:
    /// not pre-processed, padded or cut to the prompt's length `len`.
    pub fn encode_negative(&self, negative_prompt: &str, len: usize) -> Result<GemmaTokens> {
        self.encode_fixed(&[negative_prompt], len)
    }

    fn truncated(&self, texts: &[&str], max_len: usize) -> Result<Vec<Encoding>> {
        if max_len <= self.specials {
            return Err(Error::Invalid(format!(
                "max sequence length {max_len} leaves no room for a prompt next to {} special tokens",
                self.specials
            )));
        }
        let direction = if self.truncate_left {
            TruncationDirection::Left
        } else {
            TruncationDirection::Right
        };
        texts
            .iter()
            .map(|text| {
                let mut content = self
                    .inner
                    .encode(*text, false)
                    .map_err(|e| Error::Tokenize(e.to_string()))?;
                content.truncate(max_len - self.specials, 0, direction);
                self.inner
                    .post_process(content, None, true)
                    .map_err(|e| Error::Tokenize(e.to_string()))
            })
            .collect()
    }

    fn padded(&self, encodings: Vec<Encoding>, len: usize) -> GemmaTokens {
        let direction = if self.pad_left {
            PaddingDirection::Left
        } else {
            PaddingDirection::Right
        };
        let (ids, mask) = encodings
            .into_iter()
            .map(|mut e| {
                e.pad(len, self.pad_id, 0, &self.pad_token, direction);
                (e.get_ids().to_vec(), e.get_attention_mask().to_vec())
            })
            .unzip();
        GemmaTokens { ids, mask }
    }
}

/// diffusers' `_text_preprocessing` without the caption cleaner: Python's
/// `text.lower().strip()` (`strip` also removes the separators U+001C..U+001F,
/// which Rust's `trim` keeps).
pub fn preprocess_prompt(prompt: &str) -> String {
    prompt
        .to_lowercase()
        .trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
        .to_owned()
}

fn file_error(path: &Path, message: String) -> Error {
    Error::TokenizerFile {
        path: path.display().to_string(),
        message,
    }
}

fn build_error(e: impl std::fmt::Display) -> Error {
    Error::Tokenize(format!("building the Gemma tokenizer pipeline: {e}"))
}
