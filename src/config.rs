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
    parse_json(&read_text(path)?, path)
}

/// Reads a config file as text; an unreadable file is `Error::Config`.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| config_error(path, e.to_string()))
}

/// Parses config `text`; `path` only names the file in the error.
pub(crate) fn parse_json<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T> {
    serde_json::from_str(text).map_err(|e| config_error(path, e.to_string()))
}

/// The largest value a config may give any size (a width, a head count, a
/// layer count, a vocabulary, a table of positions): 2^24, far above any
/// real model's, and low enough that the product of two sizes (a weight's
/// shape, a derived width) cannot overflow.
pub const MAX_DIM: usize = 1 << 24;

/// Refuses sizes that are zero or over [`MAX_DIM`]: a zero patch or head
/// count would divide by zero later, a huge one would overflow the shapes
/// derived from it.
pub(crate) fn check_dims(path: &Path, dims: &[(&str, usize)]) -> Result<()> {
    for &(name, value) in dims {
        if value == 0 || value > MAX_DIM {
            return Err(config_error(
                path,
                format!(
                    "{name} is {value}; it must be between 1 and {MAX_DIM}. Is the file damaged, \
                     or the config of another kind of model?"
                ),
            ));
        }
    }
    Ok(())
}
