//! What the workspace's integration tests share: where the repository, the virtualenvs and
//! the built binaries are, how a child's stderr is shown, child processes bounded in time, and
//! skipping a test visibly. Used as a dev-dependency only.

#![allow(clippy::unwrap_used)]

mod bounded;
mod skip;

use std::path::{Path, PathBuf};
use std::process::Output;

pub use bounded::{CommandExt, wait_within};
pub use skip::{SKIPPED_FILE_ENV, skip};

/// The repository root (this crate lives in `crates/test-support`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The SQLMesh virtualenv: `MATERIA_VENV`, else `.venv` (`make venv`).
pub fn venv() -> PathBuf {
    let venv =
        std::env::var_os("MATERIA_VENV").map_or_else(|| repo_root().join(".venv"), PathBuf::from);
    assert!(
        venv.join("bin/sqlmesh").is_file(),
        "no SQLMesh virtualenv at {}: run `make venv`",
        venv.display()
    );
    venv
}

/// A program of the tools virtualenv (moto_server, sops): `MATERIA_TOOLS_VENV`, else
/// `.venv-tools` (`make tools`).
pub fn tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("MATERIA_TOOLS_VENV")
        .map_or_else(|| repo_root().join(".venv-tools"), PathBuf::from);
    let path = venv.join("bin").join(name);
    assert!(
        path.is_file(),
        "no {name} at {}: run `make tools`",
        path.display()
    );
    path
}

/// The directory of the workspace's built binaries: the test runs from `<target>/<profile>/deps`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// A binary of the workspace, built beside the running test (`make test` builds them all).
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --release --workspace --bins`",
        path.display()
    );
    path
}

/// A child's stderr, for assertion messages.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// True when the tests run as root (permission bits do not bind root).
pub fn is_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}
