//! End-to-end tests of the real `extract-prices` binary against a real HTTP server on loopback
//! serving a real-shaped FRED CSV, a real SQLite state DB and a real landing directory. The
//! download's own faults (retries, Retry-After, time and size caps, redirects) are
//! `extract-core`'s and are covered through `extract-psd`'s tests; here, what is the prices'
//! own: the CSV's rules, the `prices` dataset and the `landed|unchanged|failed` statuses.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};
use test_support::CommandExt;

/// What the server answers: status, headers, body, and how many body bytes it really sends.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    sent: Option<usize>,
}

impl Reply {
    fn ok(body: &str) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "text/csv".into())],
            body: body.as_bytes().to_vec(),
            sent: None,
        }
    }
}

type Handler = dyn Fn(usize, &[String]) -> Reply + Send + Sync;

/// A loopback HTTP/1.1 server: one request per connection, answered by the handler (given the
/// request's index and header lines); it records the request lines and headers.
struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Vec<String>>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(handler: impl Fn(usize, &[String]) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (r, s) = (Arc::clone(&requests), Arc::clone(&stop));
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &*handler, &r),
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            addr,
            requests,
            stop,
        }
    }

    fn url(&self) -> String {
        format!(
            "http://{}/graph/fredgraph.csv?id=PCOFFOTMUSDM,PCOFFROBUSDM",
            self.addr
        )
    }

    fn requests(&self) -> Vec<Vec<String>> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(stream: TcpStream, handler: &Handler, requests: &Mutex<Vec<Vec<String>>>) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        lines.push(line.trim_end().to_owned());
    }
    let index = {
        let mut all = requests.lock().unwrap();
        all.push(lines.clone());
        all.len() - 1
    };
    let reply = handler(index, &lines);
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = stream;
    let _ = stream.write_all(head.as_bytes());
    let sent = reply.sent.unwrap_or(reply.body.len());
    let _ = stream.write_all(&reply.body[..sent]);
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 1024];
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

/// A FRED CSV shaped like the real one: both series monthly from 1990-01 to 2025-09, the
/// robustas missing in early 1990 (older files write `.`), the arabicas' last month not yet in.
fn fred_csv() -> String {
    let mut csv = String::from("observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n");
    for i in 0..429u32 {
        let (year, month) = (1990 + i / 12, i % 12 + 1);
        let arabica = format!("{:.2}", 80.0 + f64::from(i % 97) * 1.37);
        let robusta = format!("{:.2}", 45.0 + f64::from(i % 89) * 0.91);
        let robusta = if i < 3 { ".".to_string() } else { robusta };
        let arabica = if i == 428 { String::new() } else { arabica };
        csv.push_str(&format!("{year}-{month:02}-01,{arabica},{robusta}\n"));
    }
    csv
}

struct Sandbox {
    _dir: tempfile::TempDir,
    landing: PathBuf,
    state_db: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let landing = dir.path().join("landing");
        let state_db = dir.path().join("state.sqlite");
        Sandbox {
            _dir: dir,
            landing,
            state_db,
        }
    }

    fn run(&self, args: &[&str]) -> (i32, serde_json::Value, String) {
        let out = Command::new(test_support::own_bin("extract-prices"))
            .env_clear()
            .env("LANDING_DIR", &self.landing)
            .env("STATE_DB", &self.state_db)
            .env("PRICES_RETRIES", "1")
            .arg("--json")
            .args(args)
            .output_within(Duration::from_secs(120))
            .unwrap();
        let json = test_support::json_line(&out);
        (
            out.status.code().unwrap_or(-1),
            json,
            test_support::stderr(&out),
        )
    }

    fn landed(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.landing.join("prices"), &mut out);
        out.into_iter()
            .map(|p| p.strip_prefix(&self.landing).unwrap().to_path_buf())
            .collect()
    }

    /// (extractor, status, error) of every ledger row, oldest first.
    fn ledger(&self) -> Vec<(String, String, Option<String>)> {
        let conn = rusqlite::Connection::open(&self.state_db).unwrap();
        let mut stmt = conn
            .prepare("SELECT extractor, status, error FROM extraction_runs ORDER BY run_id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// A failed run: exit 1, the message in `--json`, a failed `prices` row, nothing landed
    /// and no temp file left.
    fn assert_failed(&self, out: &(i32, serde_json::Value, String), message: &str) {
        let (code, json, stderr) = out;
        assert_eq!(*code, 1, "{stderr}");
        assert_eq!(json["status"], "failed");
        let error = json["error"].as_str().unwrap();
        assert!(error.contains(message), "{error:?} lacks {message:?}");
        let (extractor, status, row_error) = self.ledger().pop().unwrap();
        assert_eq!((extractor.as_str(), status.as_str()), ("prices", "failed"));
        assert!(row_error.unwrap().contains(message));
        assert!(self.landed().is_empty(), "{:?}", self.landed());
        let mut tmp = Vec::new();
        walk(&self.landing.join(".tmp"), &mut tmp);
        assert!(tmp.is_empty(), "temp leftovers: {tmp:?}");
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn a_fred_csv_lands_as_dataset_prices_then_is_unchanged() {
    let csv = fred_csv();
    let body = csv.clone();
    let server = Server::start(move |_, _| {
        let mut reply = Reply::ok(&body);
        reply.headers.push(("ETag".into(), "\"p1\"".into()));
        reply
    });
    let sb = Sandbox::new();
    let (code, json, stderr) = sb.run(&["--url", &server.url()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["status"], "landed");
    assert_eq!(json["rows"], 429);
    assert_eq!(json["bytes"], csv.len());
    let landed = sb.landed();
    assert_eq!(landed.len(), 1, "{landed:?}");
    let sha = format!("{:x}", Sha256::digest(csv.as_bytes()));
    // prices/YYYY/MM/<sha256>.csv.gzip: the name is the content address.
    let parts: Vec<String> = landed[0]
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(parts[0], "prices");
    assert_eq!(parts[1].len(), 4);
    assert_eq!(parts[2].len(), 2);
    assert_eq!(parts[3], format!("{sha}.csv.gzip"));
    assert_eq!(gunzip(&sb.landing.join(&landed[0])), csv.as_bytes());
    assert_eq!(sb.ledger(), [("prices".into(), "success".into(), None)]);

    // The stored ETag goes back; a 304 is `unchanged`.
    let server = Server::start(|_, headers| {
        let sent = headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("if-none-match: \"p1\""));
        Reply {
            status: if sent { 304 } else { 500 },
            headers: vec![],
            body: vec![],
            sent: None,
        }
    });
    let (code, json, stderr) = sb.run(&["--url", &server.url()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["status"], "unchanged");
    assert_eq!(json["sha256"], sha);
    // The same content without validators is `unchanged` too (not extract-psd's `duplicate`).
    let body = csv;
    let server = Server::start(move |_, _| Reply::ok(&body));
    std::fs::remove_file(sb.landing.join(&landed[0])).ok();
    let (code, json, _) = sb.run(&["--url", &server.url()]);
    assert_eq!((code, json["status"].as_str()), (0, Some("landed")));
    let (code, json, _) = sb.run(&["--url", &server.url()]);
    assert_eq!((code, json["status"].as_str()), (0, Some("unchanged")));
    assert_eq!(sb.landed().len(), 1);
    let statuses: Vec<String> = sb.ledger().into_iter().map(|r| r.1).collect();
    assert_eq!(statuses, ["success", "unchanged", "success", "unchanged"]);
}

#[test]
fn hostile_bodies_fail_the_run_and_nothing_lands() {
    let good = fred_csv();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "an HTML error page with status 200",
            "<!DOCTYPE html>\n<html><body>Service temporarily unavailable</body></html>\n".into(),
            "line 1: expected the header \"observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\", found \"<!DOCTYPE html>\"",
        ),
        (
            "a header that changed",
            good.replacen(
                "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM",
                "DATE,PCOFFOTMUSDM,PCOFFROBUSDM",
                1,
            ),
            "found \"DATE,PCOFFOTMUSDM,PCOFFROBUSDM\"",
        ),
        (
            "a series dropped",
            good.replacen(
                "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM",
                "observation_date,PCOFFOTMUSDM",
                1,
            ),
            "line 1: expected the header",
        ),
        (
            "a value that is not a number",
            good.replacen("1990-05-01,85.48,", "1990-05-01,n/a,", 1),
            "line 6: PCOFFOTMUSDM value \"n/a\" is not a number, empty or \".\"",
        ),
        (
            "dates out of order",
            good.replacen("1990-05-01", "1989-05-01", 1),
            "line 6: date 1989-05-01 does not follow 1990-04-01 (dates must increase)",
        ),
        (
            "a date not the first of the month",
            good.replacen("1990-05-01", "1990-05-15", 1),
            "line 6: date \"1990-05-15\" is not YYYY-MM-01",
        ),
        (
            "a body whose last line was cut (the length agrees)",
            good[..good.len() - 3].to_string(),
            "the file ends mid-line",
        ),
        (
            "a header and no rows",
            "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n".into(),
            "no data rows",
        ),
    ];
    for (what, body, message) in cases {
        let server = Server::start(move |_, _| Reply::ok(&body));
        let sb = Sandbox::new();
        let out = sb.run(&["--url", &server.url()]);
        eprintln!("case: {what}");
        sb.assert_failed(&out, message);
        assert_eq!(
            server.requests().len(),
            1,
            "{what}: bad data is not retried"
        );
    }
}

#[test]
fn a_truncated_transfer_is_retried_then_fails() {
    let body = fred_csv();
    let server = Server::start(move |_, _| {
        let mut reply = Reply::ok(&body);
        reply.sent = Some(body.len() / 2);
        reply
    });
    let sb = Sandbox::new();
    let out = sb.run(&["--url", &server.url()]);
    sb.assert_failed(&out, "download interrupted after");
    assert_eq!(server.requests().len(), 2, "one retry (PRICES_RETRIES=1)");
}

#[test]
fn a_503_with_retry_after_then_the_file_lands() {
    let body = fred_csv();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let server = Server::start(move |_, _| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply {
                status: 503,
                headers: vec![("Retry-After".into(), "1".into())],
                body: b"busy".to_vec(),
                sent: None,
            }
        } else {
            Reply::ok(&body)
        }
    });
    let sb = Sandbox::new();
    let (code, json, stderr) = sb.run(&["--url", &server.url()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["status"], "landed");
    assert_eq!(json["attempts"], 2);
    assert!(stderr.contains("retrying in 1s"), "{stderr}");
}

#[test]
fn the_size_cap_and_the_series_list_are_configuration() {
    let body = fred_csv();
    let server = Server::start(move |_, _| Reply::ok(&body));
    let sb = Sandbox::new();
    let out = sb.run(&["--url", &server.url(), "--max-bytes", "1000"]);
    sb.assert_failed(&out, "more than the cap of --max-bytes");

    // One series: the header expected follows --series.
    let one: String = fred_csv()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
        .collect();
    let server = Server::start(move |_, _| Reply::ok(&one));
    let (code, json, stderr) = sb.run(&["--url", &server.url(), "--series", "PCOFFOTMUSDM"]);
    assert_eq!(
        (code, json["status"].as_str()),
        (0, Some("landed")),
        "{stderr}"
    );
    let out = sb.run(&["--url", &server.url()]);
    sb_failed_with_landed(&sb, &out, "expected the header");
}

/// A failure after an earlier success: exit 1, `failed`, and the earlier file still there.
fn sb_failed_with_landed(sb: &Sandbox, out: &(i32, serde_json::Value, String), message: &str) {
    assert_eq!(out.0, 1, "{}", out.2);
    assert_eq!(out.1["status"], "failed");
    assert!(
        out.1["error"].as_str().unwrap().contains(message),
        "{}",
        out.1
    );
    assert_eq!(sb.landed().len(), 1);
}

#[test]
fn usage_errors_exit_2_with_json() {
    let sb = Sandbox::new();
    for args in [
        &["--series", "pcoff"][..],
        &["--series", "A,A"],
        &["--url", "ftp://example.org/x.csv"],
        &["--max-bytes", "0"],
    ] {
        let (code, json, stderr) = sb.run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(json["status"], "failed", "{args:?}");
    }
}

#[test]
fn a_local_file_is_imported() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fredgraph.csv");
    std::fs::write(&path, fred_csv()).unwrap();
    let (code, json, stderr) = sb.run(&["--url", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["status"], "landed");
    assert_eq!(sb.landed().len(), 1);
}
