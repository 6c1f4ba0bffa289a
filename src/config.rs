//! The JSON files that describe models (diffusers' `config.json`,
//! `model_index.json`, scheduler and tokenizer configs, …).

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A config error about the file at `path`.
pub(crate) fn config_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Config {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads and parses a JSON file; unreadable or malformed files are
/// `Error::Config` naming the file.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| config_error(path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| config_error(path, e.to_string()))
}
