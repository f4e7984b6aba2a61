//! Alerts, both paths (issue 23): the Prometheus rules of `ops/alerts.yml` under `promtool test
//! rules`, written against series that the real binaries write; and the webhook notifier
//! `scripts/alert.sh` (OnFailure= of every unit, and the supervisor after each step) against a
//! loopback HTTP receiver, invoked as systemd and the supervisor invoke it.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use test_support::{CommandExt, repo_root, stderr, workspace_bin};

/// Bound on every child: alert.sh's own bound is seconds.
const CHILD_LIMIT: Duration = Duration::from_secs(60);
/// Stands for a secret in the unit's environment: it must never reach a message.
const SECRET: &str = "r2-secret-0f9e8d7c";
/// The token in the webhook URL (a credential too: never in argv or logs).
const TOKEN: &str = "hook-token-4242";

/// A loopback webhook. `answer`: reply 200 to each POST; otherwise read it and never answer.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Receiver {
    fn start(answer: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://127.0.0.1:{}/hook?token={TOKEN}",
            listener.local_addr().unwrap().port()
        );
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; length.min(1 << 16)];
                let _ = reader.read_exact(&mut body);
                if !answer {
                    // Hold the connection open without a word, past the sender's bound.
                    std::thread::sleep(Duration::from_secs(20));
                    continue;
                }
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null));
                let mut stream = reader.into_inner();
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Receiver { url, bodies }
    }

    fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// scripts/alert.sh NAME EVENT as systemd runs it: the unit's environment (a secret
/// included), the state directory `state`.
fn alert(state: &Path, url: &str, extra: &[(&str, &str)], name: &str, event: &str) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg(repo_root().join("scripts/alert.sh"))
        .args([name, event])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("MATERIA_ALERT_URL", url)
        .env("MATERIA_ALERT_STATE_DIR", state)
        .env("R2_SECRET_ACCESS_KEY", SECRET);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output_within(CHILD_LIMIT).unwrap();
    assert_eq!(out.status.code(), Some(0), "never fails: {}", stderr(&out));
    assert!(
        !stderr(&out).contains(TOKEN) && !stderr(&out).contains(SECRET),
        "the URL's token or a secret was logged: {}",
        stderr(&out)
    );
    out
}

fn assert_no_secret(bodies: &[serde_json::Value]) {
    for b in bodies {
        let text = b.to_string();
        assert!(!text.contains(SECRET) && !text.contains(TOKEN), "{text}");
    }
}

#[test]
fn one_alert_per_unit_per_hour_then_one_recovery_and_never_a_secret() {
    let state = tempfile::tempdir().unwrap();
    let hook = Receiver::start(true);
    let unit = "materia-backup.service";
    alert(state.path(), &hook.url, &[], unit, "failed");
    let out = alert(state.path(), &hook.url, &[], unit, "failed");
    assert!(
        stderr(&out).contains("next one after 3600s"),
        "{}",
        stderr(&out)
    );
    // Another unit has its own hour.
    alert(
        state.path(),
        &hook.url,
        &[],
        "materia-deploy.service",
        "failed",
    );
    alert(state.path(), &hook.url, &[], unit, "recovered");
    // Nothing open any more: a second success says nothing.
    alert(state.path(), &hook.url, &[], unit, "recovered");

    let bodies = hook.bodies();
    let events: Vec<(String, String)> = bodies
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_owned(),
                b["event"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            (unit.to_owned(), "failed".to_owned()),
            ("materia-deploy.service".to_owned(), "failed".to_owned()),
            (unit.to_owned(), "recovered".to_owned()),
        ]
    );
    assert!(bodies[0]["at"].as_str().unwrap().ends_with('Z'));
    assert!(!bodies[0]["host"].as_str().unwrap().is_empty());
    assert_no_secret(&bodies);

    // After the interval, a failure that goes on is reported again.
    let fast = [("MATERIA_ALERT_INTERVAL_SECS", "0")];
    alert(state.path(), &hook.url, &fast, unit, "failed");
    alert(state.path(), &hook.url, &fast, unit, "failed");
    assert_eq!(hook.bodies().len(), 5);
}

#[test]
fn a_malformed_url_or_a_silent_webhook_never_blocks_and_the_alert_is_retried() {
    let state = tempfile::tempdir().unwrap();
    for bad in ["not a url", "ftp://127.0.0.1/x", "http://127.0.0.1/a b"] {
        let started = Instant::now();
        let out = alert(state.path(), bad, &[], "transform", "failed");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(stderr(&out).contains("not sent"), "{bad}: {}", stderr(&out));
    }

    // A webhook that takes the connection and never answers: bounded by the timeout.
    let silent = Receiver::start(false);
    let started = Instant::now();
    let out = alert(
        state.path(),
        &silent.url,
        &[("MATERIA_ALERT_TIMEOUT_SECS", "2")],
        "transform",
        "failed",
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        stderr(&out).contains("transform failed: the webhook did not take the message"),
        "{}",
        stderr(&out)
    );
    // Not delivered, so not rate-limited: the next failure sends it.
    let hook = Receiver::start(true);
    alert(state.path(), &hook.url, &[], "transform", "failed");
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["event"], "failed");

    // Not a unit or step name, not an event: nothing sent, still exit 0.
    alert(state.path(), &hook.url, &[], "../../etc/passwd", "failed");
    alert(state.path(), &hook.url, &[], "transform", "exploded");
    assert_eq!(hook.bodies().len(), 1);
}

#[test]
fn without_a_url_nothing_is_sent_and_nothing_is_written() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("alerts");
    let out = alert(&dir, "", &[], "transform", "failed");
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    assert!(!dir.exists());
}

/// The supervisor reports a failing step once, and its recovery, through alert.sh.
#[test]
fn the_supervisor_reports_a_failing_step_and_its_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let flag = dir.path().join("transform-fails");
    std::os::unix::fs::symlink(
        test_support::workspace_bin("materia-status"),
        bin.join("materia-status"),
    )
    .unwrap();
    for step in [
        "extract-psd",
        "extract-prices",
        "transform",
        "export-serving",
    ] {
        let body = if step == "transform" {
            format!("[ -e '{}' ] && exit 1\nexit 0", flag.display())
        } else {
            "exit 0".to_owned()
        };
        let path = bin.join(step);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let hook = Receiver::start(true);
    let cycle = || {
        Command::new("sh")
            .arg(repo_root().join("scripts/supervisor.sh"))
            .arg("--once")
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("MATERIA_BIN_DIR", &bin)
            .env("LANDING_DIR", dir.path().join("landing"))
            .env("MATERIA_WORKFLOWS", repo_root().join("workflows.toml"))
            .env("MATERIA_ALERT_URL", &hook.url)
            .env("R2_SECRET_ACCESS_KEY", SECRET)
            .output_within(CHILD_LIMIT)
            .unwrap()
    };
    std::fs::write(&flag, "").unwrap();
    assert_eq!(cycle().status.code(), Some(1));
    assert_eq!(cycle().status.code(), Some(1));
    std::fs::remove_file(&flag).unwrap();
    let out = cycle();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let bodies = hook.bodies();
    let events: Vec<String> = bodies
        .iter()
        .map(|b| {
            format!(
                "{} {}",
                b["name"].as_str().unwrap(),
                b["event"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(events, ["transform failed", "transform recovered"]);
    assert_no_secret(&bodies);
    // The state lives beside the landing directory, as on the server (/data/materia/alerts).
    assert!(dir.path().join("alerts").is_dir());
}

/// Every `materia_*` series that `ops/alerts.test.yml` feeds the rules, read from metrics files
/// that the real binaries write (each run here is quick, most fail at once: metrics either way).
#[test]
fn the_rules_test_series_are_shaped_like_the_metrics_files_the_steps_write() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("metrics");
    let runs: [(&str, &[&str]); 7] = [
        // A good run (its last_success gauge), then a failing one (carried over).
        ("psd-gen", &["--out", "psd.zip", "--rows", "200"]),
        ("extract-psd", &["--url", "psd.zip"]),
        ("extract-psd", &["--url", "no-such-psd.zip"]),
        ("transform", &["--project", "no-such-project"]),
        ("export-serving", &[]),
        ("backup-sync", &["push"]),
        ("deploy-poll", &["--once", "--root", "no-such-root"]),
    ];
    for (binary, args) in runs {
        let out = Command::new(workspace_bin(binary))
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", dir.path())
            .env("LANDING_DIR", dir.path().join("landing"))
            .env("DUCKDB_PATH", dir.path().join("nonexistent.duckdb"))
            .env("SERVING_DUCKDB_PATH", dir.path().join("analytics.duckdb"))
            .env("METRICS_DIR", &metrics)
            .env("BACKUP_REMOTE", dir.path().join("remote"))
            .output_within(CHILD_LIMIT)
            .unwrap();
        // Whatever the outcome (backup-sync pushes an empty store), never busy: metrics written.
        assert_ne!(out.status.code(), Some(75), "{binary}: {}", stderr(&out));
    }
    let mut written = BTreeSet::new();
    for entry in std::fs::read_dir(&metrics).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            written.insert(line.split([' ', '{']).next().unwrap().to_owned());
        }
    }
    let tests = std::fs::read_to_string(repo_root().join("ops/alerts.test.yml")).unwrap();
    let fed: BTreeSet<String> = tests
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- series: '"))
        .map(|s| s.split('{').next().unwrap().to_owned())
        .filter(|s| s.starts_with("materia_"))
        .collect();
    assert!(fed.len() >= 4, "{fed:?}");
    for series in &fed {
        assert!(
            written.contains(series),
            "ops/alerts.test.yml feeds {series}, which no step writes; written: {written:?}"
        );
    }
}

#[test]
fn promtool_test_rules_passes() {
    let Ok(version) = Command::new("promtool")
        .arg("--version")
        .output_within(CHILD_LIMIT)
    else {
        test_support::skip(
            "promtool_test_rules_passes: no promtool (Debian's prometheus package: make deps)",
        );
        return;
    };
    assert!(version.status.success());
    let out = Command::new("promtool")
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(repo_root().join("ops"))
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let out = Command::new("promtool")
        .args(["check", "rules", "alerts.yml"])
        .current_dir(repo_root().join("ops"))
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS: 5 rules found"));
}

/// Every Materia service reports its failure through the alert unit, and the ones that can
/// reach the network report their recovery when they next start well.
#[test]
fn every_unit_reports_its_failure_through_the_alert_unit() {
    let dir = repo_root().join("systemd");
    let alert_unit = std::fs::read_to_string(dir.join("materia-alert@.service")).unwrap();
    assert!(
        alert_unit
            .lines()
            .any(|l| l == "ExecStart=/bin/sh /opt/materia/current/scripts/alert.sh %i failed")
    );
    for name in [
        "materia-supervisor.service",
        "materia-backup.service",
        "materia-deploy.service",
        "materia-web.service",
    ] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(
            text.lines()
                .any(|l| l == "OnFailure=materia-alert@%n.service"),
            "{name} has no OnFailure= alert"
        );
        // The web app has no network of its own (PrivateNetwork=yes): its alert unit sends.
        if name != "materia-web.service" {
            assert!(
                text.lines().any(|l| l
                    == "ExecStartPost=-/bin/sh /opt/materia/current/scripts/alert.sh %n recovered"),
                "{name} sends no recovery"
            );
        }
    }
}
