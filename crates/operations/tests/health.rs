//! deploy-poll's default health check (scripts/health-check.sh), run from a release directory
//! with the real `materia-status` on a real state DB, and a stand-in `systemctl` and web app.
//! Before, the check was `systemctl is-active materia-supervisor.service`, which passes while
//! every step of the new release fails: here the supervisor is always active, and the check
//! must still fail when the release cannot do its job.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use run_ledger::{Ledger, RunOutcome, RunStatus};
use test_support::{CommandExt, repo_root, stderr, workspace_bin};

/// Bound on one health check: its own wait is a few seconds here.
const CHILD_LIMIT: Duration = Duration::from_secs(60);
/// When the stand-in systemctl says materia-supervisor.service (re)started.
const RESTARTED: &str = "Thu 2026-01-01 00:00:00.000000 UTC";
const BEFORE: &str = "2025-12-31T23:00:00.000Z";
const AFTER: &str = "2026-01-01T00:05:00.000Z";

struct Release {
    dir: tempfile::TempDir,
    state_db: PathBuf,
    web_port: Option<u16>,
}

impl Release {
    /// A release directory (bin/materia-status) and a stand-in systemctl: the supervisor is
    /// active since RESTARTED; materia-web.socket is enabled when `web` answers with a status.
    fn new(web: Option<u16>) -> Release {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("release/bin")).unwrap();
        std::os::unix::fs::symlink(
            workspace_bin("materia-status"),
            dir.path().join("release/bin/materia-status"),
        )
        .unwrap();
        // The extractors health waits for are the registry's.
        std::fs::copy(
            repo_root().join("workflows.toml"),
            dir.path().join("release/workflows.toml"),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("fake")).unwrap();
        let web_enabled = if web.is_some() { "exit 0" } else { "exit 1" };
        let systemctl = format!(
            "#!/bin/sh\ncase \"$*\" in\n\
             *ExecMainStartTimestamp*) echo '{RESTARTED}' ;;\n\
             'is-active --quiet materia-supervisor.service') exit 0 ;;\n\
             'is-enabled --quiet materia-web.socket') {web_enabled} ;;\n\
             *) echo \"unexpected: systemctl $*\" >&2; exit 3 ;;\nesac\n"
        );
        let path = dir.path().join("fake/systemctl");
        std::fs::write(&path, systemctl).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let state_db = dir.path().join("state.sqlite");
        Ledger::open(&state_db).unwrap();
        let web_port = web.map(web_app);
        Release {
            dir,
            state_db,
            web_port,
        }
    }

    /// One run of `step` that started at `at` and ended `status`.
    fn ran(&self, step: &str, at: &str, status: RunStatus) -> &Release {
        let ledger = Ledger::open(&self.state_db).unwrap();
        // One recorder for every step (extract-<dataset> rows go to extraction_runs).
        let id = ledger.begin(step, at).unwrap();
        let outcome = RunOutcome {
            error: (status == RunStatus::Failed).then(|| "it broke".to_owned()),
            ..RunOutcome::new(status)
        };
        ledger.finish(id, at, &outcome).unwrap();
        self
    }

    fn check(&self, wait_secs: u32) -> (Output, Duration) {
        let mut cmd = Command::new("sh");
        cmd.arg(repo_root().join("scripts/health-check.sh"))
            .current_dir(self.dir.path().join("release"))
            .env_clear()
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", self.dir.path().join("fake").display()),
            )
            .env("STATE_DB", &self.state_db)
            .env("MATERIA_HEALTH_WAIT_SECS", wait_secs.to_string())
            .env("MATERIA_HEALTH_POLL_SECS", "1");
        if let Some(port) = self.web_port {
            cmd.env("MATERIA_WEB_LISTEN", format!("127.0.0.1:{port}"));
        }
        let started = Instant::now();
        let out = cmd.output_within(CHILD_LIMIT).unwrap();
        (out, started.elapsed())
    }

    fn a_whole_cycle_after_the_restart(&self) -> &Release {
        self.ran("extract-psd", AFTER, RunStatus::Success)
            .ran("extract-prices", AFTER, RunStatus::Unchanged)
            .ran("transform", AFTER, RunStatus::Success)
            .ran("export-serving", AFTER, RunStatus::Unchanged)
    }
}

/// A stand-in web app on a free loopback port: every request gets `status`.
fn web_app(status: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = if status == 200 {
                "{\"status\":\"ok\"}"
            } else {
                "{\"status\":\"stale\"}"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn assert_fails(out: &Output, why: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert!(
        stderr(out).contains(why),
        "wanted '{why}' in:\n{}",
        stderr(out)
    );
}

#[test]
fn regression_health_fails_at_once_when_a_step_fails_after_the_restart() {
    let r = Release::new(None);
    r.ran("extract-psd", AFTER, RunStatus::Success)
        .ran("transform", AFTER, RunStatus::Failed);
    let (out, took) = r.check(50);
    assert_fails(
        &out,
        "transform failed after the restart at 2026-01-01T00:00:00.000Z",
    );
    assert!(took < Duration::from_secs(30), "took {took:?}: not at once");
}

#[test]
fn regression_health_fails_at_its_bound_when_no_cycle_completes_after_the_restart() {
    let r = Release::new(None);
    // A whole good cycle of the previous release does not count for the new one.
    r.ran("extract-psd", BEFORE, RunStatus::Success)
        .ran("transform", BEFORE, RunStatus::Success)
        .ran("export-serving", BEFORE, RunStatus::Success)
        .ran("extract-psd", AFTER, RunStatus::Success);
    let (out, took) = r.check(3);
    assert_fails(&out, "no complete pipeline cycle since the restart");
    assert!(took >= Duration::from_secs(3), "gave up after {took:?}");
}

#[test]
fn health_passes_once_every_step_succeeded_since_the_restart() {
    let r = Release::new(None);
    r.ran("transform", BEFORE, RunStatus::Failed)
        .a_whole_cycle_after_the_restart();
    let (out, _) = r.check(30);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("materia-web"),
        "no web app to ask: {}",
        stderr(&out)
    );
}

#[test]
fn regression_health_fails_when_the_web_apps_healthz_does_not_answer_200() {
    let r = Release::new(Some(503));
    r.a_whole_cycle_after_the_restart();
    let (out, _) = r.check(3);
    assert_fails(&out, "materia-web's /healthz did not answer 200");

    let r = Release::new(Some(200));
    r.a_whole_cycle_after_the_restart();
    let (out, _) = r.check(30);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("materia-web answers /healthz with 200"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn health_waits_for_every_due_extractor_of_the_registry_and_fails_on_any_that_failed() {
    // PSD, transform and export succeeded, but prices (due: it never ran) has not run yet.
    let r = Release::new(None);
    r.ran("extract-psd", AFTER, RunStatus::Success)
        .ran("transform", AFTER, RunStatus::Success)
        .ran("export-serving", AFTER, RunStatus::Success);
    let (out, _) = r.check(3);
    assert_fails(&out, "no complete pipeline cycle since the restart");
    // A failed prices run after the restart fails the check at once.
    r.ran("extract-prices", AFTER, RunStatus::Failed);
    let (out, took) = r.check(50);
    assert_fails(
        &out,
        "extract-prices failed after the restart at 2026-01-01T00:00:00.000Z",
    );
    assert!(took < Duration::from_secs(30), "took {took:?}: not at once");
}

/// A loopback server that answers every request with `status` and `body`.
fn upstream(status: u16, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/psd_alldata_csv.zip")
}

/// A loopback address where nothing listens: connection refused.
fn refused() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/psd_alldata_csv.zip")
}

impl Release {
    /// A real run of extract-psd against `url` (no retries), recorded in the state DB now, that
    /// is after the restart; returns its `error_class`.
    fn extract_from(&self, url: &str) -> String {
        let out = Command::new(workspace_bin("extract-psd"))
            .env_clear()
            .env("LANDING_DIR", self.dir.path().join("landing"))
            .env("STATE_DB", &self.state_db)
            .args([
                "--url",
                url,
                "--retries",
                "0",
                "--timeout-secs",
                "10",
                "--json",
            ])
            .output_within(CHILD_LIMIT)
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["status"], "failed", "{report}");
        report["error_class"].as_str().unwrap().to_owned()
    }

    fn transform_and_export_after_the_restart(&self) -> &Release {
        self.ran("extract-prices", AFTER, RunStatus::Unchanged)
            .ran("transform", AFTER, RunStatus::Success)
            .ran("export-serving", AFTER, RunStatus::Unchanged)
    }
}

/// Issue 23: a USDA outage during the health window (connection refused, HTTP 5xx) is not the
/// release's fault: it stands on the transform, export-serving and the web app.
#[test]
fn regression_an_upstream_outage_during_the_health_window_does_not_fail_the_release() {
    for url in [refused(), upstream(503, "down for maintenance")] {
        let r = Release::new(Some(200));
        assert_eq!(r.extract_from(&url), "upstream", "{url}");
        // Only the extractor has run: the check waits for the rest.
        let (out, _) = r.check(2);
        assert_fails(&out, "no complete pipeline cycle since the restart");

        r.transform_and_export_after_the_restart();
        let (out, _) = r.check(30);
        assert_eq!(out.status.code(), Some(0), "{url}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("extract-psd failed upstream (not the release's fault"),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("materia-web answers /healthz with 200"));
    }
}

/// ... but the release still falls on what it controls during an outage: a failed transform,
/// or a web app that does not answer.
#[test]
fn an_upstream_outage_does_not_excuse_a_failing_transform_or_web_app() {
    let r = Release::new(None);
    assert_eq!(r.extract_from(&refused()), "upstream");
    r.ran("transform", AFTER, RunStatus::Failed);
    let (out, took) = r.check(50);
    assert_fails(&out, "transform failed after the restart");
    assert!(took < Duration::from_secs(30), "took {took:?}: not at once");

    let r = Release::new(Some(503));
    assert_eq!(r.extract_from(&refused()), "upstream");
    r.transform_and_export_after_the_restart();
    let (out, _) = r.check(3);
    assert_fails(&out, "materia-web's /healthz did not answer 200");
}

/// Content that upstream served but this release refuses is not excused: the release's own
/// validation is judged (a 200 whose body is not a zip).
#[test]
fn an_extract_failure_that_is_not_upstreams_fails_the_release_at_once() {
    let r = Release::new(None);
    let url = upstream(200, "not,a,zip");
    assert_eq!(r.extract_from(&url), "operational");
    r.transform_and_export_after_the_restart();
    let (out, took) = r.check(50);
    assert_fails(&out, "extract-psd failed after the restart");
    assert!(took < Duration::from_secs(30), "took {took:?}: not at once");
}
