//! A diffusers pipeline folder (`model_index.json` + one folder per
//! component) of a supported family, given as a path or as a Hugging Face
//! repo id found in the local cache.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The built-in demo model (`models/ras-demo`, trained by
/// `models/train_demo.py`), used when no model is named.
pub const DEMO_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/ras-demo");

use crate::models::Family;

/// The components a family's pipeline loads, by folder name (SD3's T5 is
/// optional).
fn required(family: Family) -> &'static [&'static str] {
    match family {
        Family::Sd3 => &[
            "transformer",
            "vae",
            "text_encoder",
            "text_encoder_2",
            "tokenizer",
            "tokenizer_2",
            "scheduler",
        ],
        Family::Lumina => &["transformer", "vae", "text_encoder", "tokenizer", "scheduler"],
    }
}

#[derive(Debug, Clone)]
pub struct ModelDir {
    pub root: PathBuf,
    /// Shown in messages and PNG metadata: the repo id or the folder as given.
    pub name: String,
    pub family: Family,
    /// `text_encoder_3` and `tokenizer_3` are both present and listed.
    pub has_t5: bool,
}

impl ModelDir {
    /// `spec` is a folder, or a repo id (`org/name`) resolved in the Hugging
    /// Face cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`; nothing is downloaded).
    pub fn open(spec: &str) -> Result<ModelDir> {
        let path = Path::new(spec);
        let root = if path.is_dir() {
            path.to_owned()
        } else if looks_like_repo_id(spec) {
            from_hf_cache(spec)?
        } else {
            return Err(Error::Invalid(format!(
                "model '{spec}' is neither a folder nor a Hugging Face repo id (org/name)"
            )));
        };
        Self::from_root(root, spec.to_owned())
    }

    fn from_root(root: PathBuf, name: String) -> Result<ModelDir> {
        let index_path = root.join("model_index.json");
        let text = std::fs::read_to_string(&index_path).map_err(|e| Error::Config {
            path: index_path.display().to_string(),
            message: format!("{e}; a diffusers pipeline folder has a model_index.json at its top"),
        })?;
        let index = ModelIndex::from_json(&text, &index_path)?;
        let family = index.family;
        let listed = |name: &str| index.lists(name);
        for component in required(family) {
            if !listed(component) || !root.join(component).is_dir() {
                return Err(Error::Config {
                    path: root.display().to_string(),
                    message: format!(
                        "the '{component}' component is missing; {} needs {}",
                        family.name(),
                        required(family).join(", ")
                    ),
                });
            }
        }
        let has_t5 = family == Family::Sd3
            && ["text_encoder_3", "tokenizer_3"]
                .iter()
                .all(|c| listed(c) && root.join(c).is_dir());
        Ok(ModelDir {
            root,
            name,
            family,
            has_t5,
        })
    }

    pub fn component(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

/// What a pipeline's `model_index.json` says: the family its class runs
/// and the components it lists.
#[derive(Debug, Clone)]
pub struct ModelIndex {
    pub family: Family,
    /// Components listed as `[library, class]`; `[null, null]` means absent.
    listed: BTreeSet<String>,
}

impl ModelIndex {
    /// Parses the text of a `model_index.json`; `path` names the file in
    /// errors.
    pub fn from_json(text: &str, path: &Path) -> Result<ModelIndex> {
        let config = |message: String| Error::Config {
            path: path.display().to_string(),
            message,
        };
        let index: serde_json::Value = serde_json::from_str(text).map_err(|e| config(e.to_string()))?;
        let class = index["_class_name"].as_str().unwrap_or("");
        let Some(family) = Family::of_pipeline(class) else {
            return Err(config(format!(
                "_class_name is '{class}'; ras runs StableDiffusion3Pipeline and LuminaPipeline folders"
            )));
        };
        let listed = index
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v.as_array().is_some_and(|a| a.iter().all(|v| !v.is_null())))
            .map(|(k, _)| k.clone())
            .collect();
        Ok(ModelIndex { family, listed })
    }

    pub fn lists(&self, component: &str) -> bool {
        self.listed.contains(component)
    }
}

fn looks_like_repo_id(spec: &str) -> bool {
    let parts: Vec<&str> = spec.split('/').collect();
    parts.len() == 2 && parts.iter().all(|p| !p.is_empty() && !p.starts_with('.'))
}

fn from_hf_cache(repo_id: &str) -> Result<PathBuf> {
    let cache = match std::env::var_os("HF_HUB_CACHE") {
        Some(dir) => hf_hub::Cache::new(dir.into()),
        None => hf_hub::Cache::from_env(),
    };
    let index = cache.model(repo_id.to_owned()).get("model_index.json");
    match index.as_deref().and_then(Path::parent) {
        Some(snapshot) => Ok(snapshot.to_owned()),
        None => Err(Error::Invalid(format!(
            "'{repo_id}' is not in the Hugging Face cache at {} (no snapshot with model_index.json); \
             download it first, e.g. `huggingface-cli download {repo_id}`, or pass the folder",
            cache.path().display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_told_apart_from_paths() {
        assert!(looks_like_repo_id(
            "stabilityai/stable-diffusion-3-medium-diffusers"
        ));
        assert!(!looks_like_repo_id("models/ras-demo/extra"));
        assert!(!looks_like_repo_id("./x"));
        assert!(!looks_like_repo_id("plain"));
    }
}
