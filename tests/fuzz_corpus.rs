//! Replays the committed fuzz inputs on the stable toolchain: every file of
//! tests/fuzz_corpus/<target>/ (crashes the fuzzers found, then fixed, and a
//! few seeds) goes through the same check as `cargo fuzz run <target>`
//! (fuzz/checks.rs). See fuzz/README.md.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

#[test]
fn committed_fuzz_inputs_pass_their_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus");
    let mut failures = Vec::new();
    for &(target, check) in checks::TARGETS {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} holds no inputs", dir.display());
        for file in files {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            // Every failing input is reported, not only the first.
            if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "fuzz inputs failing their check:\n{}",
        failures.join("\n")
    );
}
