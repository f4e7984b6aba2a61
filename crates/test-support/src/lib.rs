//! What the workspace's integration tests share: where the repository, the virtualenvs and
//! the built binaries are, how a child's stderr is shown and its `--json` line read. Used as a
//! dev-dependency only.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// Runs `cmd` to completion with stdout and stderr captured, and fails the test if it outlives
/// `limit` (the child is killed): a hang fails fast instead of holding the suite.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} outlived {limit:?} and was killed; stderr: {}",
                String::from_utf8_lossy(&stderr.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// A child's stderr, for assertion messages.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
