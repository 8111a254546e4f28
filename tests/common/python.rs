//! The Python peers' interpreter and where their scripts are, for the tests of every crate in
//! the workspace: `tests/python/` holds the scripts and their pinned requirements once, and the
//! forest crate's tests include this file by path rather than keep a copy.

use std::path::{Path, PathBuf};

/// The repository's root: the nearest folder at or above the testing crate's that holds
/// `tests/python`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("tests/python").is_dir())
        .unwrap_or_else(|| panic!("no tests/python at or above {}", env!("CARGO_MANIFEST_DIR")))
        .to_path_buf()
}

/// The Python with the pinned peers (`tests/python/requirements.txt`): `CANOPY_PYTHON`, else the
/// repository's `.venv`. Fails the test, saying how to get one, when neither exists.
pub fn python() -> PathBuf {
    let path = std::env::var_os("CANOPY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(
        path.exists(),
        "no Python at {}: run .ci/run (it builds .venv from tests/python/requirements.txt), or set \
         CANOPY_PYTHON to a Python with those packages \
         (python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt)",
        path.display()
    );
    path
}
