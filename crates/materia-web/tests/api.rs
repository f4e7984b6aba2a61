//! The real `materia-web` on a serving file built by the real pipeline: values against DuckDB,
//! bad input (400, 404, as JSON and as pages), conditional requests, HEAD, gzip, static paths,
//! methods and target sizes, and `/healthz` for a fresh, a stale, a missing and an unreadable
//! serving file.

mod support;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{COFFEE, Server, run_bounded, site, tests_dir, unrevised_commodity};

fn server() -> Server {
    Server::start(&site().serving(), &site().state_db(), &[])
}

#[test]
fn api_and_page_values_equal_a_duckdb_query_of_the_serving_file() {
    let s = server();
    let out = run_bounded(
        Command::new(support::python())
            .arg(tests_dir().join("values.py"))
            .arg(format!("http://{}", s.addr))
            .arg(site().serving())
            .arg(unrevised_commodity()),
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    println!("{stdout}");
    assert!(stdout.contains("checks passed"), "{stdout}");
}

#[test]
fn malformed_parameters_are_400_and_unknown_codes_404_as_json_on_the_api() {
    let s = server();
    let cases: &[(&str, u16, &str)] = &[
        ("/api/v1/global-balance", 400, "commodity is required"),
        (
            "/api/v1/global-balance?commodity=",
            400,
            "letters or digits",
        ),
        (
            "/api/v1/global-balance?commodity=07%2711%3B%20DROP%20TABLE%20x",
            400,
            "letters or digits",
        ),
        (
            "/api/v1/global-balance?commodity=9999999",
            404,
            "unknown commodity",
        ),
        (
            "/api/v1/global-balance?commodity=0711100&format=xml",
            400,
            "json or csv",
        ),
        (
            "/api/v1/global-balance?commodity=0711100&commodity=0711100",
            400,
            "more than once",
        ),
        (
            "/api/v1/commodity-balance?commodity=0711100",
            400,
            "country=CC",
        ),
        (
            "/api/v1/commodity-balance?commodity=0711100&country=ZZZ",
            404,
            "no country",
        ),
        (
            "/api/v1/commodity-balance?commodity=0711100&country=N-A",
            400,
            "letters or digits",
        ),
        (
            "/api/v1/commodity-balance?commodity=0711100&market_year=1800",
            400,
            "year from 1900",
        ),
        (
            "/api/v1/commodity-balance?commodity=0711100&market_year=twenty",
            400,
            "year from 1900",
        ),
        ("/api/v1/revisions?commodity=0711100&limit=0", 400, "limit"),
        (
            "/api/v1/revisions?commodity=0711100&limit=10001",
            400,
            "limit",
        ),
        (
            "/api/v1/revisions?commodity=0711100&country=QQ",
            404,
            "no country",
        ),
        ("/api/v1/revisions", 400, "commodity is required"),
        ("/api/v1/nothing-here", 404, "no page"),
    ];
    for (target, status, says) in cases {
        let r = s.get(target);
        assert_eq!(r.status, *status, "{target}: {}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{target}"
        );
        let error = r.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(says), "{target}: {error}");
    }
    // NA is a country code like any other, never "no value".
    let r = s.get("/api/v1/commodity-balance?commodity=0711100&country=NA");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["country_code"], "NA");
}

#[test]
fn html_routes_answer_the_same_codes_with_a_page() {
    let s = server();
    for (target, status) in [
        ("/commodity/9999999", 404),
        ("/commodity/07%3Cb%3E", 400),
        ("/commodity/0711100/country/ZZZ", 404),
        ("/commodity/0711100/country/N%20A", 400),
        ("/revisions?limit=abc", 400),
        ("/revisions?commodity=9999999", 404),
        ("/revisions?country=QQQ", 404),
        ("/no/such/page", 404),
        ("/commodity", 400),
    ] {
        let r = s.get(target);
        assert_eq!(r.status, status, "{target}");
        assert_eq!(
            r.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{target}"
        );
        let page = r.text();
        assert!(page.contains("<h1>"), "{target}: {page}");
        assert!(!page.contains("<b>"), "request text is escaped: {page}");
    }
    // The pickers' forms work without JavaScript: a redirect to the page.
    let r = s.get("/commodity?code=0711100");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/commodity/0711100"));
    let r = s.get("/commodity/0711100/country?cc=NA");
    assert_eq!(r.header("location"), Some("/commodity/0711100/country/NA"));
    for page in [
        "/",
        "/commodity/0711100",
        "/commodity/0711100/country/NA",
        "/revisions",
        "/revisions?commodity=0711100&country=NA",
        "/revisions?country=NA",
        "/status",
    ] {
        let r = s.get(page);
        assert_eq!(r.status, 200, "{page}");
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    }
}

#[test]
fn conditional_requests_head_and_gzip_follow_the_generation() {
    let s = server();
    let target = format!("/api/v1/global-balance?commodity={COFFEE}");
    let r = s.get(&target);
    assert_eq!(r.status, 200);
    let etag = r.header("etag").unwrap().to_owned();
    let modified = r.header("last-modified").unwrap().to_owned();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert!(r.header("x-materia-exported-at").unwrap().ends_with('Z'));

    let head = |extra: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n")
    };
    let r = s.request(&head(&format!("If-None-Match: {etag}\r\n")));
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = s.request(&head(&format!("If-Modified-Since: {modified}\r\n")));
    assert_eq!(r.status, 304);
    let r = s.request(&head("If-None-Match: \"something-else\"\r\n"));
    assert_eq!(r.status, 200);
    let r = s.request(&head(
        "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n",
    ));
    assert_eq!(r.status, 200);

    // gzip when asked for, the same bytes once unpacked.
    let plain = s.get(&target).body;
    let r = s.request(&head("Accept-Encoding: gzip\r\n"));
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("vary"), Some("accept-encoding"));
    assert!(r.body.len() < plain.len() / 2);
    let mut unpacked = Vec::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_end(&mut unpacked)
        .unwrap();
    assert_eq!(unpacked, plain);

    // HEAD: the headers of GET, no body.
    let r = s.request(&format!(
        "HEAD {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length").unwrap(), plain.len().to_string());
    assert!(r.body.is_empty());
    let r = s.request("HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);

    // Health and status are never cached.
    assert_eq!(s.get("/healthz").header("cache-control"), Some("no-store"));
}

#[test]
fn static_files_are_the_embedded_ones_and_no_path_escapes() {
    let s = server();
    let page = s.get("/").text();
    let echarts = support::echarts_name(&page);
    assert!(echarts.starts_with("echarts-6.1.0-"), "{echarts}");
    let r = s.get(&format!("/static/{echarts}"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let lock = std::fs::read_to_string(test_support::repo_root().join("third-party/echarts.lock"))
        .unwrap();
    let want = lock
        .lines()
        .find_map(|l| l.strip_prefix("file=dist/echarts.common.min.js "))
        .unwrap();
    use sha2::Digest;
    let got: String = sha2::Sha256::digest(&r.body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(got, want, "the served ECharts is the locked file");
    for target in [
        "/static/../Cargo.toml",
        "/static/..%2F..%2FCargo.toml",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static//etc/passwd",
        "/static/app.js",
        "/static/",
        "/../../etc/passwd",
        "/static/%00",
    ] {
        let r = s.get(target);
        assert!(r.status == 404 || r.status == 400, "{target}: {}", r.status);
        assert!(!r.text().contains("root:"), "{target}");
    }
}

#[test]
fn other_methods_are_405_and_long_targets_414() {
    let s = server();
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let r = s.request(&format!(
            "{method} /api/v1/commodities HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ));
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    let long = format!(
        "/api/v1/global-balance?commodity=0711100&pad={}",
        "x".repeat(3000)
    );
    assert_eq!(s.get(&long).status, 414);
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn health_is_ok_for_a_fresh_file_and_stale_past_max_serving_age() {
    let s = server();
    let r = s.get("/healthz");
    assert_eq!(r.status, 200, "{}", r.text());
    let h = r.json();
    assert_eq!(h["status"], "ok");
    assert!(h["exported_at"].as_str().unwrap().ends_with('Z'));
    assert!(h["age_secs"].as_u64().is_some());
    drop(s);

    let s = Server::start(
        &site().serving(),
        &site().state_db(),
        &["--max-serving-age", "1s"],
    );
    std::thread::sleep(Duration::from_millis(1100));
    let r = s.get("/healthz");
    assert_eq!(r.status, 503);
    let h = r.json();
    assert_eq!(h["status"], "stale");
    assert!(
        h["reason"].as_str().unwrap().contains("--max-serving-age"),
        "{h}"
    );
    // Stale data is still data: the pages and the API keep answering.
    assert_eq!(s.get("/api/v1/commodities").status, 200);

    let r = run_bounded(
        Command::new(support::bin()).args(["--max-serving-age", "soon"]),
        Duration::from_secs(30),
    );
    assert_eq!(r.status.code(), Some(2), "usage error");
}

/// Polls `target` until it answers `status` (bounded).
fn wait_for(s: &Server, target: &str, status: u16) -> support::Reply {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = s.get(target);
        if r.status == status {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{target} stayed {}: {}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_missing_or_unreadable_serving_file_is_503_and_the_last_good_one_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let serving = dir.path().join("analytics.duckdb");
    let s = Server::start(&serving, &site().state_db(), &[]);
    let r = s.get("/healthz");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "unavailable");
    assert!(
        r.json()["reason"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    let r = s.get("/api/v1/commodities");
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("no serving data")
    );
    let r = s.get("/");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("<h1>"));
    assert!(!serving.exists(), "a missing serving file is never created");

    // Published: picked up without a restart.
    let tmp = dir.path().join("next.duckdb");
    std::fs::copy(site().serving(), &tmp).unwrap();
    std::fs::rename(&tmp, &serving).unwrap();
    let r = wait_for(&s, "/healthz", 200);
    assert_eq!(r.json()["status"], "ok");
    let before = s.get("/api/v1/commodities");
    assert_eq!(before.status, 200);

    // An unreadable file replaces it: health says so, answers come from the last good one.
    let junk = dir.path().join("junk.duckdb");
    std::fs::write(&junk, b"this is not a DuckDB file").unwrap();
    std::fs::rename(&junk, &serving).unwrap();
    let r = wait_for(&s, "/healthz", 503);
    assert_eq!(r.json()["status"], "unavailable");
    assert!(
        r.json()["reason"]
            .as_str()
            .unwrap()
            .contains("still serving"),
        "{}",
        r.text()
    );
    let after = s.get("/api/v1/commodities");
    assert_eq!(after.status, 200);
    assert_eq!(after.body, before.body);

    // Nothing was ever written beside the serving file.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["analytics.duckdb"]);
    assert!(
        s.log_text()
            .contains("still serving the generation read before")
    );
}

#[test]
fn status_shows_the_steps_from_a_state_db_it_may_not_write() {
    // As a user who can read but not write the state DB's directory, as the web unit runs
    // (ProtectSystem=strict, /data/materia read-only): the binary and its library are copied
    // where that user can run them.
    let root_run = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    let data = dir.path().join("data");
    let bin = dir.path().join("bin");
    let lib = dir.path().join("lib");
    for d in [&data, &bin, &lib] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::copy(support::bin(), bin.join("materia-web")).unwrap();
    std::fs::copy(
        test_support::bin_dir().join("lib/libduckdb.so"),
        lib.join("libduckdb.so"),
    )
    .unwrap();
    let state = data.join("state.sqlite");
    std::fs::copy(site().state_db(), &state).unwrap();
    std::fs::copy(site().serving(), data.join("analytics.duckdb")).unwrap();
    let before = std::fs::read(&state).unwrap();
    for (path, mode) in [
        (dir.path().to_path_buf(), 0o755),
        (bin.clone(), 0o755),
        (lib.clone(), 0o755),
        (bin.join("materia-web"), 0o755),
        (lib.join("libduckdb.so"), 0o644),
        (state.clone(), 0o444),
        (data.join("analytics.duckdb"), 0o444),
        (data.clone(), 0o555),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let log = dir.path().join("stderr.log");
    std::fs::write(&log, b"").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut cmd = if root_run {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.arg(bin.join("materia-web"));
        c
    } else {
        Command::new(bin.join("materia-web"))
    };
    cmd.env_clear()
        .args(["--listen", "127.0.0.1:0", "--serving"])
        .arg(data.join("analytics.duckdb"))
        .arg("--state-db")
        .arg(&state)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap());
    let mut child = cmd.spawn().unwrap();
    let addr = support::wait_for_address(&log, Duration::from_secs(60));
    let r = support::get(addr, "/status");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.status, 200);
    let page = r.text();
    assert!(!page.contains("state-db-error"), "{page}");
    for step in ["extract-psd", "transform", "export-serving"] {
        assert!(
            page.contains(&format!("<tr data-step=\"{step}\"><th scope=\"row\">{step}</th><td class=\"ok\">success</td>")),
            "{step}: {page}"
        );
    }
    assert!(page.contains("id=\"exported-at\""));
    assert_eq!(
        std::fs::read(&state).unwrap(),
        before,
        "the state DB is never written"
    );
    let names: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "nothing created beside them: {names:?}");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_missing_state_db_is_shown_on_status_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.sqlite");
    let s = Server::start(&site().serving(), &state, &[]);
    let r = s.get("/status");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("state-db-error"));
    assert!(r.text().contains("no state DB"));
    assert!(!state.exists());
}

#[test]
fn status_lists_quarantined_landing_files_without_paths_or_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.sqlite");
    std::fs::copy(site().state_db(), &state).unwrap();
    let path = format!("psd/2026/01/{}.csv.gzip", "a".repeat(64));
    run_ledger::Ledger::open(&state)
        .unwrap()
        .quarantine(
            "psd",
            &path,
            &"a".repeat(64),
            "Value <n/a> & worse",
            "2026-12-02T04:00:00.000Z",
        )
        .unwrap();
    let s = Server::start(&site().serving(), &state, &[]);
    let page = s.get("/status").text();
    assert!(
        page.contains(&format!(
            "<tr><td>psd</td><td><code>{}</code></td><td>2026-12-02T04:00:00.000Z</td></tr>",
            "a".repeat(64)
        )),
        "{page}"
    );
    // Public: neither the landing path nor the operator's text.
    assert!(!page.contains(&path), "{page}");
    assert!(!page.contains("worse"), "{page}");
    assert!(page.contains("id=\"quarantined\""));
}

/// Moves every time of the copied site `dir` (state DB rows, the serving file's export) `days`
/// into the past, then records one extract-psd run that ended `unchanged` (a 304)
/// `confirmed_hours_ago` hours ago, if given. Python's sqlite3 and the venv's duckdb write them.
fn age_site(dir: &std::path::Path, days: u32, confirmed_hours_ago: Option<u32>) {
    let script = r#"
import sqlite3, sys, duckdb, datetime
state, serving, days, hours = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
db = sqlite3.connect(state)
shift = f"-{days} days"
def back(col):
    return f"strftime('%Y-%m-%dT%H:%M:%fZ', {col}, '{shift}')"
for table in ("extraction_runs", "step_runs"):
    db.execute(f"UPDATE {table} SET started_at = {back('started_at')}, finished_at = {back('finished_at')}")
if hours != "none":
    at = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=int(hours)))
    iso = at.strftime('%Y-%m-%dT%H:%M:%S.000Z')
    db.execute("INSERT INTO extraction_runs (extractor, status, started_at, finished_at, detail) "
               "VALUES ('psd', 'unchanged', ?, ?, 'not modified (HTTP 304)')", (iso, iso))
db.commit()
db.close()
con = duckdb.connect(serving)
con.execute(f"UPDATE serving._materia_export SET exported_at = exported_at - INTERVAL {days} DAY")
con.execute("CHECKPOINT")
con.close()
"#;
    let hours = confirmed_hours_ago.map_or_else(|| "none".to_owned(), |h| h.to_string());
    let out = run_bounded(
        Command::new(test_support::venv().join("bin/python"))
            .arg("-c")
            .arg(script)
            .arg(dir.join("state.sqlite"))
            .arg(dir.join("analytics.duckdb"))
            .arg(days.to_string())
            .arg(hours),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A copy of the shared site's serving file and state DB in a new directory.
fn site_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::copy(site().serving(), dir.path().join("analytics.duckdb"))
        .expect("copy the serving file");
    // The SQLite backup API, so a WAL the site left is part of the copy.
    run_ledger::Ledger::open_read_only(&site().state_db())
        .expect("open the site's state DB")
        .snapshot_to(&dir.path().join("state.sqlite"))
        .expect("snapshot the state DB");
    dir
}

/// Issue 23: USDA revises coffee about twice a year, so the serving file may stay unchanged for
/// months while the pipeline confirms upstream every hour (304s). Sixty simulated days without
/// a change is healthy; sixty days without a confirmation is stale.
#[test]
fn regression_health_is_ok_after_60_days_without_a_change_while_upstream_is_confirmed() {
    let dir = site_copy();
    age_site(dir.path(), 60, Some(1));
    let s = Server::start(
        &dir.path().join("analytics.duckdb"),
        &dir.path().join("state.sqlite"),
        &[],
    );
    let r = s.get("/healthz");
    assert_eq!(r.status, 200, "{}", r.text());
    let h = r.json();
    assert_eq!(h["status"], "ok");
    let exported_age = h["age_secs"].as_u64().unwrap();
    assert!(exported_age >= 60 * 86_400, "{h}");
    let confirmed_age = h["confirmed_age_secs"].as_u64().unwrap();
    assert!((3_600..3_700).contains(&confirmed_age), "{h}");
    assert!(h["confirmed_at"].as_str().unwrap().ends_with('Z'), "{h}");
    drop(s);

    let dir = site_copy();
    age_site(dir.path(), 60, None);
    let s = Server::start(
        &dir.path().join("analytics.duckdb"),
        &dir.path().join("state.sqlite"),
        &[],
    );
    let r = s.get("/healthz");
    assert_eq!(r.status, 503, "{}", r.text());
    let h = r.json();
    assert_eq!(h["status"], "stale");
    let reason = h["reason"].as_str().unwrap();
    assert!(
        reason.contains("the pipeline last confirmed upstream at")
            && reason.contains("longer than --max-serving-age 45d00h"),
        "{reason}"
    );
}

#[test]
fn a_restart_onto_a_damaged_serving_file_serves_the_newest_readable_previous_generation() {
    let dir = tempfile::tempdir().unwrap();
    let serving = dir.path().join("analytics.duckdb");
    std::fs::write(&serving, b"damaged: not a DuckDB file").unwrap();
    let previous = dir.path().join("analytics.duckdb.previous");
    std::fs::create_dir(&previous).unwrap();
    // The newest one is damaged too; the next newest is good.
    let good = previous.join("20261201T000000Z.duckdb");
    std::fs::copy(site().serving(), &good).unwrap();
    let newest = previous.join("20261202T000000Z.duckdb");
    std::fs::write(&newest, b"also damaged").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&good)
        .unwrap()
        .set_modified(old)
        .unwrap();

    let s = Server::start(&serving, &site().state_db(), &[]);
    let reference = server();
    let r = s.get("/api/v1/commodities");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, reference.get("/api/v1/commodities").body);
    assert_eq!(s.get("/").status, 200);
    // Health is honest: the serving file itself is unreadable.
    let h = s.get("/healthz");
    assert_eq!(h.status, 503);
    assert!(
        h.json()["reason"]
            .as_str()
            .unwrap()
            .contains("still serving")
    );
    let page = s.get("/status").text();
    assert!(
        page.contains("id=\"fallback\"") && page.contains("20261201T000000Z.duckdb"),
        "{page}"
    );
    assert!(
        s.log_text()
            .contains("serving the previous generation 20261201T000000Z.duckdb"),
        "{}",
        s.log_text()
    );

    // A good file published at the path takes over, and the fallback goes.
    let tmp = dir.path().join("next.duckdb");
    std::fs::copy(site().serving(), &tmp).unwrap();
    std::fs::rename(&tmp, &serving).unwrap();
    wait_for(&s, "/healthz", 200);
    assert!(!s.get("/status").text().contains("id=\"fallback\""));
}

#[test]
fn public_status_shows_no_path_and_no_error_text() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.sqlite");
    std::fs::copy(site().state_db(), &state).unwrap();
    let secret_path = "/srv/secret/place/landing";
    run_ledger::Ledger::open(&state)
        .unwrap()
        .quarantine(
            "psd",
            "psd/2026/01/x.csv.gzip",
            &"b".repeat(64),
            &format!("failed reading {secret_path}"),
            "2026-12-02T04:00:00.000Z",
        )
        .unwrap();
    let s = Server::start(&site().serving(), &state, &[]);
    let page = s.get("/status").text();
    for leak in [
        secret_path,
        site().serving().to_str().unwrap(),
        state.to_str().unwrap(),
        site().lakehouse().to_str().unwrap(),
    ] {
        assert!(!page.contains(leak), "{leak} on the public page: {page}");
    }
    assert!(page.contains("id=\"exported-at\""));
    assert!(page.contains("Table <code>"), "the serving file's tables");
    assert!(page.contains("data-step=\"transform\""));
}
