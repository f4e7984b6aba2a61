//! Child processes of tests, bounded in time: a hang fails the test within its bound instead of
//! holding the run until CI gives up. Each child runs in a process group of its own, killed
//! whole at the bound, and its output is read while it runs (a full pipe never stalls it).

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long output is still read after the child ended, before a process it left behind
/// holding the pipes is ignored.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// `Command::output` and `Command::status`, bounded in time.
pub trait CommandExt {
    /// Runs to completion (stdin closed, stdout and stderr captured) and returns its output;
    /// panics, naming the command and showing its stderr, if it outlives `limit`.
    fn output_within(&mut self, limit: Duration) -> std::io::Result<Output>;

    /// The same, for its exit status only (output captured and dropped).
    fn status_within(&mut self, limit: Duration) -> std::io::Result<ExitStatus> {
        self.output_within(limit).map(|o| o.status)
    }
}

impl CommandExt for Command {
    fn output_within(&mut self, limit: Duration) -> std::io::Result<Output> {
        let child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        Ok(wait_within(child, limit))
    }
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

/// Waits for a spawned child (its piped stdout and stderr are read meanwhile) and returns its
/// output; kills it, with its process group when it leads one, and panics if it outlives
/// `limit`.
pub fn wait_within(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > limit {
            let pid = child.id().to_string();
            // The group first (a shell's children), then the child itself.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(POLL_INTERVAL);
    };
    let until = Instant::now() + DRAIN_AFTER_EXIT;
    let drain = |rx: mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(until.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    };
    let (stdout, stderr) = (drain(stdout), drain(stderr));
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "child process outlived its bound of {limit:?} and was killed; stderr:\n{}",
            String::from_utf8_lossy(&stderr)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn output_and_status_come_back_as_from_std() {
        let out = sh("echo out; echo err >&2; exit 3")
            .output_within(Duration::from_secs(30))
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        // More than a pipe holds: read while it runs, or the child would block.
        let out = sh("head -c 1000000 /dev/zero")
            .output_within(Duration::from_secs(30))
            .unwrap();
        assert_eq!(out.stdout.len(), 1_000_000);
    }

    #[test]
    #[should_panic(expected = "outlived its bound of 300ms")]
    fn a_child_past_its_bound_fails_the_test() {
        let _ = sh("sleep 600 & sleep 600").output_within(Duration::from_millis(300));
    }

    #[test]
    fn a_grandchild_holding_the_pipes_does_not_hold_the_test() {
        let dir = std::env::temp_dir().join(format!("materia-bounded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid = dir.join("pid");
        let (tx, rx) = mpsc::channel();
        let script = format!("sleep 600 & echo $! > '{}'; echo done", pid.display());
        thread::spawn(move || {
            let _ = tx.send(sh(&script).output_within(Duration::from_secs(60)));
        });
        let out = rx.recv_timeout(Duration::from_secs(30));
        if let Ok(pid) = std::fs::read_to_string(&pid) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
        std::fs::remove_dir_all(&dir).unwrap();
        let out = out
            .expect("returned at most DRAIN_AFTER_EXIT after the child")
            .unwrap();
        assert!(out.status.success());
    }
}
