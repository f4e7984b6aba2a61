//! What materia-web's integration tests share: serving files built by the real pipeline from
//! `psd-gen` data (cached on disk by their inputs, built once under a lock however many test
//! processes ask), the real `materia-web` binary started on them, a small HTTP/1.1 client over
//! plain sockets, and bounded child processes.

#![allow(clippy::unwrap_used, dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use test_support::{repo_root, venv, workspace_bin};

/// The binary under test, where the test runner says it is at run time (CI runs the tests from
/// an archive, in another checkout).
pub fn bin() -> PathBuf {
    test_support::own_bin("materia-web")
}
/// Enough rows for about ten countries per commodity over all market years.
pub const ROWS: u64 = 240_000;
pub const COFFEE: &str = "0711100";
/// Bound on one pipeline step of a fixture build (SQLMesh included).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(600);

/// The commodity whose second snapshot repeats the first: it has no revisions.
pub fn unrevised_commodity() -> &'static str {
    psd_gen::COMMODITIES
        .iter()
        .rev()
        .map(|(code, _, _)| *code)
        .find(|c| *c != COFFEE)
        .unwrap()
}

/// Runs `cmd` to completion within `timeout`, killing it (and failing) past it.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let out_pipe = child.stdout.take().unwrap();
    let err_pipe = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = BufReader::new(out_pipe).read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = BufReader::new(err_pipe).read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// A pipeline site: landing directory, state DB, lakehouse and serving file.
#[derive(Debug, Clone)]
pub struct Site {
    pub dir: PathBuf,
}

impl Site {
    pub fn landing(&self) -> PathBuf {
        self.dir.join("landing")
    }
    pub fn state_db(&self) -> PathBuf {
        self.dir.join("landing/.state.sqlite")
    }
    pub fn lakehouse(&self) -> PathBuf {
        self.dir.join("lakehouse.duckdb")
    }
    pub fn serving(&self) -> PathBuf {
        self.dir.join("analytics.duckdb")
    }

    pub fn step(&self, name: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(workspace_bin(name));
        cmd.env_clear()
            .env("HOME", &self.dir)
            .env("PATH", "/usr/bin:/bin")
            .env("LANDING_DIR", self.landing())
            .env("STATE_DB", self.state_db())
            .env("DUCKDB_PATH", self.lakehouse())
            .env("SERVING_DUCKDB_PATH", self.serving())
            .env("MATERIA_TRANSFORM_DIR", repo_root().join("transform"))
            .env("MATERIA_SQLMESH", venv().join("bin/sqlmesh"))
            .args(args);
        cmd
    }

    fn run_step(&self, name: &str, args: &[&str]) {
        let out = run_bounded(&mut self.step(name, args), STEP_TIMEOUT);
        assert!(
            out.status.success(),
            "{name} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Publishes the lakehouse `from` as a new generation of this site's serving file.
    pub fn export_from(&self, from: &Path) {
        let mut cmd = self.step("export-serving", &["--keep", "0"]);
        cmd.env("DUCKDB_PATH", from);
        let out = run_bounded(&mut cmd, STEP_TIMEOUT);
        assert!(
            out.status.success(),
            "export-serving failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn csv(spec: &psd_gen::Spec) -> Vec<u8> {
    let mut out = Vec::new();
    psd_gen::write_csv(spec, &mut out).unwrap();
    out
}

fn zip(csv: &[u8]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1));
    zip.start_file(psd_gen::ENTRY_NAME, options).unwrap();
    zip.write_all(csv).unwrap();
    zip.finish().unwrap();
    out.into_inner()
}

/// Snapshot 1 of the data, except that [`unrevised_commodity`] repeats snapshot 0: every other
/// commodity gets revisions, that one none. Both CSVs have the same rows in the same order.
fn second_snapshot(s0: &[u8], s1: &[u8]) -> Vec<u8> {
    let keep = format!("{},", unrevised_commodity());
    let a: Vec<&[u8]> = s0.split_inclusive(|b| *b == b'\n').collect();
    let b: Vec<&[u8]> = s1.split_inclusive(|b| *b == b'\n').collect();
    assert_eq!(a.len(), b.len(), "snapshots differ in structure");
    let mut out = Vec::with_capacity(s1.len());
    for (x, y) in a.iter().zip(&b) {
        out.extend_from_slice(if y.starts_with(keep.as_bytes()) { x } else { y });
    }
    out
}

/// The inputs of a fixture: its zips, the transform project, and the step binaries.
fn fixture_key(zips: &[Vec<u8>]) -> String {
    let mut h = Sha256::new();
    for z in zips {
        h.update(Sha256::digest(z));
    }
    let mut files = Vec::new();
    collect_files(&repo_root().join("transform"), &mut files);
    files.sort();
    for f in files {
        h.update(f.to_string_lossy().as_bytes());
        h.update(std::fs::read(&f).unwrap());
    }
    for bin in ["extract-psd", "transform", "export-serving"] {
        let meta = std::fs::metadata(workspace_bin(bin)).unwrap();
        h.update(meta.len().to_le_bytes());
        h.update(format!("{:?}", meta.modified().unwrap()).as_bytes());
    }
    h.finalize()[..10]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "tests" || name == "logs" || name == "__pycache__" {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// A site built by the real pipeline (extract-psd of each zip in order, transform,
/// export-serving), cached under the target directory by its inputs.
fn built_site(name: &str, zips: &[Vec<u8>]) -> Site {
    let root = test_support::bin_dir().join("materia-web-fixtures");
    std::fs::create_dir_all(&root).unwrap();
    let key = format!("{name}-{}", fixture_key(zips));
    let done = root.join(&key);
    let lock = std::fs::File::create(root.join(format!("{key}.lock"))).unwrap();
    lock.lock().unwrap();
    if !done.join("complete").exists() {
        let work = root.join(format!("{key}.partial"));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let site = Site { dir: work.clone() };
        for (i, z) in zips.iter().enumerate() {
            let path = work.join(format!("s{i}.zip"));
            std::fs::write(&path, z).unwrap();
            site.run_step("extract-psd", &["--url", path.to_str().unwrap()]);
        }
        site.run_step("transform", &[]);
        site.run_step("export-serving", &[]);
        std::fs::write(work.join("complete"), key.as_bytes()).unwrap();
        let _ = std::fs::remove_dir_all(&done);
        std::fs::rename(&work, &done).unwrap();
    }
    drop(lock);
    Site { dir: done }
}

/// Two monthly snapshots: revisions everywhere but in [`unrevised_commodity`]; `NA` present.
pub fn site() -> &'static Site {
    static SITE: OnceLock<Site> = OnceLock::new();
    SITE.get_or_init(|| {
        let spec = |snapshot| psd_gen::Spec {
            rows: ROWS,
            seed: 7,
            snapshot,
        };
        let s0 = csv(&spec(0));
        let s1 = second_snapshot(&s0, &csv(&spec(1)));
        built_site("main", &[zip(&s0), zip(&s1)])
    })
}

/// Another dataset (other seed, fewer market years, one snapshot): a lakehouse to alternate
/// generations with, different in every answer.
pub fn other_site() -> &'static Site {
    static SITE: OnceLock<Site> = OnceLock::new();
    SITE.get_or_init(|| {
        let s0 = csv(&psd_gen::Spec {
            rows: ROWS / 20,
            seed: 11,
            snapshot: 0,
        });
        built_site("other", &[zip(&s0)])
    })
}

/// A running materia-web; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// materia-web on `serving` and `state_db`, on a free loopback port.
    pub fn start(serving: &Path, state_db: &Path, extra: &[&str]) -> Server {
        Server::start_with(serving, state_db, extra, &[])
    }

    pub fn start_with(
        serving: &Path,
        state_db: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let mut cmd = Command::new(bin());
        cmd.env_clear()
            .env("MATERIA_LOG", "info")
            .args(["--listen", "127.0.0.1:0", "--serving"])
            .arg(serving)
            .arg("--state-db")
            .arg(state_db)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let addr = wait_for_address(&log, Duration::from_secs(60));
        Server {
            child,
            addr,
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, target: &str) -> Reply {
        get(self.addr, target)
    }

    pub fn request(&self, head: &str) -> Reply {
        request(self.addr, head)
    }

    /// SIGTERM, without waiting.
    pub fn terminate_async(&self) {
        signal(self.pid(), "TERM");
    }

    /// SIGTERM, then the exit status (bounded).
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        signal(self.pid(), "TERM");
        wait_exit(&mut self.child, timeout)
    }

    /// Resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status(self.pid(), "VmRSS:")
    }

    /// Open file descriptors.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

pub fn signal(pid: u32, name: &str) {
    let out = run_bounded(
        Command::new("kill").args([&format!("-{name}"), &pid.to_string()]),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "kill -{name} {pid}");
}

pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("materia-web did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The address materia-web logs once it listens (`listening on 127.0.0.1:PORT, ...`).
pub fn wait_for_address(log: &Path, timeout: Duration) -> SocketAddr {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("listening on ").nth(1) {
            let addr = rest.split([',', ' ']).next().unwrap();
            return addr.parse().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "materia-web did not start within {timeout:?}: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP response as the client saw it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// `GET target` on a new connection.
pub fn get(addr: SocketAddr, target: &str) -> Reply {
    request(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
}

/// Sends `head` (a whole request) on a new connection and reads the response to the end.
pub fn request(addr: SocketAddr, head: &str) -> Reply {
    let mut conn = Conn::open(addr);
    conn.stream.write_all(head.as_bytes()).unwrap();
    conn.read_reply(head.starts_with("HEAD "))
        .unwrap_or_else(|e| panic!("reading the reply to {head:?}: {e}"))
}

/// A keep-alive connection.
pub struct Conn {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        Conn::try_open(addr).unwrap()
    }

    pub fn try_open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)?;
        stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Conn { stream, reader })
    }

    /// `GET target` on this connection, kept alive.
    pub fn get(&mut self, target: &str) -> std::io::Result<Reply> {
        self.stream
            .write_all(format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())?;
        self.read_reply(false)
    }

    pub fn read_reply(&mut self, head_only: bool) -> std::io::Result<Reply> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        let no_body = head_only || status == 304 || status == 204 || (100..200).contains(&status);
        let mut body = Vec::new();
        if !no_body {
            if let Some(len) = reply.header("content-length") {
                let len: usize = len.parse().unwrap();
                body.resize(len, 0);
                self.reader.read_exact(&mut body)?;
            } else if reply
                .header("transfer-encoding")
                .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
            {
                loop {
                    let mut size = String::new();
                    self.reader.read_line(&mut size)?;
                    let n = usize::from_str_radix(size.trim(), 16).unwrap();
                    let mut chunk = vec![0; n + 2];
                    self.reader.read_exact(&mut chunk)?;
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
            } else {
                self.reader.read_to_end(&mut body)?;
            }
        }
        Ok(Reply { body, ..reply })
    }
}

/// Python of the SQLMesh virtualenv (it has `duckdb`).
pub fn python() -> PathBuf {
    venv().join("bin/python")
}

/// The name under `/static/` of the ECharts script a page loads (the first `src="/static/..."`).
pub fn echarts_name(page: &str) -> String {
    page.split("src=\"/static/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the page loads no script from /static/: {page:.200}"))
        .to_owned()
}

/// The directory of this crate's tests (scripts live beside them).
pub fn tests_dir() -> PathBuf {
    repo_root().join("crates/materia-web/tests")
}
