//! Files `ras` writes are written whole or not at all: the bytes go to a
//! temporary file in the destination's folder, which is synced and renamed
//! over the destination only when complete. On any error, or if the process
//! dies half-way, the old file is untouched and no partial file remains
//! (the temporary file is removed on error, and a rename within one folder
//! is atomic).

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `path` atomically with what `write` produces.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Error::Invalid(format!("writing {}: {what}: {e}", path.display()))
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".ras-")
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|e| fail("creating a temporary file beside it", &e))?;
    {
        let mut out = BufWriter::new(tmp.as_file());
        write(&mut out).map_err(|e| fail("encoding", &e))?;
        out.flush().map_err(|e| fail("flushing", &e))?;
    }
    tmp.as_file().sync_all().map_err(|e| fail("syncing", &e))?;
    tmp.persist(path)
        .map_err(|e| fail("renaming into place", &e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".ras-"))
            .collect()
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.png");
        std::fs::write(&path, b"old image").unwrap();
        let err = write_atomic(&path, |w| {
            w.write_all(b"half of a new ima")?;
            Err(std::io::Error::other("encoder failed"))
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("encoder failed") && err.contains("out.png"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old image");
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn a_complete_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.safetensors");
        std::fs::write(&path, b"old").unwrap();
        write_atomic(&path, |w| w.write_all(b"new contents")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
        // A file name without a folder writes in the current folder's terms.
        let missing = dir.path().join("no-such-folder").join("x.png");
        let err = write_atomic(&missing, |w| w.write_all(b"x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("temporary file"), "{err}");
    }
}
