//! What the workspace's integration tests share: where the repository, the virtualenvs and
//! the built binaries are, how a child's stderr is shown, child processes bounded in time, and
//! skipping a test visibly. Used as a dev-dependency only.
//!
//! Paths are found when the test runs, never compiled in: CI builds the tests once into a
//! nextest archive and runs each crate's tests from it in another job, in another checkout,
//! where the build job's paths do not exist. Cargo (since Rust 1.94) and nextest (remapped to
//! the extracted archive and the job's checkout) set `CARGO_MANIFEST_DIR` and
//! `CARGO_BIN_EXE_<name>` in the test's environment.

#![allow(clippy::unwrap_used)]

mod bounded;
mod skip;

use std::path::PathBuf;
use std::process::Output;

pub use bounded::{CommandExt, wait_within};
pub use skip::{SKIPPED_FILE_ENV, skip};

/// The repository root: two levels above the running test's package (`crates/<name>`), as the
/// test runner sets `CARGO_MANIFEST_DIR`; the compiled-in path only when a test binary is run
/// by hand.
pub fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let root = manifest_dir.join("../..");
    root.canonicalize()
        .unwrap_or_else(|e| panic!("no repository at {}: {e}", root.display()))
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

/// A binary of the crate under test, where the test runner says it is (`CARGO_BIN_EXE_<name>`
/// at run time), else beside the running test.
pub fn own_bin(name: &str) -> PathBuf {
    match std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        Some(path) => PathBuf::from(path),
        None => workspace_bin(name),
    }
}

/// A binary of the workspace, built beside the running test, in the profile the test was built
/// in (`make test` builds them all in `release`; `cargo test -p CRATE` builds only that crate's).
pub fn workspace_bin(name: &str) -> PathBuf {
    let dir = bin_dir();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `{}` (this test runs binaries of other crates, built in the \
         same profile)",
        path.display(),
        build_command(&dir)
    );
    path
}

/// The cargo command that builds every binary into `dir` (`<target>/<profile>`).
fn build_command(dir: &std::path::Path) -> String {
    let profile = dir.file_name().map(|p| p.to_string_lossy().into_owned());
    match profile.as_deref() {
        Some("debug") => "cargo build --workspace --bins".to_owned(),
        Some("release") => "cargo build --release --workspace --bins".to_owned(),
        Some(other) => format!("cargo build --profile {other} --workspace --bins"),
        None => "cargo build --release --workspace --bins".to_owned(),
    }
}

/// The one JSON object a `--json` run printed: stdout must be exactly one line holding one JSON
/// value, else the test fails showing stdout and stderr.
pub fn json_line(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "exactly one JSON line on stdout expected, got {stdout:?}\nstderr: {}",
        stderr(out)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "one JSON object expected ({e}): {stdout:?}\nstderr: {}",
            stderr(out)
        )
    })
}

/// A child's stderr, for assertion messages.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// True when the tests run as root (permission bits do not bind root).
pub fn is_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}
