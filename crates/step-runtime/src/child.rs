//! Child processes of a step (SQLMesh, rclone, git, sops, build commands): run to completion
//! within a time bound, with stdout captured up to a cap or forwarded to the log line by line,
//! and the last lines kept for an error message. The caller chooses the environment.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How often a running child is polled for exit.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What to do with a child's stdout.
#[derive(Debug, Clone, Copy)]
pub enum Stdout {
    /// Keep it (at most this many bytes; more is drained and reported as `stdout_overflow`).
    /// Never logged: it may be data or a decrypted secret.
    Capture { max_bytes: usize },
    /// Log each line of stdout and stderr at info level, prefixed, and keep the last ones in
    /// the tail.
    Forward { prefix: &'static str },
}

/// Bounds and wiring of one child.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub timeout: Duration,
    pub stdout: Stdout,
    /// Lines kept for an error message (stderr, and forwarded stdout).
    pub tail_lines: usize,
    /// Run in a process group of its own, and kill the whole group on time-out (a build's
    /// compilers, a health check's sleep). Leave off for a child that must receive the
    /// signals sent to our own group (a supervisor stopping the step and everything under it).
    pub own_process_group: bool,
}

/// How a child ended.
#[derive(Debug)]
pub struct Finished {
    /// None: killed after `timeout`.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stdout_overflow: bool,
    /// The last lines of stderr (and of forwarded stdout), oldest first.
    pub tail: Vec<String>,
    pub elapsed: Duration,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn tail_text(&self) -> String {
        self.tail.join("\n")
    }
}

fn keep(tail: &Mutex<VecDeque<String>>, max: usize, line: &str) {
    if let Ok(mut t) = tail.lock() {
        if t.len() == max {
            t.pop_front();
        }
        t.push_back(line.to_owned());
    }
}

/// Runs `cmd` (stdin closed, stdout and stderr piped) until it exits or `options.timeout`
/// passes, in which case it is killed and `status` is None. Errors only when it cannot be
/// started or waited for.
pub fn run(mut cmd: Command, options: Options) -> io::Result<Finished> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if options.own_process_group {
        cmd.process_group(0);
    }
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(options.tail_lines)));
    let max = options.tail_lines.max(1);

    let stdout = child.stdout.take().expect("stdout is piped");
    let out_tail = Arc::clone(&tail);
    let out_reader = thread::spawn(move || -> (Vec<u8>, bool) {
        match options.stdout {
            Stdout::Capture { max_bytes } => {
                let mut stdout = stdout;
                let mut buf = Vec::new();
                let _ = (&mut stdout)
                    .take(max_bytes as u64 + 1)
                    .read_to_end(&mut buf);
                let overflow = buf.len() > max_bytes;
                buf.truncate(max_bytes);
                // Keep draining so the child never blocks on a full pipe.
                let _ = io::copy(&mut stdout, &mut io::sink());
                (buf, overflow)
            }
            Stdout::Forward { prefix } => {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let line = line.trim_end();
                    if !line.trim().is_empty() {
                        log::info!("{prefix}{line}");
                        keep(&out_tail, max, line);
                    }
                }
                (Vec::new(), false)
            }
        }
    });
    let stderr = child.stderr.take().expect("stderr is piped");
    let err_tail = Arc::clone(&tail);
    // Forwarded output is logged whole; captured output's stderr only goes to the tail, for
    // the caller to show (scrubbed, if it may hold a secret).
    let forward = match options.stdout {
        Stdout::Forward { prefix } => Some(prefix),
        Stdout::Capture { .. } => None,
    };
    let err_reader = thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let line = line.trim_end();
            if line.trim().is_empty() {
                continue;
            }
            if let Some(prefix) = forward {
                log::info!("{prefix}{line}");
            }
            keep(&err_tail, max, line);
        }
    });

    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() >= options.timeout {
            if options.own_process_group {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(POLL_INTERVAL);
    };
    let (stdout, stdout_overflow) = out_reader.join().unwrap_or_default();
    let _ = err_reader.join();
    let tail = tail
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    Ok(Finished {
        status,
        stdout,
        stdout_overflow,
        tail,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script]);
        cmd
    }

    fn options(stdout: Stdout) -> Options {
        Options {
            timeout: Duration::from_secs(10),
            stdout,
            tail_lines: 2,
            own_process_group: false,
        }
    }

    #[test]
    fn captures_stdout_up_to_the_cap_and_keeps_the_last_stderr_lines() {
        let f = run(
            sh("printf 0123456789; echo a >&2; echo b >&2; echo c >&2; exit 3"),
            options(Stdout::Capture { max_bytes: 4 }),
        )
        .unwrap();
        assert_eq!(f.status.and_then(|s| s.code()), Some(3));
        assert!(!f.success());
        assert_eq!(f.stdout, b"0123");
        assert!(f.stdout_overflow);
        assert_eq!(f.tail, ["b", "c"]);
    }

    #[test]
    fn forwarded_stdout_lands_in_the_tail() {
        let f = run(
            sh("echo one; echo two; echo three"),
            options(Stdout::Forward { prefix: "x: " }),
        )
        .unwrap();
        assert!(f.success());
        assert!(f.stdout.is_empty());
        assert_eq!(f.tail_text(), "two\nthree");
    }

    #[test]
    fn a_child_over_its_time_is_killed_with_its_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let mut opts = options(Stdout::Capture { max_bytes: 10 });
        opts.timeout = Duration::from_millis(300);
        opts.own_process_group = true;
        let f = run(
            sh(&format!(
                "sleep 30 & echo $! > '{}'; wait",
                pid_file.display()
            )),
            opts,
        )
        .unwrap();
        assert!(f.status.is_none());
        assert!(f.elapsed < Duration::from_secs(10));
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stat =
                std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                break;
            }
            assert!(Instant::now() < deadline, "the grandchild survived");
            thread::sleep(Duration::from_millis(20));
        }
    }
}
