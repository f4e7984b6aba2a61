//! Child processes of a step (SQLMesh, rclone, git, sops, build commands): run to completion
//! within a time bound, with stdout captured up to a cap or forwarded to the log line by line,
//! and the last lines kept for an error message. The caller chooses the environment.
//!
//! The bound covers the output too: a process the child started may keep its stdout or stderr
//! open after the child is gone (`./daemon &`). Its output is read for at most
//! [`OUTPUT_DRAIN_AFTER_EXIT`] more, then discarded unread by a reader left behind, so the
//! writer never meets a closed pipe (SIGPIPE) while the step is alive. Output is read as bytes:
//! a line that is not UTF-8 is shown with replacement characters, never ends the reading.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How often a running child is polled for exit.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long output is still read after the child exited or was killed, for the last bytes in
/// the pipe, before a process that still holds it open is left behind.
pub const OUTPUT_DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// Longest line kept or logged; a longer one is cut into pieces of this size.
pub const LINE_BYTES_MAX: usize = 16 * 1024;
/// Bytes read from a pipe at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;

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
    /// A process the child started still held its stdout or stderr open
    /// [`OUTPUT_DRAIN_AFTER_EXIT`] after the child ended; what it writes later is discarded.
    pub output_left_open: bool,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn tail_text(&self) -> String {
        self.tail.join("\n")
    }
}

/// What the readers collected, shared with them.
#[derive(Default)]
struct Collected {
    stdout: Vec<u8>,
    stdout_overflow: bool,
    tail: VecDeque<String>,
}

struct Shared {
    collected: Mutex<Collected>,
    tail_max: usize,
    /// Set when `run` returned with a pipe still open: its reader reads on, keeps nothing.
    left_behind: AtomicBool,
}

impl Shared {
    fn left_behind(&self) -> bool {
        self.left_behind.load(Ordering::Relaxed)
    }

    fn keep(&self, line: String) {
        if let Ok(mut c) = self.collected.lock() {
            if c.tail.len() == self.tail_max {
                c.tail.pop_front();
            }
            c.tail.push_back(line);
        }
    }

    fn capture(&self, data: &[u8], max_bytes: usize) {
        if let Ok(mut c) = self.collected.lock() {
            let room = max_bytes.saturating_sub(c.stdout.len());
            if data.len() > room {
                c.stdout_overflow = true;
            }
            c.stdout.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
}

/// Reads `pipe` to its end, `READ_CHUNK_BYTES` at a time, handing each piece to `each`.
/// Interrupted reads are retried; another error ends the reading (a pipe has none to give).
fn drain(mut pipe: impl Read, mut each: impl FnMut(&[u8])) {
    let mut buf = vec![0; READ_CHUNK_BYTES];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => each(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Splits bytes into lines of at most [`LINE_BYTES_MAX`] bytes and hands each, decoded
/// lossily and trimmed, to `line` (blank lines are dropped).
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    fn new() -> Lines {
        Lines {
            partial: Vec::new(),
        }
    }

    fn feed(&mut self, mut data: &[u8], line: &mut impl FnMut(String)) {
        while !data.is_empty() {
            let (mut piece, ended) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let piece = &data[..i];
                    data = &data[i + 1..];
                    (piece, true)
                }
                None => (std::mem::take(&mut data), false),
            };
            while self.partial.len() + piece.len() > LINE_BYTES_MAX {
                let take = LINE_BYTES_MAX - self.partial.len();
                self.partial.extend_from_slice(&piece[..take]);
                piece = &piece[take..];
                self.flush(line);
            }
            self.partial.extend_from_slice(piece);
            if ended {
                self.flush(line);
            }
        }
    }

    fn flush(&mut self, line: &mut impl FnMut(String)) {
        let text = String::from_utf8_lossy(&self.partial);
        let text = text.trim_end();
        if !text.trim().is_empty() {
            line(text.to_owned());
        }
        self.partial.clear();
    }
}

/// Reads a pipe line by line into the tail, logging each line when `prefix` is given.
fn read_lines(pipe: impl Read, shared: &Shared, prefix: Option<&'static str>) {
    let mut lines = Lines::new();
    let mut take = |line: String| {
        if shared.left_behind() {
            return;
        }
        if let Some(prefix) = prefix {
            log::info!("{prefix}{line}");
        }
        shared.keep(line);
    };
    drain(pipe, |data| lines.feed(data, &mut take));
    lines.flush(&mut take);
}

/// Runs `cmd` (stdin closed, stdout and stderr piped) until it exits or `options.timeout`
/// passes, in which case it is killed and `status` is None. Returns at most
/// [`OUTPUT_DRAIN_AFTER_EXIT`] after that, whoever still holds the pipes. Errors only when it
/// cannot be started or waited for.
pub fn run(mut cmd: Command, options: Options) -> io::Result<Finished> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if options.own_process_group {
        cmd.process_group(0);
    }
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let shared = Arc::new(Shared {
        collected: Mutex::new(Collected::default()),
        tail_max: options.tail_lines.max(1),
        left_behind: AtomicBool::new(false),
    });
    // Each reader says when its pipe reached its end.
    let (ended_tx, ended_rx) = mpsc::channel::<()>();

    let stdout = child.stdout.take().expect("stdout is piped");
    let (out_shared, out_ended) = (Arc::clone(&shared), ended_tx.clone());
    thread::spawn(move || {
        match options.stdout {
            Stdout::Capture { max_bytes } => drain(stdout, |data| {
                if !out_shared.left_behind() {
                    out_shared.capture(data, max_bytes);
                }
            }),
            Stdout::Forward { prefix } => read_lines(stdout, &out_shared, Some(prefix)),
        }
        let _ = out_ended.send(());
    });
    // Forwarded output is logged whole; captured output's stderr only goes to the tail, for
    // the caller to show (scrubbed, if it may hold a secret).
    let forward = match options.stdout {
        Stdout::Forward { prefix } => Some(prefix),
        Stdout::Capture { .. } => None,
    };
    let stderr = child.stderr.take().expect("stderr is piped");
    let err_shared = Arc::clone(&shared);
    thread::spawn(move || {
        read_lines(stderr, &err_shared, forward);
        let _ = ended_tx.send(());
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

    // The child is gone; what it wrote is in the pipes. A pipe still open after the drain
    // time belongs to a process it started, which is not ours to wait for.
    let drain_until = Instant::now() + OUTPUT_DRAIN_AFTER_EXIT;
    let mut open = 2;
    while open > 0 {
        let left = drain_until.saturating_duration_since(Instant::now());
        match ended_rx.recv_timeout(left) {
            Ok(()) => open -= 1,
            Err(_) => break,
        }
    }
    let output_left_open = open > 0;
    if output_left_open {
        shared.left_behind.store(true, Ordering::Relaxed);
        log::warn!(
            "a process started by the command still holds its output open; not waiting for it (its further output is discarded)"
        );
    }
    let collected = shared
        .collected
        .lock()
        .map(|mut c| std::mem::take(&mut *c))
        .unwrap_or_default();
    let mut tail: Vec<String> = collected.tail.into();
    if output_left_open {
        tail.push(
            "(a process the command started still holds its output open; not read further)".into(),
        );
    }
    Ok(Finished {
        status,
        stdout: collected.stdout,
        stdout_overflow: collected.stdout_overflow,
        tail,
        elapsed: start.elapsed(),
        output_left_open,
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

    /// Runs `run` on a thread, so that a runner that hangs fails the test instead of hanging it.
    fn run_within(cmd: Command, opts: Options, limit: Duration) -> Finished {
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(run(cmd, opts));
        });
        rx.recv_timeout(limit)
            .unwrap_or_else(|_| panic!("child::run did not return within {limit:?}"))
            .unwrap()
    }

    /// Kills the process whose pid `file` holds, when the test ends however it ends.
    struct KillOnDrop(std::path::PathBuf);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if let Ok(pid) = std::fs::read_to_string(&self.0) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
        }
    }

    // Regression: readers were joined until EOF, so `./x &` (a grandchild inheriting the pipes)
    // held the step until the grandchild exited, whatever the time bound.
    #[test]
    fn a_grandchild_holding_the_pipes_open_does_not_hold_the_runner() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let _kill = KillOnDrop(pid_file.clone());
        for stdout in [
            Stdout::Capture { max_bytes: 100 },
            Stdout::Forward { prefix: "x: " },
        ] {
            let mut opts = options(stdout);
            opts.timeout = Duration::from_secs(60);
            let f = run_within(
                sh(&format!(
                    "echo started; sleep 600 & echo $! > '{}'; echo done >&2; exit 0",
                    pid_file.display()
                )),
                opts,
                Duration::from_secs(30),
            );
            assert!(f.success(), "the command's own exit is reported: {f:?}");
            assert!(f.output_left_open);
            assert!(f.tail.iter().any(|l| l == "done"), "{:?}", f.tail);
            if let Stdout::Capture { .. } = stdout {
                assert_eq!(f.stdout, b"started\n");
            }
        }
    }

    // Regression: the same, for a child killed at its time bound outside a process group of its
    // own (SQLMesh, rclone): the kill reached the child, not the grandchild holding the pipes.
    #[test]
    fn the_time_bound_holds_when_a_grandchild_outlives_the_killed_child() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let _kill = KillOnDrop(pid_file.clone());
        let mut opts = options(Stdout::Forward { prefix: "x: " });
        opts.timeout = Duration::from_millis(500);
        let f = run_within(
            sh(&format!(
                "sleep 600 & echo $! > '{}'; sleep 600",
                pid_file.display()
            )),
            opts,
            Duration::from_secs(30),
        );
        assert!(f.status.is_none(), "killed at its bound: {f:?}");
        assert!(f.output_left_open);
    }

    // Regression: a line that was not UTF-8 ended the reader, which closed the pipe, and the
    // child died of SIGPIPE at its next write (a good build marked bad).
    #[test]
    fn a_line_that_is_not_utf8_does_not_end_the_reading() {
        // 20,000 lines after the bad one: far more than a pipe holds, so the child blocks or
        // dies unless every line is read.
        let script = "printf 'bad \\377\\376 byte\\n'; i=0; while [ $i -lt 20000 ]; do echo \"line $i\"; i=$((i+1)); done; echo last; exit 7";
        for (stdout, redirect) in [
            (Stdout::Forward { prefix: "x: " }, ""),
            (Stdout::Capture { max_bytes: 10 }, " >&2"),
        ] {
            let f = run_within(
                sh(&format!("{{ {script}; }}{redirect}")),
                options(stdout),
                Duration::from_secs(60),
            );
            assert_eq!(f.status.and_then(|s| s.code()), Some(7), "{f:?}");
            assert_eq!(f.tail, ["line 19999", "last"]);
        }
        let mut opts = options(Stdout::Forward { prefix: "x: " });
        opts.tail_lines = 1;
        let f = run_within(sh("printf 'caf\\351\\n'"), opts, Duration::from_secs(30));
        assert_eq!(f.tail, ["caf\u{fffd}"]);
    }

    #[test]
    fn a_line_without_end_is_kept_in_pieces_of_bounded_size() {
        let mut opts = options(Stdout::Forward { prefix: "x: " });
        opts.tail_lines = 3;
        let f = run_within(
            sh("head -c 1000000 /dev/zero | tr '\\0' x"),
            opts,
            Duration::from_secs(30),
        );
        assert!(f.success());
        assert_eq!(f.tail.len(), 3);
        assert!(f.tail.iter().all(|l| l.len() <= LINE_BYTES_MAX), "bounded");
        assert_eq!(f.tail[0].len(), LINE_BYTES_MAX);
        assert_eq!(f.tail[2].len(), 1_000_000 % LINE_BYTES_MAX);
    }
}
