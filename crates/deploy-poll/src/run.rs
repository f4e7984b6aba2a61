//! Child processes of a deploy (git, sops, the build, restart and health commands): a chosen
//! environment, a working directory, a time bound, and the tail of their output for errors.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use step_runtime::child::{self, Options, Stdout};

use crate::limits::{STDOUT_MAX_BYTES, TAIL_LINES_MAX};

/// Variables a deploy's children may see, passed through when set: what git, a build
/// (cargo, rustup, make, Python), sops and systemctl need, and the pipeline's own settings for
/// health checks. Nothing else is inherited.
const PASSED: [&str; 25] = [
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "USER",
    "LOGNAME",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "CARGO_TARGET_DIR",
    "GIT_SSH_COMMAND",
    "SSH_AUTH_SOCK",
    "GNUPGHOME",
    "SOPS_AGE_KEY_FILE",
    "MATERIA_ROOT",
    "LANDING_DIR",
    "STATE_DB",
    "DUCKDB_PATH",
    "SERVING_DUCKDB_PATH",
    "METRICS_DIR",
    "MATERIA_WEB_LISTEN",
    "MATERIA_HEALTH_WAIT_SECS",
    "MATERIA_HEALTH_POLL_SECS",
    "XDG_RUNTIME_DIR",
    "DBUS_SYSTEM_BUS_ADDRESS",
];

pub fn environment() -> Vec<(&'static str, OsString)> {
    PASSED
        .iter()
        .filter_map(|k| std::env::var_os(k).map(|v| (*k, v)))
        .chain([
            ("GIT_TERMINAL_PROMPT", "0".into()),
            ("GIT_CONFIG_NOSYSTEM", "1".into()),
        ])
        .collect()
}

/// What a finished child printed on stdout.
pub struct Finished {
    pub stdout: String,
}

/// Runs `program args` in `dir` within `timeout` (its whole process group is killed after
/// that); fails with its last stderr lines unless it exits 0. Stdout is never shown: it may be
/// a decrypted secret.
pub fn run(
    what: &str,
    program: &Path,
    args: &[&str],
    dir: &Path,
    timeout: Duration,
) -> anyhow::Result<Finished> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .envs(environment());
    let finished = child::run(
        cmd,
        Options {
            timeout,
            stdout: Stdout::Capture {
                max_bytes: STDOUT_MAX_BYTES,
            },
            tail_lines: TAIL_LINES_MAX,
            own_process_group: true,
        },
    )
    .with_context(|| format!("{what}: cannot start {}", program.display()))?;
    let shown = finished.tail_text();
    match finished.status {
        None => bail!(
            "{what} did not finish within {}s and was killed; last output:\n{shown}",
            timeout.as_secs()
        ),
        Some(s) if s.success() && !finished.stdout_overflow => Ok(Finished {
            stdout: String::from_utf8_lossy(&finished.stdout).into_owned(),
        }),
        Some(s) if s.success() => bail!("{what} printed more than {STDOUT_MAX_BYTES} bytes"),
        Some(s) => bail!("{what} failed ({s}); last output:\n{}", shown.trim()),
    }
}

/// Runs a shell command line (an operator's build, restart or health command) in `dir`.
pub fn shell(what: &str, cmd: &str, dir: &Path, timeout: Duration) -> anyhow::Result<Finished> {
    run(what, Path::new("/bin/sh"), &["-c", cmd], dir, timeout)
}
