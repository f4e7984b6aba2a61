//! End-to-end tests of the real `extract-psd` binary against a real HTTP server on loopback, a
//! real SQLite state DB and a real landing directory. Every failure case must end in its exit
//! code, a clear message, a `failed` ledger row and nothing under `psd/`.

mod support;

use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use test_support::CommandExt;

use support::{HEADER, Reply, Sandbox, Server, psd_csv, psd_zip, wait_bounded, wait_until, zip_of};

const ROWS: u64 = 3_000;

fn csv_zip(csv: &str) -> Vec<u8> {
    zip_of(&[("psd_alldata.csv", csv.as_bytes())])
}

#[test]
fn first_run_lands_a_verified_file_and_records_it() {
    let zip = psd_zip(ROWS, 0);
    let server = Server::start(move |_| {
        Reply::with_headers(
            zip.clone(),
            &[
                ("ETag", "\"v1\""),
                ("Last-Modified", "Tue, 03 Nov 2026 10:00:00 GMT"),
            ],
        )
    });
    let sb = Sandbox::new();
    let (code, json, stderr) = sb.run_json(&["--url", &server.url("/psd.zip")]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["status"], "new");
    let sha = json["sha256"].as_str().unwrap();
    let landed = sb.landed();
    assert_eq!(landed.len(), 1);
    let name = landed[0].file_name().unwrap().to_str().unwrap();
    assert_eq!(name, format!("{sha}.csv.gzip"));
    assert!(landed[0].starts_with("psd"), "{landed:?}");
    // The name is the content address of the decompressed CSV.
    assert_eq!(support::gunzip_sha256(&sb.landing.join(&landed[0])), sha);
    assert_eq!(
        json["path"].as_str().unwrap(),
        sb.landing.join(&landed[0]).display().to_string()
    );
    assert_eq!(json["etag"], "\"v1\"");
    assert_eq!(json["last_modified"], "Tue, 03 Nov 2026 10:00:00 GMT");
    assert!(json["error"].is_null());
    // Exactly what the generator wrote: every row, every byte (BOM included).
    let (csv, rows) = psd_csv(ROWS, 0);
    assert_eq!(json["rows"], rows);
    assert_eq!(json["bytes"], csv.len());
    assert_eq!(
        json["landed_bytes"],
        std::fs::metadata(sb.landing.join(&landed[0]))
            .unwrap()
            .len()
    );
    assert_eq!(json["attempts"], 1);

    let ledger = sb.ledger();
    assert_eq!(ledger.len(), 1);
    let row = &ledger[0];
    assert_eq!(
        (row.extractor.as_str(), row.status.as_str()),
        ("psd", "success")
    );
    assert_eq!(row.sha256.as_deref(), Some(sha));
    assert_eq!(row.rows, Some(rows as i64));
    assert_eq!(row.bytes, Some(csv.len() as i64));
    assert_eq!(row.path.as_deref(), Some(landed[0].to_str().unwrap()));
    assert!(row.started_at.ends_with('Z') && row.finished_at.as_deref().unwrap().ends_with('Z'));
    assert!(sb.tmp_files().is_empty());

    let metrics = std::fs::read_to_string(sb.metrics.join("materia_extract_psd.prom")).unwrap();
    for name in [
        "last_run_timestamp_seconds",
        "last_success_timestamp_seconds",
        "duration_seconds",
        "exit_code",
    ] {
        assert!(
            metrics.contains(&format!("\nmateria_extract_psd_{name} ")),
            "{name} in {metrics}"
        );
    }
    assert!(metrics.contains("materia_extract_psd_exit_code 0\n"));
    assert!(metrics.contains(&format!("materia_extract_psd_rows {rows}\n")));
}

#[test]
fn unchanged_upstream_answers_304_to_the_stored_etag() {
    let zip = psd_zip(ROWS, 0);
    // An ETag full of path characters: it must only ever be stored and sent back.
    let etag = r#""../../../../tmp/evil/..%2f\x00/*?""#;
    let server = Server::start(move |r| {
        if r.header("If-None-Match") == Some(etag) {
            Reply::status(304, &[("ETag", etag)], "")
        } else {
            Reply::with_headers(zip.clone(), &[("ETag", etag)])
        }
    });
    let sb = Sandbox::new();
    let url = server.url("/psd.zip");
    let (code, first, _) = sb.run_json(&["--url", &url]);
    assert_eq!((code, first["status"].as_str()), (0, Some("new")));
    let (code, second, stderr) = sb.run_json(&["--url", &url]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(second["status"], "unchanged");
    assert_eq!(second["etag"], etag);
    assert_eq!(second["sha256"], first["sha256"]);
    assert_eq!(server.requests()[1].header("If-None-Match"), Some(etag));
    let ledger = sb.ledger();
    assert_eq!(ledger[1].status, "unchanged");
    assert_eq!(ledger[1].etag.as_deref(), Some(etag));
    assert_eq!(sb.landed().len(), 1);
    // Nothing was created outside the sandbox's landing layout.
    assert!(!std::path::Path::new("/tmp/evil").exists());
    let top: Vec<_> = std::fs::read_dir(&sb.landing)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for name in &top {
        assert!(
            [".tmp", "psd"].contains(&name.to_str().unwrap()),
            "unexpected {name:?} in landing"
        );
    }
}

#[test]
fn unchanged_without_etag_uses_last_modified_and_without_validators_is_a_duplicate() {
    let zip = psd_zip(ROWS, 0);
    let lm = "Tue, 03 Nov 2026 10:00:00 GMT";
    let z = zip.clone();
    let server = Server::start(move |r| {
        if r.header("If-Modified-Since") == Some(lm) {
            Reply::status(304, &[], "")
        } else {
            Reply::with_headers(z.clone(), &[("Last-Modified", lm)])
        }
    });
    let sb = Sandbox::new();
    let url = server.url("/psd.zip");
    assert_eq!(sb.run_json(&["--url", &url]).1["status"], "new");
    let (code, json, _) = sb.run_json(&["--url", &url]);
    assert_eq!((code, json["status"].as_str()), (0, Some("unchanged")));
    assert_eq!(server.requests()[1].header("If-None-Match"), None);

    // An upstream with no validators at all: the content is downloaded again and recognised.
    let plain = Server::start(move |_| Reply::ok(zip.clone()));
    let sb = Sandbox::new();
    let url = plain.url("/psd.zip");
    let (_, first, _) = sb.run_json(&["--url", &url]);
    let (code, json, _) = sb.run_json(&["--url", &url]);
    assert_eq!((code, json["status"].as_str()), (0, Some("duplicate")));
    assert_eq!(json["path"], first["path"]);
    assert_eq!(json["sha256"], first["sha256"]);
    assert_eq!(sb.ledger()[1].status, "unchanged");
    assert!(
        sb.ledger()[1]
            .detail
            .as_deref()
            .unwrap()
            .contains("duplicate")
    );
    assert_eq!(sb.landed().len(), 1);
}

#[test]
fn a_new_snapshot_lands_beside_the_old_one() {
    let (a, b) = (psd_zip(ROWS, 0), psd_zip(ROWS, 1));
    let n = Arc::new(AtomicUsize::new(0));
    let server = Server::start(move |_| {
        Reply::ok(if n.fetch_add(1, Ordering::SeqCst) == 0 {
            a.clone()
        } else {
            b.clone()
        })
    });
    let sb = Sandbox::new();
    let url = server.url("/psd.zip");
    let (_, first, _) = sb.run_json(&["--url", &url]);
    let (code, second, _) = sb.run_json(&["--url", &url]);
    assert_eq!((code, second["status"].as_str()), (0, Some("new")));
    assert_ne!(first["sha256"], second["sha256"]);
    assert_eq!(sb.landed().len(), 2);
}

#[test]
fn html_error_page_with_status_200_is_refused() {
    let server = Server::start(|_| {
        Reply::status(
            200,
            &[("Content-Type", "text/html")],
            "<!DOCTYPE html><html><body>Service temporarily unavailable</body></html>",
        )
    });
    let sb = Sandbox::new();
    let out = sb.run_json(&["--url", &server.url("/psd.zip")]);
    sb.assert_failed_cleanly(
        &out,
        "response is not a zip file: it starts with \"<!DOCTYPE html>",
    );
    assert_eq!(server.requests().len(), 1, "bad data is not retried");
}

#[test]
fn not_found_fails_without_retrying() {
    let server = Server::start(|_| Reply::status(404, &[], "no such file"));
    let sb = Sandbox::new();
    let out = sb.run_json(&["--url", &server.url("/missing.zip")]);
    sb.assert_failed_cleanly(&out, "upstream answered HTTP 404 Not Found");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn persistent_500_is_retried_a_bounded_number_of_times() {
    let server = Server::start(|_| Reply::status(500, &[("Retry-After", "0")], "boom"));
    let sb = Sandbox::new();
    let out = sb.run_json(&["--url", &server.url("/psd.zip"), "--retries", "3"]);
    sb.assert_failed_cleanly(&out, "giving up after 4 attempts");
    assert!(out.1["error"].as_str().unwrap().contains("HTTP 500"));
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn a_503_with_retry_after_is_waited_out_then_succeeds() {
    let zip = psd_zip(ROWS, 0);
    let server = Server::start(move |r| {
        if r.index == 0 {
            Reply::status(503, &[("Retry-After", "1")], "busy")
        } else {
            Reply::ok(zip.clone())
        }
    });
    let sb = Sandbox::new();
    let (code, json, stderr) = sb.run_json(&["--url", &server.url("/psd.zip")]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["status"], "new");
    assert_eq!(json["attempts"], 2);
    assert!(stderr.contains("retrying in 1s"), "{stderr}");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[1].at.duration_since(reqs[0].at) >= Duration::from_secs(1),
        "Retry-After honoured"
    );
}

#[test]
fn truncated_body_fails_after_retries() {
    let zip = psd_zip(ROWS, 0);
    let server = Server::start(move |_| Reply::Truncated {
        sent: zip.len() / 2,
        body: zip.clone(),
    });
    let sb = Sandbox::new();
    let out = sb.run_json(&["--url", &server.url("/psd.zip"), "--retries", "1"]);
    sb.assert_failed_cleanly(&out, "download interrupted after");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn slow_drip_past_the_time_bound_fails() {
    let zip = psd_zip(ROWS, 0);
    let server = Server::start(move |_| Reply::Drip {
        body: zip.clone(),
        chunk: 64,
        every: Duration::from_millis(100),
    });
    let sb = Sandbox::new();
    let out = sb.run_json(&["--url", &server.url("/psd.zip"), "--timeout-secs", "2"]);
    sb.assert_failed_cleanly(&out, "download did not finish within 2s (--timeout-secs)");
}

#[test]
fn redirect_loop_fails() {
    let server = Server::start(|r| {
        let to = if r.path == "/a" { "/b" } else { "/a" };
        Reply::status(302, &[("Location", to)], "")
    });
    let sb = Sandbox::new();
    let out = sb.run_json(&["--url", &server.url("/a")]);
    sb.assert_failed_cleanly(&out, "too many redirects");
    assert!(
        server.requests().len() <= 12,
        "bounded: {}",
        server.requests().len()
    );
}

#[test]
fn a_redirect_is_followed() {
    let zip = psd_zip(ROWS, 0);
    let server = Server::start(move |r| {
        if r.path == "/old" {
            Reply::status(301, &[("Location", "/new")], "")
        } else {
            Reply::ok(zip.clone())
        }
    });
    let sb = Sandbox::new();
    let (code, json, _) = sb.run_json(&["--url", &server.url("/old")]);
    assert_eq!((code, json["status"].as_str()), (0, Some("new")));
}

#[test]
fn connection_reset_fails_after_retries() {
    let server = Server::start(|_| Reply::Reset);
    let sb = Sandbox::new();
    let out = sb.run_json(&["--url", &server.url("/psd.zip"), "--retries", "1"]);
    sb.assert_failed_cleanly(&out, "giving up after 2 attempts");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn unreachable_upstream_fails_with_connect_error() {
    // Bind then drop: nothing listens on that port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sb = Sandbox::new();
    let out = sb.run_json(&[
        "--url",
        &format!("http://127.0.0.1:{port}/psd.zip"),
        "--retries",
        "0",
    ]);
    sb.assert_failed_cleanly(&out, "cannot connect");
}

/// HTTPS runs through rustls with the ring provider (reqwest has none of its own here). A
/// server whose certificate no trusted authority signed is refused as such: the TLS stack is
/// there and verifies, it neither panics for want of a provider nor lets the file through.
#[test]
fn https_with_an_untrusted_certificate_is_refused_as_a_certificate_error() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output_within(Duration::from_secs(120))
        .expect("openssl (Debian package openssl) is needed");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Killed(
        std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-key")
            .arg(&key)
            .arg("-cert")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "openssl s_server did not start"
    );
    let sb = Sandbox::new();
    let out = sb.run_json(&[
        "--url",
        &format!("https://127.0.0.1:{port}/psd.zip"),
        "--retries",
        "0",
    ]);
    sb.assert_failed_cleanly(&out, "certificate");
}

#[test]
fn zip_bomb_past_max_csv_bytes_is_stopped() {
    let mut csv = format!("{HEADER}\r\n");
    let row = "0711100,\"Coffee, Green\",BR,Brazil,2025,2026,01,028,Production,002,(1000 60 KG BAGS),1\r\n";
    while csv.len() < 20_000_000 {
        csv.push_str(row);
    }
    let zip = csv_zip(&csv);
    assert!(zip.len() < 200_000, "a bomb: {} bytes", zip.len());
    let server = Server::start(move |_| Reply::ok(zip.clone()));
    let sb = Sandbox::new();
    let out = sb.run_json(&[
        "--url",
        &server.url("/psd.zip"),
        "--max-csv-bytes",
        "1000000",
    ]);
    sb.assert_failed_cleanly(
        &out,
        "decompressed CSV exceeds the cap of 1000000 bytes (--max-csv-bytes)",
    );
}

#[test]
fn foreign_csv_header_is_refused() {
    let zip = csv_zip("id,name\r\n1,coffee\r\n");
    let server = Server::start(move |_| Reply::ok(zip.clone()));
    let sb = Sandbox::new();
    let out = sb.run_json(&["--url", &server.url("/psd.zip")]);
    sb.assert_failed_cleanly(&out, "CSV header is not the PSD header");
    assert!(
        out.1["error"]
            .as_str()
            .unwrap()
            .contains("found \\\"id,name\\\"")
            || out.2.contains("found \"id,name\"")
    );
}

#[test]
fn header_without_rows_is_refused() {
    let zip = csv_zip(&format!("\u{feff}{HEADER}\r\n"));
    let server = Server::start(move |_| Reply::ok(zip.clone()));
    let sb = Sandbox::new();
    let out = sb.run_json(&["--url", &server.url("/psd.zip")]);
    sb.assert_failed_cleanly(&out, "CSV has a header but no data rows");
}

#[test]
fn row_with_wrong_field_count_is_refused_naming_the_line() {
    let good = "0711100,\"Coffee, Green\",NA,Netherlands Antilles,2025,2026,01,028,Production,002,(1000 60 KG BAGS),1";
    let csv = format!("{HEADER}\r\n{good}\r\n{good}\r\n{good},surplus\r\n{good}\r\n");
    let zip = csv_zip(&csv);
    let server = Server::start(move |_| Reply::ok(zip.clone()));
    let sb = Sandbox::new();
    let out = sb.run_json(&["--url", &server.url("/psd.zip")]);
    sb.assert_failed_cleanly(&out, "CSV row 3 (line 4) has 13 fields, expected 12");
}

#[test]
fn zip_with_two_entries_is_refused() {
    let csv = format!(
        "{HEADER}\r\n0711100,Coffee,BR,Brazil,2025,2026,01,028,Production,002,(1000 60 KG BAGS),1\r\n"
    );
    let zip = zip_of(&[
        ("psd_alldata.csv", csv.as_bytes()),
        ("extra.csv", csv.as_bytes()),
    ]);
    let server = Server::start(move |_| Reply::ok(zip.clone()));
    let sb = Sandbox::new();
    let out = sb.run_json(&["--url", &server.url("/psd.zip")]);
    sb.assert_failed_cleanly(&out, "zip has 2 entries, expected exactly one CSV");
}

#[test]
fn corrupted_zip_data_is_refused() {
    let mut zip = psd_zip(ROWS, 0);
    let middle = zip.len() / 2;
    for b in &mut zip[middle..middle + 64] {
        *b ^= 0x5a;
    }
    let server = Server::start(move |_| Reply::ok(zip.clone()));
    let sb = Sandbox::new();
    let (code, json, stderr) = sb.run_json(&["--url", &server.url("/psd.zip")]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(json["status"], "failed");
    assert!(sb.landed().is_empty() && sb.tmp_files().is_empty());
    assert_eq!(sb.ledger()[0].status, "failed");
}

#[test]
fn local_file_import_by_path_and_file_url() {
    let sb = Sandbox::new();
    let zip_path = sb.dir.path().join("by hand.zip");
    std::fs::write(&zip_path, psd_zip(ROWS, 0)).unwrap();
    let (code, json, stderr) = sb.run_json(&["--url", zip_path.to_str().unwrap()]);
    assert_eq!(
        (code, json["status"].as_str()),
        (0, Some("new")),
        "{stderr}"
    );
    let url = format!("file://{}", zip_path.display()).replace(' ', "%20");
    let (code, again, _) = sb.run_json(&["--url", &url]);
    assert_eq!((code, again["status"].as_str()), (0, Some("duplicate")));
    let (code, missing, _) = sb.run_json(&["--url", "/nonexistent/psd.zip"]);
    assert_eq!(code, 1);
    assert!(
        missing["error"]
            .as_str()
            .unwrap()
            .contains("cannot open /nonexistent/psd.zip")
    );
}

#[test]
fn usage_errors_exit_2_with_json() {
    let sb = Sandbox::new();
    let (code, json, stderr) = sb.run_json(&["--url", "ftp://example.org/psd.zip"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("unsupported URL scheme \"ftp\"")
    );
    let (code, json, _) = sb.run_json(&["--max-csv-bytes", "0"]);
    assert_eq!((code, json["status"].as_str()), (2, Some("failed")));
    let out = sb.run(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no JSON unless asked");
    let help = sb.run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--url",
        "--max-csv-bytes",
        "--timeout-secs",
        "--landing-dir",
        "--state-db",
        "--metrics-dir",
        "--json",
        "[env: PSD_URL=",
    ] {
        assert!(help.contains(flag), "{flag} in help");
    }
    let version = sb.run(&["--version"]);
    assert!(
        String::from_utf8(version.stdout)
            .unwrap()
            .starts_with("extract-psd ")
    );
}

#[test]
fn secrets_in_the_url_never_reach_logs_or_json() {
    let secret = "s3ntinel-Secret";
    let sb = Sandbox::new();
    let server = Server::start(|_| Reply::status(404, &[], "no"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for url in [
        server
            .url("/psd.zip")
            .replace("http://", &format!("http://user:{secret}@"))
            + &format!("?token={secret}"),
        format!("http://user:{secret}@127.0.0.1:{port}/psd.zip?token={secret}"),
    ] {
        let (code, json, stderr) = sb.run_json(&["--url", &url, "--retries", "0"]);
        assert_eq!(code, 1, "{stderr}");
        assert!(!stderr.contains(secret), "{stderr}");
        assert!(!json.to_string().contains(secret), "{json}");
        assert!(
            stderr.contains("?<redacted>") || stderr.contains("cannot connect"),
            "{stderr}"
        );
    }
    let conn = rusqlite::Connection::open(&sb.state_db).unwrap();
    let leaked: i64 = conn
        .query_row("SELECT count(*) FROM extraction_runs WHERE instr(coalesce(error, '') || coalesce(detail, ''), ?1) > 0", [secret], |r| r.get(0))
        .unwrap();
    assert_eq!(leaked, 0);
}

#[test]
fn empty_environment_variables_count_as_unset() {
    let sb = Sandbox::new();
    let zip_path = sb.dir.path().join("psd.zip");
    std::fs::write(&zip_path, psd_zip(ROWS, 0)).unwrap();
    let work = sb.dir.path().join("cwd");
    std::fs::create_dir_all(&work).unwrap();
    let mut cmd = sb.command(&["--json", "--url", zip_path.to_str().unwrap()]);
    cmd.current_dir(&work)
        .env("LANDING_DIR", "")
        .env("STATE_DB", "")
        .env("METRICS_DIR", "")
        .env("PSD_TIMEOUT_SECS", "");
    let out = wait_bounded(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The development defaults apply: data/landing under the working directory.
    assert_eq!(
        support::files_under(&work.join("data/landing/psd")).len(),
        1
    );
    assert!(work.join("data/landing/.state.sqlite").is_file());
    assert!(!sb.metrics.exists(), "no metrics when METRICS_DIR is empty");
}

#[test]
fn flags_beat_environment() {
    let zip = psd_zip(ROWS, 0);
    let server = Server::start(move |_| Reply::ok(zip.clone()));
    let sb = Sandbox::new();
    let other = sb.dir.path().join("elsewhere");
    let mut cmd = sb.command(&["--json", "--landing-dir", other.to_str().unwrap()]);
    cmd.env("PSD_URL", server.url("/psd.zip"));
    let out = wait_bounded(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sb.landed().is_empty());
    assert_eq!(support::files_under(&other.join("psd")).len(), 1);
}

#[test]
fn landing_directory_that_cannot_be_written_fails_cleanly() {
    let sb = Sandbox::new();
    let zip = psd_zip(ROWS, 0);
    let server = Server::start(move |_| Reply::ok(zip.clone()));
    // A regular file where the landing directory should be: no process, root included, can
    // create entries under it.
    let blocked = sb.dir.path().join("blocked");
    std::fs::write(&blocked, "not a directory").unwrap();
    let landing = blocked.join("landing");
    let (code, json, stderr) = sb.run_json(&[
        "--url",
        &server.url("/psd.zip"),
        "--landing-dir",
        landing.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("cannot create landing directory"),
        "{json}"
    );
    let row = sb.ledger().pop().unwrap();
    assert_eq!(row.status, "failed");
    assert!(row.error.unwrap().contains("Not a directory"));
    assert!(
        server.requests().is_empty(),
        "nothing downloaded into nowhere"
    );
}

/// Permission bits do not bind root, so under root the run is made as `nobody` (setpriv): the
/// case runs everywhere, never skipped.
#[test]
fn read_only_landing_directory_fails_cleanly() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.landing.join(".tmp")).unwrap();
    std::fs::create_dir_all(sb.state_db.parent().unwrap()).unwrap();
    std::fs::create_dir_all(&sb.metrics).unwrap();
    let as_root = test_support::is_root();
    // Under root, nobody runs a copy of the binary in the sandbox: the target directory may be
    // where nobody cannot go (under root's 0700 home by default).
    let copy = sb.dir.path().join("extract-psd");
    if as_root {
        std::fs::copy(test_support::own_bin("extract-psd"), &copy).unwrap();
        // The sandbox belongs to nobody, except the temp directory it must not write.
        let out = std::process::Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(sb.dir.path())
            .output_within(Duration::from_secs(30))
            .unwrap();
        assert!(out.status.success(), "{}", test_support::stderr(&out));
        let out = std::process::Command::new("chown")
            .args(["0:0"])
            .arg(sb.landing.join(".tmp"))
            .output_within(Duration::from_secs(30))
            .unwrap();
        assert!(out.status.success(), "{}", test_support::stderr(&out));
    }
    std::fs::set_permissions(
        sb.landing.join(".tmp"),
        std::fs::Permissions::from_mode(0o555),
    )
    .unwrap();
    let zip = psd_zip(ROWS, 0);
    let server = Server::start(move |_| Reply::ok(zip.clone()));
    let mut cmd = sb.command(&["--json", "--url", &server.url("/psd.zip")]);
    if as_root {
        let mut wrapped = std::process::Command::new("setpriv");
        wrapped
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&copy)
            .args(cmd.get_args())
            .env_clear()
            .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
        cmd = wrapped;
    }
    let out = cmd.output_within(Duration::from_secs(120)).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", test_support::stderr(&out)));
    assert_eq!(out.status.code(), Some(1), "{}", test_support::stderr(&out));
    let error = json["error"].as_str().unwrap();
    assert!(error.contains("Permission denied"), "{error}");
    assert!(sb.landed().is_empty());
    assert_eq!(sb.ledger().pop().unwrap().status, "failed");
}

#[test]
fn kill_9_mid_download_then_a_clean_run() {
    let zip = psd_zip(ROWS, 0);
    let z = zip.clone();
    let slow = Server::start(move |_| Reply::Drip {
        body: z.clone(),
        chunk: 512,
        every: Duration::from_millis(50),
    });
    let sb = Sandbox::new();
    let mut child = sb
        .command(&["--url", &slow.url("/psd.zip")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || sb.tmp_files().len() == 2),
        "download started"
    );
    std::thread::sleep(Duration::from_millis(300)); // a few chunks in flight
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!sb.tmp_files().is_empty(), "a killed run leaves temp files");
    assert!(sb.landed().is_empty(), "but nothing under psd/");
    assert_eq!(sb.ledger()[0].status, "running");

    let fast = Server::start(move |_| Reply::ok(zip.clone()));
    let (code, json, stderr) = sb.run_json(&["--url", &fast.url("/psd.zip")]);
    assert_eq!(
        (code, json["status"].as_str()),
        (0, Some("new")),
        "{stderr}"
    );
    assert!(
        stderr.contains("removed 2 leftover temp file(s)"),
        "{stderr}"
    );
    assert!(sb.tmp_files().is_empty());
    let ledger = sb.ledger();
    assert_eq!(ledger[0].status, "failed");
    assert!(
        ledger[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("interrupted")
    );
    assert_eq!(ledger[1].status, "success");
    assert_eq!(sb.landed().len(), 1);
}

#[test]
fn a_second_concurrent_run_exits_75_naming_the_holder() {
    let zip = psd_zip(ROWS, 0);
    let slow = Server::start(move |_| Reply::Drip {
        body: zip.clone(),
        chunk: 512,
        every: Duration::from_millis(50),
    });
    let sb = Sandbox::new();
    let url = slow.url("/psd.zip");
    let mut first = sb
        .command(&["--url", &url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || !slow.requests().is_empty()),
        "first run is downloading"
    );
    let (code, json, stderr) = sb.run_json(&["--url", &url]);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(code, 75, "{stderr}");
    assert_eq!(json["status"], "failed");
    let message = format!(
        "extract-psd is already running: lock {}",
        sb.state_db
            .parent()
            .unwrap()
            .join(".locks/extract-psd.lock")
            .display()
    );
    assert!(stderr.contains(&message), "{stderr}");
    assert!(
        stderr.contains(&format!("held by pid {}", first.id())),
        "{stderr}"
    );
    assert_eq!(sb.ledger().len(), 1, "the refused run records nothing");
    assert_eq!(
        slow.requests().len(),
        1,
        "the refused run downloads nothing"
    );
}

#[test]
fn state_db_from_a_newer_release_is_refused() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.state_db.parent().unwrap()).unwrap();
    let conn = rusqlite::Connection::open(&sb.state_db).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    let (code, json, _) = sb.run_json(&["--url", "/nonexistent.zip"]);
    assert_eq!(code, 1);
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("schema version 99")
    );
}

#[test]
fn stdout_closed_early_is_not_a_failure() {
    let sb = Sandbox::new();
    let zip_path = sb.dir.path().join("psd.zip");
    std::fs::File::create(&zip_path)
        .unwrap()
        .write_all(&psd_zip(ROWS, 0))
        .unwrap();
    let mut child = sb
        .command(&["--json", "--url", zip_path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader went away (`| head -0`)
    let status = wait_bounded(child, Duration::from_secs(120)).status;
    assert_eq!(status.code(), Some(0));
    assert_eq!(sb.landed().len(), 1);
}

#[test]
fn a_429_is_retried_after_its_retry_after() {
    let zip = psd_zip(ROWS, 0);
    let server = Server::start(move |r| {
        if r.index == 0 {
            Reply::status(429, &[("Retry-After", "2")], "slow down")
        } else {
            Reply::ok(zip.clone())
        }
    });
    let sb = Sandbox::new();
    let (code, json, stderr) = sb.run_json(&["--url", &server.url("/psd.zip")]);
    assert_eq!(
        (code, json["status"].as_str()),
        (0, Some("new")),
        "{stderr}"
    );
    assert_eq!(json["attempts"], 2);
    assert!(stderr.contains("HTTP 429 Too Many Requests"), "{stderr}");
    assert!(stderr.contains("retrying in 2s"), "{stderr}");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[1].at.duration_since(reqs[0].at) >= Duration::from_secs(2),
        "Retry-After honoured, not the 1 s backoff"
    );
}

#[test]
fn an_announced_length_past_the_cap_is_refused_after_one_request() {
    let server = Server::start(|_| {
        Reply::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\nConnection: close\r\n\r\nPK\x03\x04"
                .to_vec(),
        )
    });
    let sb = Sandbox::new();
    let out = sb.run_json(&["--url", &server.url("/psd.zip")]);
    sb.assert_failed_cleanly(
        &out,
        "upstream announces 1000000000000 bytes, more than a zip of a CSV within --max-csv-bytes can be",
    );
    assert_eq!(server.requests().len(), 1, "not retried");
}

#[test]
fn a_body_streamed_past_the_cap_is_stopped_by_the_cap_not_the_time_out() {
    // A valid zip, then junk without end and without a Content-Length: only the byte count
    // can stop it (its CSV stays small, so the decompressed cap never fires).
    let csv = format!(
        "{HEADER}\r\n0711100,Coffee,BR,Brazil,2025,2026,01,028,Production,002,(1000 60 KG BAGS),1\r\n"
    );
    let body = csv_zip(&csv);
    let server = Server::start(move |_| Reply::Endless {
        head: "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".into(),
        body: body.clone(),
    });
    let sb = Sandbox::new();
    let out = sb.run_json(&[
        "--url",
        &server.url("/psd.zip"),
        "--max-csv-bytes",
        "1000",
        "--timeout-secs",
        "600",
    ]);
    sb.assert_failed_cleanly(
        &out,
        &format!(
            "download exceeds {} bytes, more than a zip of a CSV within --max-csv-bytes can be",
            1000 + (1 << 20)
        ),
    );
    assert_eq!(server.requests().len(), 1, "bad data is not retried");
}

#[test]
fn a_server_that_never_answers_is_bounded_by_the_time_out() {
    let server = Server::start(|_| Reply::Silent);
    let sb = Sandbox::new();
    let started = std::time::Instant::now();
    let out = sb.run_json(&["--url", &server.url("/psd.zip"), "--timeout-secs", "3"]);
    sb.assert_failed_cleanly(&out, "download did not finish within 3s (--timeout-secs)");
    // A hang check, not a benchmark: the bound is 3 s, the harness's own is 120 s.
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(server.requests().len(), 1, "no retry past the deadline");
}

#[test]
fn a_lost_landing_file_makes_the_next_run_download_unconditionally() {
    let zip = psd_zip(ROWS, 0);
    let server = Server::start(move |r| {
        if r.header("If-None-Match").is_some() || r.header("If-Modified-Since").is_some() {
            Reply::status(304, &[("ETag", "\"v1\"")], "")
        } else {
            Reply::with_headers(
                zip.clone(),
                &[
                    ("ETag", "\"v1\""),
                    ("Last-Modified", "Tue, 03 Nov 2026 10:00:00 GMT"),
                ],
            )
        }
    });
    let sb = Sandbox::new();
    let url = server.url("/psd.zip");
    let (code, first, _) = sb.run_json(&["--url", &url]);
    assert_eq!((code, first["status"].as_str()), (0, Some("new")));
    // With the file in landing, the next request is conditional.
    let (code, json, _) = sb.run_json(&["--url", &url]);
    assert_eq!((code, json["status"].as_str()), (0, Some("unchanged")));
    assert_eq!(server.requests()[1].header("If-None-Match"), Some("\"v1\""));

    let landed = sb.landing.join(&sb.landed()[0]);
    std::fs::remove_file(&landed).unwrap();
    let (code, json, stderr) = sb.run_json(&["--url", &url]);
    assert_eq!(
        (code, json["status"].as_str()),
        (0, Some("new")),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "the file of the last good run is not in landing; downloading unconditionally"
        ),
        "{stderr}"
    );
    let third = &server.requests()[2];
    assert_eq!(third.header("If-None-Match"), None);
    assert_eq!(third.header("If-Modified-Since"), None);
    assert_eq!(json["sha256"], first["sha256"]);
    assert_eq!(sb.landed().len(), 1, "back in landing");
    assert_eq!(
        support::gunzip_sha256(std::path::Path::new(json["path"].as_str().unwrap())),
        first["sha256"].as_str().unwrap()
    );
}

#[test]
fn a_value_staging_cannot_cast_is_refused_naming_row_line_and_column() {
    let good =
        "0711100,\"Coffee, Green\",BR,Brazil,2025,2026,01,028,Production,002,(1000 60 KG BAGS),1";
    let bad =
        "0711100,\"Coffee, Green\",BR,Brazil,2025,2026,01,028,Production,002,(1000 60 KG BAGS),n/a";
    let csv = format!("{HEADER}\r\n{good}\r\n{good}\r\n{bad}\r\n{good}\r\n");
    let zip = csv_zip(&csv);
    let server = Server::start(move |_| Reply::ok(zip.clone()));
    let sb = Sandbox::new();
    let out = sb.run_json(&["--url", &server.url("/psd.zip")]);
    sb.assert_failed_cleanly(
        &out,
        "CSV row 3 (line 4), column Value: \"n/a\" is not a number or empty",
    );
    assert_eq!(server.requests().len(), 1, "bad data is not retried");

    let year = good.replace(",2025,", ",20x4,");
    let zip = csv_zip(&format!("{HEADER}\r\n{year}\r\n"));
    let path = sb.dir.path().join("year.zip");
    std::fs::write(&path, zip).unwrap();
    let out = sb.run_json(&["--url", path.to_str().unwrap()]);
    sb.assert_failed_cleanly(
        &out,
        "CSV row 1 (line 2), column Market_Year: \"20x4\" is not an integer",
    );
}

/// The landing directory on a tmpfs of its own, too small for the file, in a private mount
/// namespace (so nothing outlives the test): extract-psd runs there and the script lists what
/// it left behind.
const FULL_DISK_SCRIPT: &str = r#"
set -u
mount -t tmpfs -o size=192k tmpfs "$LANDING_DIR" || exit 90
"$@" > "$OUT_DIR/stdout" 2> "$OUT_DIR/stderr"
echo $? > "$OUT_DIR/code"
find "$LANDING_DIR" -type f > "$OUT_DIR/files"
"#;

// Regression: a full disk stopped the writer, which cut the CSV short before the validator,
// and the validator's "row N has K fields" was reported as the cause.
#[test]
fn a_full_disk_is_reported_as_a_disk_error_and_nothing_lands() {
    let probe = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .output_within(Duration::from_secs(30));
    if !probe.is_ok_and(|o| o.status.success()) {
        test_support::skip("needs a private mount namespace (unshare --mount: root)");
        return;
    }
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.landing).unwrap();
    let out_dir = sb.dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let zip_path = sb.dir.path().join("psd.zip");
    std::fs::write(&zip_path, psd_zip(400_000, 0)).unwrap();
    assert!(
        std::fs::metadata(&zip_path).unwrap().len() > 2 * 192 * 1024,
        "the zip alone is twice the disk"
    );
    let cmd = sb.command(&["--json", "--url", zip_path.to_str().unwrap()]);
    let mut run = std::process::Command::new("unshare");
    run.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        FULL_DISK_SCRIPT,
        "sh",
    ])
    .arg(cmd.get_program())
    .args(cmd.get_args())
    .env_clear()
    .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    .env("OUT_DIR", &out_dir);
    let out = run.output_within(Duration::from_secs(120)).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", test_support::stderr(&out));
    let read = |name: &str| std::fs::read_to_string(out_dir.join(name)).unwrap();
    let (code, stdout, stderr) = (read("code"), read("stdout"), read("stderr"));
    assert_eq!(code.trim(), "1", "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let error = json["error"].as_str().unwrap();
    assert!(error.starts_with("disk full: cannot write "), "{error}");
    assert!(
        error.contains(".tmp/extract-psd"),
        "names the temp file: {error}"
    );
    assert!(error.contains("No space left on device"), "{error}");
    assert!(!error.contains("CSV"), "not a CSV error: {error}");
    assert!(stderr.contains("disk full: cannot write "), "{stderr}");
    assert_eq!(read("files"), "", "nothing landed, no temp file left");
    let row = sb.ledger().pop().unwrap();
    assert_eq!(row.status, "failed");
    assert!(row.error.unwrap().starts_with("disk full"));
}

// The same through the file size limit (EFBIG; SIGXFSZ ignored, as a shell with `trap '' XFSZ`
// passes it on), over HTTP.
#[test]
fn a_file_size_limit_is_reported_as_such_and_nothing_lands() {
    let zip = psd_zip(400_000, 0);
    let server = Server::start(move |_| Reply::ok(zip.clone()));
    let sb = Sandbox::new();
    let cmd = sb.command(&["--json", "--url", &server.url("/psd.zip")]);
    let mut run = std::process::Command::new("/bin/sh");
    // `ulimit -f` counts 512-byte blocks: 256 KiB, enough for the state DB, not for the file.
    run.args(["-c", "trap '' XFSZ; ulimit -f 512; exec \"$@\"", "sh"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear()
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let out = run.output_within(Duration::from_secs(120)).unwrap();
    let stderr = test_support::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = json["error"].as_str().unwrap();
    assert!(
        error.starts_with("file size limit reached (ulimit -f): cannot write "),
        "{error}"
    );
    assert!(error.contains("File too large"), "{error}");
    assert!(sb.landed().is_empty() && sb.tmp_files().is_empty());
    assert_eq!(sb.ledger().pop().unwrap().status, "failed");
    assert_eq!(server.requests().len(), 1, "a local fault is not retried");
}

/// What a 304 to a request without validators must end in: an upstream protocol error.
const UNASKED_304: &str = "upstream answered HTTP 304 Not Modified to an unconditional request";

#[test]
fn a_304_to_the_first_unconditional_request_is_a_protocol_error() {
    let server = Server::start(|_| Reply::status(304, &[("ETag", "\"v1\"")], ""));
    let sb = Sandbox::new();
    let out = sb.run_json(&["--url", &server.url("/psd.zip")]);
    // Exit 1 with the --json line, a `failed` ledger row naming it, nothing landed.
    sb.assert_failed_cleanly(&out, UNASKED_304);
    let (_, json, _) = &out;
    assert!(json["path"].is_null() && json["sha256"].is_null(), "{json}");
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "a protocol error is not retried");
    assert_eq!(requests[0].header("If-None-Match"), None);
    assert_eq!(requests[0].header("If-Modified-Since"), None);
    let ledger = sb.ledger();
    assert_eq!(ledger.len(), 1);
    assert!(ledger[0].sha256.is_none() && ledger[0].path.is_none());
    let metrics = std::fs::read_to_string(sb.metrics.join("materia_extract_psd.prom")).unwrap();
    assert!(
        metrics.contains("materia_extract_psd_exit_code 1\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("last_success_timestamp_seconds 1"),
        "{metrics}"
    );
}

#[test]
fn a_304_after_the_landing_file_was_lost_is_a_protocol_error_not_unchanged() {
    let zip = psd_zip(ROWS, 0);
    let n = Arc::new(AtomicUsize::new(0));
    // The first request gets the file; every later one a 304, asked for or not.
    let server = Server::start(move |_| {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::with_headers(zip.clone(), &[("ETag", "\"v1\"")])
        } else {
            Reply::status(304, &[("ETag", "\"v1\"")], "")
        }
    });
    let sb = Sandbox::new();
    let url = server.url("/psd.zip");
    let (code, first, _) = sb.run_json(&["--url", &url]);
    assert_eq!((code, first["status"].as_str()), (0, Some("new")));
    std::fs::remove_file(sb.landing.join(&sb.landed()[0])).unwrap();

    let out = sb.run_json(&["--url", &url]);
    sb.assert_failed_cleanly(&out, UNASKED_304);
    // The request went unconditional because the file is gone, and the 304 is not `unchanged`.
    let second = &server.requests()[1];
    assert_eq!(second.header("If-None-Match"), None);
    assert_eq!(second.header("If-Modified-Since"), None);
    assert!(
        out.1["path"].is_null(),
        "no path to a missing file: {}",
        out.1
    );
    let ledger = sb.ledger();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[0].status, "success");
    assert!(
        ledger[1].path.is_none() && ledger[1].sha256.is_none(),
        "{:?}",
        ledger[1]
    );
    let metrics = std::fs::read_to_string(sb.metrics.join("materia_extract_psd.prom")).unwrap();
    assert!(
        metrics.contains("materia_extract_psd_exit_code 1\n"),
        "{metrics}"
    );
}
