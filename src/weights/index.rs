//! The shard list of a sharded checkpoint's `*.safetensors.index.json`.

use std::path::Path;

use super::file_error;
use crate::error::Result;

/// The shard files a `*.safetensors.index.json` lists in its `weight_map`,
/// sorted, each once. A shard must be a file in the index's own folder: a
/// downloaded index may not make the loader open `/dev/stdin`, a FIFO or
/// another folder's files.
pub(super) fn shard_names(text: &str, index: &Path) -> Result<Vec<String>> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| file_error(index, e))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| file_error(index, "no \"weight_map\" object of tensor name -> shard file"))?;
    let mut shards = Vec::new();
    for (key, value) in map {
        let shard = value.as_str().filter(|s| is_plain_file_name(s)).ok_or_else(|| {
            file_error(
                index,
                format!("weight_map maps '{key}' to {value}, not to the name of a shard file in this folder"),
            )
        })?;
        shards.push(shard.to_owned());
    }
    if shards.is_empty() {
        return Err(file_error(index, "weight_map lists no shard files"));
    }
    shards.sort_unstable();
    shards.dedup();
    Ok(shards)
}

/// One normal path component: no separator, not `.` or `..`, not absolute.
fn is_plain_file_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(n)), None) if n == name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(map: &str) -> Result<Vec<String>> {
        shard_names(&format!(r#"{{"weight_map": {map}}}"#), Path::new("x.index.json"))
    }

    #[test]
    fn shards_are_files_of_the_index_folder() {
        let ok = shards(r#"{"a": "m-2.safetensors", "b": "m-1.safetensors", "c": "m-2.safetensors"}"#);
        assert_eq!(ok.unwrap(), ["m-1.safetensors", "m-2.safetensors"]);
        for bad in [
            "\"../m.safetensors\"",
            "\"/dev/stdin\"",
            "\"a/b\"",
            "\"..\"",
            "\".\"",
            "\"\"",
            "3",
            "null",
        ] {
            assert!(shards(&format!(r#"{{"a": {bad}}}"#)).is_err(), "{bad} accepted");
        }
        assert!(shards("{}").is_err(), "no shards accepted");
        assert!(shards("[]").is_err(), "a list accepted");
    }
}
