//! The committed fixture checkpoints, and writable copies of them to break on purpose.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::TempDir;

/// `tests/fixtures/models/<name>` at the repository root.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/models")
        .join(name)
}

/// A writable copy of a fixture checkpoint.
pub fn copy_of(name: &str) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(fixture(name)).expect("fixture") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
    }
    dir
}

/// Rewrites the copy's config.json through `edit`.
pub fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    edit(config.as_object_mut().expect("object"));
    std::fs::write(&path, serde_json::to_string_pretty(&config).expect("json")).expect("write");
}
