//! End to end: the real `backup-sync` binary and the real rclone against moto's S3 server on
//! loopback (the `r2:` remote) and a local directory remote.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use test_support::{CommandExt, stderr, tool};

/// Bound on every child process of these tests (rclone, moto, backup-sync).
const LIMIT: Duration = Duration::from_secs(180);

/// The binary under test, where the test runner says it is.
fn bin() -> PathBuf {
    test_support::own_bin("backup-sync")
}
const SECRET: &str = "sentinel-secret-7f3a9c";
const KEY_ID: &str = "sentinel-keyid-41b2";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// moto's S3 server on a loopback port, stopped on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        let server = tool("moto_server");
        let port = free_port();
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let out = moto.rclone(&["mkdir", "r2:bucket"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        moto
    }

    /// rclone straight at the bucket, as someone tampering with it would.
    fn rclone_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("rclone");
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("RCLONE_CONFIG", "/dev/null")
            .env("RCLONE_CONFIG_R2_TYPE", "s3")
            .env("RCLONE_CONFIG_R2_PROVIDER", "Cloudflare")
            .env("RCLONE_CONFIG_R2_ACCESS_KEY_ID", KEY_ID)
            .env("RCLONE_CONFIG_R2_SECRET_ACCESS_KEY", SECRET)
            .env("RCLONE_CONFIG_R2_ENDPOINT", &self.endpoint)
            .env("RCLONE_CONFIG_R2_REGION", "auto")
            .args(args);
        cmd
    }

    fn rclone(&self, args: &[&str]) -> Output {
        self.rclone_cmd(args).output_within(LIMIT).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Site {
    dir: tempfile::TempDir,
    files: Vec<(String, Vec<u8>)>,
}

impl Site {
    /// A landing store with `n` content-addressed files (valid PSD CSVs of a few KiB each:
    /// restore validates what it links as extract-psd validates a download).
    fn new(n: usize) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for i in 0..n {
            let csv = psd_csv(i, 40 + i);
            let sha = hex(&Sha256::digest(csv.as_bytes()));
            let rel = format!("psd/2026/{:02}/{sha}.csv.gzip", 1 + i % 12);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(csv.as_bytes()).unwrap();
            let bytes = gz.finish().unwrap();
            let path = dir.path().join("landing").join(&rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
            files.push((rel, bytes));
        }
        Site { dir, files }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn command(&self, moto: Option<&Moto>, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANDING_DIR", self.path("landing"))
            // rclone 1.60's S3 backend refuses to start with this set: it must not leak through.
            .env("AWS_CA_BUNDLE", "/nonexistent/ca-bundle.pem")
            .args(args)
            .arg("--json");
        if let Some(m) = moto {
            cmd.env("BACKUP_REMOTE", "r2:bucket/materia")
                .env("R2_ACCESS_KEY_ID", KEY_ID)
                .env("R2_SECRET_ACCESS_KEY", SECRET)
                .env("R2_ENDPOINT", &m.endpoint);
        }
        cmd
    }

    fn run(&self, moto: Option<&Moto>, args: &[&str]) -> (Output, serde_json::Value) {
        let out = self.command(moto, args).output_within(LIMIT).unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let json = test_support::json_line(&out);
        assert_no_secret(&stdout);
        assert_no_secret(&stderr(&out));
        (out, json)
    }

    fn ledger(&self) -> Vec<(String, Option<String>)> {
        let db = rusqlite::Connection::open(self.path("landing/.state.sqlite")).unwrap();
        let mut stmt = db
            .prepare("SELECT status, coalesce(error, '') || coalesce(detail, '') FROM step_runs WHERE step = 'backup-sync' ORDER BY run_id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

const PSD_HEADER: &str = "Commodity_Code,Commodity_Description,Country_Code,Country_Name,Market_Year,Calendar_Year,Month,Attribute_ID,Attribute_Description,Unit_ID,Unit_Description,Value";

/// A valid PSD CSV of `rows` data rows, distinct for each `seed`.
fn psd_csv(seed: usize, rows: usize) -> String {
    let mut csv = format!("{PSD_HEADER}\n");
    for r in 0..rows {
        csv.push_str(&format!(
            "0711100,Coffee,BR,Brazil,{},2026,{:02},028,Production,002,(1000 60 KG BAGS),{}.5\n",
            1990 + r,
            1 + seed % 12,
            seed * 1000 + r
        ));
    }
    csv
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(SECRET), "the secret leaked: {text}");
    assert!(!text.contains(KEY_ID), "the key id leaked: {text}");
}

fn ok(out: &Output, json: &serde_json::Value) {
    assert_eq!(out.status.code(), Some(0), "{}\n{json}", stderr(out));
    assert_eq!(json["status"], "ok", "{json}");
}

#[test]
fn push_twice_verify_and_restore_against_an_s3_server() {
    let moto = Moto::start();
    let site = Site::new(6);
    let (out, json) = site.run(Some(&moto), &["push"]);
    ok(&out, &json);
    assert_eq!(json["command"], "push");
    assert_eq!(json["uploaded"], 6);
    assert_eq!(json["skipped"], 0);
    let total: usize = site.files.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(json["bytes"], total);
    let first_state = json["state_snapshot"].as_str().unwrap().to_owned();

    let (out, json) = site.run(Some(&moto), &["push"]);
    ok(&out, &json);
    assert_eq!(json["uploaded"], 0, "a second push uploads nothing");
    assert_eq!(json["skipped"], 6);
    let second_state = json["state_snapshot"].as_str().unwrap().to_owned();
    assert_ne!(first_state, second_state);

    // What is remote is byte for byte the landing files, and the state snapshots are SQLite DBs
    // holding the runs.
    for (rel, bytes) in &site.files {
        let out = moto.rclone(&["cat", &format!("r2:bucket/materia/{rel}")]);
        assert_eq!(&out.stdout, bytes, "{rel}");
    }
    let snap = site.path("snap.sqlite");
    let out = moto.rclone(&[
        "copyto",
        &format!("r2:bucket/materia/{second_state}"),
        snap.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let db = rusqlite::Connection::open(&snap).unwrap();
    let runs: i64 = db
        .query_row(
            "SELECT count(*) FROM step_runs WHERE step = 'backup-sync'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        runs, 2,
        "the snapshot holds the first run and the running second one"
    );

    let (out, json) = site.run(Some(&moto), &["verify"]);
    ok(&out, &json);
    assert_eq!(json["skipped"], 6);

    let to = site.path("restored");
    let (out, json) = site.run(Some(&moto), &["restore", "--to", to.to_str().unwrap()]);
    ok(&out, &json);
    assert_eq!(json["skipped"], 6);
    for (rel, bytes) in &site.files {
        assert_eq!(&std::fs::read(to.join(rel)).unwrap(), bytes, "{rel}");
    }
    let statuses: Vec<String> = site.ledger().into_iter().map(|(s, _)| s).collect();
    assert_eq!(statuses, ["success"; 4]);
}

#[test]
fn a_tampered_remote_object_is_refused_by_push_and_listed_by_verify() {
    let moto = Moto::start();
    let site = Site::new(3);
    let (out, json) = site.run(Some(&moto), &["push"]);
    ok(&out, &json);
    // Same size, different bytes: only a content comparison notices.
    let (rel, bytes) = &site.files[1];
    let mut forged = bytes.clone();
    let last = forged.len() - 10;
    forged[last] ^= 0xff;
    let mut put = moto
        .rclone_cmd(&["rcat", &format!("r2:bucket/materia/{rel}")])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    put.stdin.take().unwrap().write_all(&forged).unwrap();
    assert!(test_support::wait_within(put, LIMIT).status.success());

    let (out, json) = site.run(Some(&moto), &["push"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json["status"], "failed");
    let mismatches = json["mismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 1, "{json}");
    assert!(
        mismatches[0].as_str().unwrap().starts_with(rel.as_str()),
        "{json}"
    );
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("never overwritten"),
        "{json}"
    );
    // Left alone: the remote still holds the forged object.
    assert_eq!(
        moto.rclone(&["cat", &format!("r2:bucket/materia/{rel}")])
            .stdout,
        forged
    );

    let (out, json) = site.run(Some(&moto), &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let mismatches = json["mismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 1, "{json}");
    assert!(
        mismatches[0].as_str().unwrap().contains(rel.as_str()),
        "{json}"
    );
    let ledger = site.ledger();
    assert_eq!(ledger.last().unwrap().0, "failed");
    assert!(
        ledger
            .last()
            .unwrap()
            .1
            .as_deref()
            .unwrap()
            .contains(rel.as_str())
    );
}

#[test]
fn a_corrupted_object_fails_the_restore_naming_it() {
    let site = Site::new(4);
    let remote = site.path("backup");
    let r = remote.to_str().unwrap();
    let (out, json) = site.run(None, &["push", "--remote", r]);
    ok(&out, &json);
    let (bad, _) = &site.files[2];
    let path = remote.join(bad);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"header\nnot what the name says\n").unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    std::fs::write(remote.join("psd/2026/01/stray.txt"), "x").unwrap();

    let to = site.path("restored");
    let (out, json) = site.run(
        None,
        &["restore", "--to", to.to_str().unwrap(), "--remote", r],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let mismatches: Vec<String> = json["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(mismatches.len(), 2, "{mismatches:?}");
    assert!(
        mismatches
            .iter()
            .any(|m| m.starts_with(bad.as_str()) && m.contains("hashes to"))
    );
    assert!(
        mismatches
            .iter()
            .any(|m| m.contains("stray.txt") && m.contains("not a landing file"))
    );
    assert_eq!(json["skipped"], 3);

    let (out, json) = site.run(None, &["verify", "--remote", r]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        json["error"].as_str().unwrap().contains(bad.as_str()),
        "{json}"
    );
}

#[test]
fn an_unreachable_endpoint_fails_within_its_bound_without_leaking_credentials() {
    let site = Site::new(1);
    let port = free_port();
    let started = Instant::now();
    let (out, json) = site.run(
        None,
        &[
            "push",
            "--remote",
            "r2:bucket/materia",
            "--timeout-secs",
            "20",
        ],
    );
    // No credentials: a configuration error, before anything runs.
    assert_eq!(out.status.code(), Some(2), "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("R2_ACCESS_KEY_ID"),
        "{json}"
    );

    let out = site
        .command(
            None,
            &[
                "push",
                "--remote",
                "r2:bucket/materia",
                "--timeout-secs",
                "20",
            ],
        )
        .env("R2_ACCESS_KEY_ID", KEY_ID)
        .env("R2_SECRET_ACCESS_KEY", SECRET)
        .env("R2_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .output_within(LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(60), "not bounded");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert_no_secret(&text);
    assert!(text.contains("127.0.0.1"), "{text}");
    assert_eq!(site.ledger().last().unwrap().0, "failed");
}

/// Every process's command line, for the sentinel check.
fn all_cmdlines() -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            out.push(String::from_utf8_lossy(&raw).replace('\0', " "));
        }
    }
    out
}

#[test]
fn credentials_never_reach_a_command_line_and_a_killed_push_is_redone_cleanly() {
    let moto = Moto::start();
    let site = Site::new(150);
    let mut child = site
        .command(Some(&moto), &["push"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen_rclone = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        for line in all_cmdlines() {
            assert_no_secret(&line);
            seen_rclone |= line.starts_with("rclone ") && line.contains("r2:bucket");
        }
        assert!(Instant::now() < deadline, "push did not finish");
    }
    let out = test_support::wait_within(child, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(seen_rclone, "no rclone process was observed");
    assert_no_secret(&String::from_utf8_lossy(&out.stdout));
    assert_no_secret(&stderr(&out));
    let db = std::fs::read(site.path("landing/.state.sqlite")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(SECRET));

    // kill -9 part-way through a push of new files, then a clean re-run.
    let more = Site::new(300);
    let mut child = more
        .command(Some(&moto), &["push", "--remote", "r2:bucket/other"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = moto.rclone(&["lsf", "-R", "--files-only", "r2:bucket/other/psd"]);
        if !listed.stdout.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "nothing was uploaded");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (out, json) = more.run(Some(&moto), &["push", "--remote", "r2:bucket/other"]);
    ok(&out, &json);
    assert_eq!(
        json["uploaded"].as_u64().unwrap() + json["skipped"].as_u64().unwrap(),
        300
    );
    let (out, json) = more.run(Some(&moto), &["verify", "--remote", "r2:bucket/other"]);
    ok(&out, &json);
    let ledger = more.ledger();
    assert!(
        ledger[0].1.as_deref().unwrap().starts_with("interrupted"),
        "{ledger:?}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(more.path("landing/.tmp"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn unsupported_remotes_are_usage_errors() {
    let site = Site::new(1);
    for remote in ["", "s3:bucket"] {
        let (out, json) = site.run(None, &["push", "--remote", remote]);
        assert_eq!(out.status.code(), Some(2), "{remote:?}: {json}");
    }
    let (out, _) = site.run(None, &["restore", "--remote", "/x"]);
    assert_eq!(out.status.code(), Some(2), "restore needs --to");
}

#[test]
fn push_never_deletes_a_remote_only_object_nor_an_earlier_state_snapshot() {
    let moto = Moto::start();
    let site = Site::new(2);
    let (out, json) = site.run(Some(&moto), &["push"]);
    ok(&out, &json);
    let first_state = json["state_snapshot"].as_str().unwrap().to_owned();
    assert!(
        first_state.starts_with("state/"),
        "the snapshot key is under state/: {first_state}"
    );
    let listed = moto.rclone(&["lsf", "-R", "--files-only", "r2:bucket/materia/state"]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        first_state.strip_prefix("state/").unwrap(),
        "{}",
        stderr(&listed)
    );
    // An object only the remote has, where landing files go and elsewhere.
    let planted = [
        "psd/2019/04/0000000000000000000000000000000000000000000000000000000000000000.csv.gzip",
        "notes/readme.txt",
    ];
    for key in planted {
        let mut put = moto
            .rclone_cmd(&["rcat", &format!("r2:bucket/materia/{key}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        put.stdin.take().unwrap().write_all(b"planted").unwrap();
        let out = test_support::wait_within(put, LIMIT);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    // Later pushes, one of them with a new landing file, one with nothing new.
    let more = Site::new(3);
    let (rel, bytes) = &more.files[2];
    let dest = site.path("landing").join(rel);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, bytes).unwrap();
    for expect_uploaded in [1, 0] {
        let (out, json) = site.run(Some(&moto), &["push"]);
        ok(&out, &json);
        assert_eq!(json["uploaded"], expect_uploaded, "{json}");
    }

    let listed = moto.rclone(&["lsf", "-R", "--files-only", "r2:bucket/materia"]);
    let remote = String::from_utf8_lossy(&listed.stdout).into_owned();
    for key in planted.iter().copied().chain([first_state.as_str()]) {
        assert!(remote.lines().any(|l| l == key), "{key} is gone: {remote}");
    }
    for key in planted {
        let out = moto.rclone(&["cat", &format!("r2:bucket/materia/{key}")]);
        assert_eq!(out.stdout, b"planted", "{key} untouched");
    }
    let snapshots = remote.lines().filter(|l| l.starts_with("state/")).count();
    assert_eq!(
        snapshots, 3,
        "one snapshot per push, none removed: {remote}"
    );
}

#[test]
fn verify_names_a_landing_file_missing_from_the_remote() {
    let moto = Moto::start();
    let site = Site::new(3);
    let (out, json) = site.run(Some(&moto), &["push"]);
    ok(&out, &json);
    let (gone, _) = &site.files[1];
    let out = moto.rclone(&["deletefile", &format!("r2:bucket/materia/{gone}")]);
    assert!(out.status.success(), "{}", stderr(&out));

    let (out, json) = site.run(Some(&moto), &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json["status"], "failed");
    let mismatches: Vec<&str> = json["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(
        mismatches,
        [format!("{gone}: missing on the remote")],
        "{json}"
    );
    assert!(
        json["error"].as_str().unwrap().contains(gone.as_str()),
        "{json}"
    );
    assert_eq!(site.ledger().last().unwrap().0, "failed");
}

#[test]
fn an_endpoint_that_accepts_but_never_answers_is_bounded_by_timeout_secs() {
    // Accepts every connection and holds it, silent, for as long as the test runs.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(1000) {
            held.push(stream);
        }
    });
    let site = Site::new(1);
    let started = Instant::now();
    let out = site
        .command(
            None,
            &[
                "push",
                "--remote",
                "r2:bucket/materia",
                "--timeout-secs",
                "5",
            ],
        )
        .env("R2_ACCESS_KEY_ID", KEY_ID)
        .env("R2_SECRET_ACCESS_KEY", SECRET)
        .env("R2_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .output_within(LIMIT)
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = json["error"].as_str().unwrap();
    assert!(
        error.contains("did not finish within 5s (--timeout-secs) and was killed"),
        "{error}"
    );
    // A hang check, not a benchmark: one call of 5 s, then the run stops.
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    assert_no_secret(&format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    ));
    assert_eq!(site.ledger().last().unwrap().0, "failed");
}

/// Puts `bytes` at `key` of the bucket, as someone tampering with it would.
fn plant(moto: &Moto, key: &str, bytes: &[u8]) {
    let mut put = moto
        .rclone_cmd(&["rcat", &format!("r2:bucket/materia/{key}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    put.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = test_support::wait_within(put, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn gzip(bytes: &[u8], level: u32) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Every file under `dir`, relative to it, `/`-separated.
fn files_in(dir: &std::path::Path) -> Vec<String> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_type().unwrap().is_dir() {
                walk(base, &entry.path(), out);
            } else {
                let rel = entry.path().strip_prefix(base).unwrap().to_owned();
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn mismatches(json: &serde_json::Value) -> Vec<String> {
    json["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn restore_never_links_a_corrupted_remote_object() {
    let moto = Moto::start();
    let site = Site::new(4);
    let (out, json) = site.run(Some(&moto), &["push"]);
    ok(&out, &json);
    // One object whose content is not what its name says, one truncated gzip.
    let (bad, _) = &site.files[1];
    plant(&moto, bad, &gzip(b"header\nnot what the name says\n", 6));
    let (cut, cut_bytes) = &site.files[3];
    plant(&moto, cut, &cut_bytes[..cut_bytes.len() / 2]);

    let to = site.path("restored");
    let (out, json) = site.run(Some(&moto), &["restore", "--to", to.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json["status"], "failed");
    let found = mismatches(&json);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .any(|m| m.starts_with(bad.as_str()) && m.contains("hashes to"))
    );
    assert!(
        found
            .iter()
            .any(|m| m.starts_with(cut.as_str()) && m.contains("not a readable gzip"))
    );
    assert_eq!(json["skipped"], 2, "{json}");
    // Only the verified files are under landing names, complete and read-only.
    let good: Vec<&(String, Vec<u8>)> = [&site.files[0], &site.files[2]].into();
    let mut expected: Vec<String> = good.iter().map(|(r, _)| r.clone()).collect();
    expected.sort();
    let landed: Vec<String> = files_in(&to)
        .into_iter()
        .filter(|r| !r.starts_with(".tmp/"))
        .collect();
    assert_eq!(landed, expected, "a file failing its check was linked");
    for (rel, bytes) in good {
        let path = to.join(rel);
        assert_eq!(&std::fs::read(&path).unwrap(), bytes, "{rel}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444, "{rel}");
    }
    assert_eq!(
        files_in(&to.join(".tmp")),
        Vec::<String>::new(),
        "staging is removed"
    );
}

#[test]
fn a_restore_killed_mid_download_leaves_no_partial_file_and_a_rerun_completes() {
    use std::os::unix::process::CommandExt as _;
    let moto = Moto::start();
    let site = Site::new(300);
    let (out, json) = site.run(Some(&moto), &["push"]);
    ok(&out, &json);

    let to = site.path("restored");
    let mut cmd = site.command(Some(&moto), &["restore", "--to", to.to_str().unwrap()]);
    // Its own process group, so that rclone dies with it, as under systemd's KillMode.
    cmd.process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while files_in(&to.join(".tmp")).is_empty() {
        assert!(Instant::now() < deadline, "nothing was downloaded");
        std::thread::sleep(Duration::from_millis(5));
    }
    let group = format!("-{}", child.id());
    let out = Command::new("kill")
        .args(["-KILL", "--", &group])
        .output_within(LIMIT)
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let killed = test_support::wait_within(child, LIMIT);
    assert_eq!(killed.status.code(), None, "killed by a signal");

    let staged = files_in(&to.join(".tmp"));
    assert!(!staged.is_empty(), "the kill came after the restore ended");
    // Whatever is under a landing name is complete and verified.
    let by_rel: std::collections::BTreeMap<&str, &Vec<u8>> =
        site.files.iter().map(|(r, b)| (r.as_str(), b)).collect();
    for rel in files_in(&to).iter().filter(|r| !r.starts_with(".tmp/")) {
        assert_eq!(
            std::fs::read(to.join(rel)).unwrap(),
            **by_rel.get(rel.as_str()).unwrap(),
            "{rel} is under its landing name but incomplete"
        );
    }

    let (out, json) = site.run(Some(&moto), &["restore", "--to", to.to_str().unwrap()]);
    ok(&out, &json);
    assert_eq!(json["skipped"], 300, "{json}");
    let landed: Vec<String> = files_in(&to)
        .into_iter()
        .filter(|r| !r.starts_with(".tmp/"))
        .collect();
    assert_eq!(
        landed,
        by_rel.keys().map(|k| k.to_string()).collect::<Vec<_>>()
    );
    for (rel, bytes) in &site.files {
        assert_eq!(&std::fs::read(to.join(rel)).unwrap(), bytes, "{rel}");
    }
    assert_eq!(
        files_in(&to.join(".tmp")),
        Vec::<String>::new(),
        "the killed restore's staging dir is removed by the next one"
    );
}

#[test]
fn restore_into_a_live_landing_dir_keeps_identical_files_and_refuses_different_ones() {
    let moto = Moto::start();
    let site = Site::new(5);
    let (out, json) = site.run(Some(&moto), &["push"]);
    ok(&out, &json);
    let landing = site.path("landing");
    // One file lost, one replaced by another gzip of the same CSV (valid, but other bytes).
    let (lost, lost_bytes) = &site.files[0];
    std::fs::remove_file(landing.join(lost)).unwrap();
    let (other, _) = &site.files[2];
    let other_path = landing.join(other);
    let mut csv = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&other_path).unwrap()),
        &mut csv,
    )
    .unwrap();
    let different = gzip(&csv, 1);
    assert_ne!(&different, &site.files[2].1);
    std::fs::remove_file(&other_path).unwrap();
    std::fs::write(&other_path, &different).unwrap();

    let (out, json) = site.run(Some(&moto), &["restore", "--to", landing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        mismatches(&json),
        [format!(
            "{other}: a different file is already there (left alone)"
        )],
        "{json}"
    );
    assert_eq!(json["skipped"], 4, "{json}");
    assert_eq!(
        json["bytes"],
        lost_bytes.len(),
        "only the lost file was linked"
    );
    assert_eq!(&std::fs::read(landing.join(lost)).unwrap(), lost_bytes);
    assert_eq!(std::fs::read(&other_path).unwrap(), different, "left alone");
    for (rel, bytes) in site.files.iter().skip(1).filter(|(r, _)| r != other) {
        assert_eq!(&std::fs::read(landing.join(rel)).unwrap(), bytes, "{rel}");
    }
    assert!(
        std::fs::read_dir(landing.join(".tmp"))
            .unwrap()
            .next()
            .is_none(),
        "no staging left in the live landing dir"
    );
    // The state DB beside the datasets is untouched and still records the runs.
    let statuses: Vec<String> = site.ledger().into_iter().map(|(s, _)| s).collect();
    assert_eq!(statuses, ["success", "failed"]);
}

/// The gzip of `csv` and its landing name under `psd/2026/05/`: a name that matches its content,
/// as whoever holds the bucket key can make for anything.
fn addressed(csv: &[u8]) -> (String, Vec<u8>) {
    let sha = hex(&Sha256::digest(csv));
    (format!("psd/2026/05/{sha}.csv.gzip"), gzip(csv, 9))
}

/// Issue 22 finding 5: restore trusted the bucket. An object named by its own hash whose content
/// is not a PSD CSV, and a gzip bomb named by its hash, are refused and named, and never
/// linked; the real files are restored.
#[test]
fn regression_restore_refuses_valid_hashes_of_invalid_content_and_gzip_bombs() {
    let moto = Moto::start();
    let site = Site::new(3);
    let (out, json) = site.run(Some(&moto), &["push"]);
    ok(&out, &json);
    let (not_psd, not_psd_gz) = addressed(b"not,a,psd,file\n");
    plant(&moto, &not_psd, &not_psd_gz);
    // 2 MiB of a valid-looking CSV (header, then one long run of rows) past a 1 MiB cap.
    let mut bomb = format!("{PSD_HEADER}\n").into_bytes();
    while bomb.len() < 2 << 20 {
        bomb.extend_from_slice(
            b"0711100,Coffee,BR,Brazil,2020,2026,05,028,Production,002,(1000 60 KG BAGS),1\n",
        );
    }
    let (bomb_name, bomb_gz) = addressed(&bomb);
    assert!(bomb_gz.len() < 64 << 10, "{} bytes", bomb_gz.len());
    plant(&moto, &bomb_name, &bomb_gz);

    let to = site.path("restored");
    let (out, json) = site.run(
        Some(&moto),
        &[
            "restore",
            "--to",
            to.to_str().unwrap(),
            "--max-csv-bytes",
            "1048576",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json["status"], "failed");
    let found = mismatches(&json);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found.iter().any(|m| m.starts_with(not_psd.as_str())
            && m.contains("not a valid PSD CSV: CSV header is not the PSD header")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|m| m.starts_with(bomb_name.as_str())
            && m.contains("decompresses to more than 1048576 bytes")),
        "{found:?}"
    );
    assert!(
        json["error"].as_str().unwrap().contains(not_psd.as_str()),
        "{json}"
    );
    let mut expected: Vec<String> = site.files.iter().map(|(r, _)| r.clone()).collect();
    expected.sort();
    let landed: Vec<String> = files_in(&to)
        .into_iter()
        .filter(|r| !r.starts_with(".tmp/"))
        .collect();
    assert_eq!(landed, expected, "a refused object was linked");
    assert_eq!(site.ledger().last().unwrap().0, "failed");
}

/// A restored file whose rows differ from what the state DB recorded when it landed is refused
/// (a file of the right format and hash that is not the one that landed cannot pass either).
#[test]
fn restore_refuses_a_file_whose_rows_differ_from_the_ledger() {
    let site = Site::new(2);
    let remote = site.path("backup");
    let r = remote.to_str().unwrap();
    let (out, json) = site.run(None, &["push", "--remote", r]);
    ok(&out, &json);
    let (rel, _) = &site.files[0];
    let sha = rel
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".csv.gzip");
    let db = rusqlite::Connection::open(site.path("landing/.state.sqlite")).unwrap();
    db.execute(
        "INSERT INTO extraction_runs (extractor, status, started_at, finished_at, sha256, path, rows)
         VALUES ('psd', 'success', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.000Z', ?1, ?2, 999)",
        rusqlite::params![sha, rel],
    )
    .unwrap();
    // The other file's recorded count is right: it is restored.
    let (other, _) = &site.files[1];
    let other_sha = other
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".csv.gzip");
    db.execute(
        "INSERT INTO extraction_runs (extractor, status, started_at, finished_at, sha256, path, rows)
         VALUES ('psd', 'success', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.000Z', ?1, ?2, 41)",
        rusqlite::params![other_sha, other],
    )
    .unwrap();
    drop(db);

    let to = site.path("restored");
    let (out, json) = site.run(
        None,
        &["restore", "--to", to.to_str().unwrap(), "--remote", r],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let found = mismatches(&json);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(rel.as_str())
            && found[0].contains("holds 40 data rows, the state DB recorded 999"),
        "{found:?}"
    );
    let landed: Vec<String> = files_in(&to)
        .into_iter()
        .filter(|r| !r.starts_with(".tmp/"))
        .collect();
    assert_eq!(landed, std::slice::from_ref(other));
}
