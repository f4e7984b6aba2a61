//! Child processes of a deploy (git, sops, the build, restart and health commands): a chosen
//! environment, a working directory, a time bound, and the tail of their output for errors.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

/// Lines of output kept for an error message.
const TAIL_LINES_MAX: usize = 20;
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Variables a deploy's children may see, passed through when set: what git, a build
/// (cargo, rustup, make, Python), sops and systemctl need, and the pipeline's own settings for
/// health checks. Nothing else is inherited.
const PASSED: [&str; 22] = [
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

/// Runs `program args` in `dir` within `timeout`; fails with its last lines unless it exits 0.
pub fn run(
    what: &str,
    program: &Path,
    args: &[&str],
    dir: &Path,
    timeout: Duration,
) -> anyhow::Result<Finished> {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(environment())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("{what}: cannot start {}", program.display()))?;
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let mut stdout = child.stdout.take().expect("piped");
    let out_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = (&mut stdout).take(16 << 20).read_to_string(&mut s);
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        s
    });
    let stderr = child.stderr.take().expect("piped");
    let err_tail = Arc::clone(&tail);
    let err_reader = thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            log::debug!("{line}");
            if let Ok(mut t) = err_tail.lock() {
                if t.len() == TAIL_LINES_MAX {
                    t.pop_front();
                }
                t.push_back(line);
            }
        }
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for a child")? {
            break Some(status);
        }
        if start.elapsed() >= timeout {
            // The command's whole process group: a build's compilers, a health check's sleep.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(POLL_INTERVAL);
    };
    let stdout = out_reader
        .join()
        .map_err(|_| anyhow!("output reader panicked"))?;
    let _ = err_reader.join();
    let tail: Vec<String> = tail
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    // Only stderr is ever shown: stdout may be a decrypted secret.
    let shown = tail.join("\n");
    match status {
        None => bail!(
            "{what} did not finish within {}s and was killed; last output:\n{shown}",
            timeout.as_secs()
        ),
        Some(s) if s.success() => Ok(Finished { stdout }),
        Some(s) => bail!("{what} failed ({s}); last output:\n{}", shown.trim()),
    }
}

/// Runs a shell command line (an operator's build, restart or health command) in `dir`.
pub fn shell(what: &str, cmd: &str, dir: &Path, timeout: Duration) -> anyhow::Result<Finished> {
    run(what, Path::new("/bin/sh"), &["-c", cmd], dir, timeout)
}
