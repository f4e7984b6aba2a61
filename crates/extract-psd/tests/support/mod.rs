//! Test support: a scripted HTTP/1.1 server on loopback, a sandbox with its own landing
//! directory and state DB, and runs of the real `extract-psd` binary in it.

#![allow(dead_code)]
// Test support: a failed expectation here must fail the test, loudly.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub index: usize,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server does with a request.
pub enum Reply {
    /// A complete response.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Announces `body.len()` bytes but sends only the first `sent`, then closes.
    Truncated { body: Vec<u8>, sent: usize },
    /// Sends the body `chunk` bytes at a time, `every` apart.
    Drip {
        body: Vec<u8>,
        chunk: usize,
        every: Duration,
    },
    /// Resets the connection (TCP RST) after reading the request.
    Reset,
    /// These bytes exactly (status line, headers and body, as written), then close.
    Raw(Vec<u8>),
    /// `head` (status line and headers, no Content-Length: the body ends at close), then
    /// `body`, then filler until the client hangs up (at most [`ENDLESS_BYTES_MAX`]).
    Endless { head: String, body: Vec<u8> },
    /// Reads the request, then sends nothing, holding the connection open until the server
    /// stops (at most [`SILENT_HOLD_MAX`]).
    Silent,
}

/// Bounds of the server's own misbehaviour, so that a test that goes wrong still ends.
pub const ENDLESS_BYTES_MAX: usize = 4 << 30;
pub const SILENT_HOLD_MAX: Duration = Duration::from_secs(300);

impl Reply {
    pub fn ok(body: Vec<u8>) -> Reply {
        Reply::Full {
            status: 200,
            headers: vec![("Content-Type".into(), "application/zip".into())],
            body,
        }
    }

    pub fn status(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        Reply::Full {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn with_headers(body: Vec<u8>, headers: &[(&str, &str)]) -> Reply {
        Reply::Full {
            status: 200,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body,
        }
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A loopback HTTP server that answers each request with what its handler says.
pub struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (r, s) = (Arc::clone(&requests), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            // Bounded: the server lives as long as its test, and serves each connection once.
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (h, r, s) = (Arc::clone(&handler), Arc::clone(&r), Arc::clone(&s));
                        thread::spawn(move || serve(stream, &*h, &r, &s));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, handler: &Handler, requests: &Mutex<Vec<Request>>, stop: &AtomicBool) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let request = {
        let mut all = requests.lock().unwrap();
        let r = Request {
            index: all.len(),
            path,
            headers,
            at: Instant::now(),
        };
        all.push(r.clone());
        r
    };
    let mut stream = stream;
    let head = |status: u16, headers: &[(String, String)], len: usize| {
        let mut s = format!(
            "HTTP/1.1 {status} {}\r\nContent-Length: {len}\r\nConnection: close\r\n",
            reason(status)
        );
        for (k, v) in headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s
    };
    match handler(&request) {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let _ = stream.write_all(head(status, &headers, body.len()).as_bytes());
            let _ = stream.write_all(&body);
        }
        Reply::Truncated { body, sent } => {
            let _ = stream.write_all(head(200, &[], body.len()).as_bytes());
            let _ = stream.write_all(&body[..sent]);
        }
        Reply::Drip { body, chunk, every } => {
            let _ = stream.write_all(head(200, &[], body.len()).as_bytes());
            for piece in body.chunks(chunk) {
                if stop.load(Ordering::Relaxed) || stream.write_all(piece).is_err() {
                    return;
                }
                thread::sleep(every);
            }
        }
        Reply::Reset => {
            let socket = socket2::Socket::from(stream);
            let _ = socket.set_linger(Some(Duration::ZERO));
            drop(socket); // close with linger 0 sends RST
            return;
        }
        Reply::Raw(bytes) => {
            let _ = stream.write_all(&bytes);
        }
        Reply::Endless { head, body } => {
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
            let filler = vec![0x5a_u8; 64 * 1024];
            let mut sent = 0;
            while sent < ENDLESS_BYTES_MAX && !stop.load(Ordering::Relaxed) {
                if stream.write_all(&filler).is_err() {
                    return;
                }
                sent += filler.len();
            }
        }
        Reply::Silent => {
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) && start.elapsed() < SILENT_HOLD_MAX {
                thread::sleep(Duration::from_millis(20));
            }
            return;
        }
    }
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Drain so that closing does not turn into a reset before the client has read.
    let mut sink = [0u8; 1024];
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// A PSD zip from the generator.
pub fn psd_zip(rows: u64, snapshot: u32) -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    psd_gen::write_zip(
        &psd_gen::Spec {
            rows,
            seed: 42,
            snapshot,
        },
        &mut cursor,
        6,
    )
    .unwrap();
    cursor.into_inner()
}

/// The CSV inside [`psd_zip`]`(rows, snapshot)` and its data row count, from the generator.
pub fn psd_csv(rows: u64, snapshot: u32) -> (Vec<u8>, u64) {
    let mut csv = Vec::new();
    let written = psd_gen::write_csv(
        &psd_gen::Spec {
            rows,
            seed: 42,
            snapshot,
        },
        &mut csv,
    )
    .unwrap();
    (csv, written)
}

/// A zip holding `entries` as (name, content), deflated.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(content).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

pub const HEADER: &str = "Commodity_Code,Commodity_Description,Country_Code,Country_Name,Market_Year,Calendar_Year,Month,Attribute_ID,Attribute_Description,Unit_ID,Unit_Description,Value";

/// A temp directory with a landing dir, a state DB and a metrics dir, in which the binary runs.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub landing: PathBuf,
    pub state_db: PathBuf,
    pub metrics: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let landing = dir.path().join("landing");
        let state_db = dir.path().join("state/state.sqlite");
        let metrics = dir.path().join("metrics");
        Sandbox {
            dir,
            landing,
            state_db,
            metrics,
        }
    }

    /// The binary with exactly the environment it needs, nothing inherited.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(test_support::own_bin("extract-psd"));
        cmd.env_clear()
            .env("LANDING_DIR", &self.landing)
            .env("STATE_DB", &self.state_db)
            .env("METRICS_DIR", &self.metrics)
            .env("PSD_RETRIES", "2")
            .args(args);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(args);
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_bounded(child, Duration::from_secs(120))
    }

    /// Runs and parses the one JSON object on stdout.
    pub fn run_json(&self, args: &[&str]) -> (i32, serde_json::Value, String) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let json = test_support::json_line(&out);
        let stderr = String::from_utf8(out.stderr).unwrap();
        (out.status.code().unwrap_or(-1), json, stderr)
    }

    pub fn ledger(&self) -> Vec<LedgerRow> {
        let conn = rusqlite::Connection::open(&self.state_db).unwrap();
        let mut stmt = conn
            .prepare("SELECT run_id, extractor, status, started_at, finished_at, etag, last_modified, sha256, path, rows, bytes, error, detail FROM extraction_runs ORDER BY run_id")
            .unwrap();
        stmt.query_map([], |r| {
            Ok(LedgerRow {
                run_id: r.get(0)?,
                extractor: r.get(1)?,
                status: r.get(2)?,
                started_at: r.get(3)?,
                finished_at: r.get(4)?,
                etag: r.get(5)?,
                last_modified: r.get(6)?,
                sha256: r.get(7)?,
                path: r.get(8)?,
                rows: r.get(9)?,
                bytes: r.get(10)?,
                error: r.get(11)?,
                detail: r.get(12)?,
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    /// Every file under `landing/psd`, relative to the landing dir.
    pub fn landed(&self) -> Vec<PathBuf> {
        files_under(&self.landing.join("psd"))
            .into_iter()
            .map(|p| p.strip_prefix(&self.landing).unwrap().to_path_buf())
            .collect()
    }

    pub fn tmp_files(&self) -> Vec<PathBuf> {
        files_under(&self.landing.join(".tmp"))
    }

    /// Asserts the aftermath of a failed run: exit 1, the message, a failed ledger row naming
    /// the error, no landed file and no temp leftovers.
    pub fn assert_failed_cleanly(&self, out: &(i32, serde_json::Value, String), message: &str) {
        let (code, json, stderr) = out;
        assert_eq!(*code, 1, "exit code; stderr: {stderr}");
        assert_eq!(json["status"], "failed");
        let error = json["error"].as_str().unwrap();
        assert!(
            error.contains(message),
            "error {error:?} should contain {message:?}"
        );
        assert!(
            stderr.contains(message),
            "stderr {stderr:?} should contain {message:?}"
        );
        let last = self.ledger().pop().expect("a ledger row");
        assert_eq!(last.status, "failed");
        assert!(
            last.error.as_deref().unwrap_or("").contains(message),
            "{last:?}"
        );
        assert!(last.finished_at.is_some());
        assert!(
            self.landed().is_empty(),
            "nothing lands: {:?}",
            self.landed()
        );
        assert!(
            self.tmp_files().is_empty(),
            "no temp leftovers: {:?}",
            self.tmp_files()
        );
    }
}

#[derive(Debug, Clone)]
pub struct LedgerRow {
    pub run_id: i64,
    pub extractor: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub sha256: Option<String>,
    pub path: Option<String>,
    pub rows: Option<i64>,
    pub bytes: Option<i64>,
    pub error: Option<String>,
    pub detail: Option<String>,
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Waits for a child (reading its pipes), killing it and failing the test if it outlives
/// `limit`.
pub fn wait_bounded(child: std::process::Child, limit: Duration) -> Output {
    test_support::wait_within(child, limit)
}

/// Polls `cond` every 20 ms for at most `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// SHA-256 hex of the decompressed content of a landing gzip.
pub fn gunzip_sha256(path: &Path) -> String {
    use sha2::Digest;
    let mut d = flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap());
    let mut buf = Vec::new();
    d.read_to_end(&mut buf).unwrap();
    sha2::Sha256::digest(&buf)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
