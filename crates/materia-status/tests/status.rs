//! `materia-status` against a real state DB: the table, `--json`, and `--max-age` exit codes.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use run_ledger::{Ledger, RunOutcome, RunStatus};

const BIN: &str = env!("CARGO_BIN_EXE_materia-status");

fn ago(d: Duration) -> String {
    humantime::format_rfc3339_millis(SystemTime::now() - d).to_string()
}

/// extract-psd succeeded 2 days ago; transform succeeded 2 hours ago, then failed 1 hour ago.
fn state_db(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("state.sqlite");
    let ledger = Ledger::open(&path).unwrap();
    let hour = Duration::from_secs(3_600);
    let x = ledger.begin("extract-psd", &ago(48 * hour)).unwrap();
    ledger
        .finish(
            x,
            &ago(48 * hour - Duration::from_secs(2)),
            &RunOutcome::new(RunStatus::Success),
        )
        .unwrap();
    let t = ledger.begin("transform", &ago(2 * hour)).unwrap();
    ledger
        .finish(
            t,
            &ago(2 * hour - Duration::from_secs(20)),
            &RunOutcome::new(RunStatus::Success),
        )
        .unwrap();
    let f = ledger.begin("transform", &ago(hour)).unwrap();
    let failed = RunOutcome::failed("the lakehouse holds no rows of landing file psd/x".to_owned());
    ledger
        .finish(f, &ago(hour - Duration::from_secs(5)), &failed)
        .unwrap();
    path
}

fn status(db: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .env_clear()
        .env("STATE_DB", db)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_table_shows_every_step_with_its_last_run_and_last_success() {
    let dir = tempfile::tempdir().unwrap();
    let db = state_db(dir.path());
    let out = status(&db, &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("STEP"), "{text}");
    let row = |step: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(step))
            .unwrap_or_else(|| panic!("no {step} row: {text}"))
            .to_string()
    };
    assert!(row("extract-psd").contains("success"), "{text}");
    assert!(row("extract-psd").contains("2.0s"), "{text}");
    assert!(row("extract-psd").contains("47h59m"), "{text}");
    assert!(row("transform").contains("failed"), "{text}");
    assert!(
        row("transform").contains("1h59m") || row("transform").contains("2h00m"),
        "{text}"
    );
    assert!(
        text.contains("error: the lakehouse holds no rows"),
        "{text}"
    );
    assert!(row("backup-sync").contains("never"), "{text}");
    assert!(row("export-serving").contains("never"), "{text}");
}

#[test]
fn max_age_makes_it_a_health_check() {
    let dir = tempfile::tempdir().unwrap();
    let db = state_db(dir.path());

    let out = status(
        &db,
        &[
            "--json",
            "--max-age",
            "extract-psd=35d",
            "--max-age",
            "transform=3h",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["stale"], serde_json::json!([]));

    // transform's last success is two hours old: stale under 1h, although it ran an hour ago.
    let out = status(
        &db,
        &[
            "--json",
            "--max-age",
            "extract-psd=35d",
            "--max-age",
            "transform=1h",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "stale");
    assert_eq!(json["stale"], serde_json::json!(["transform"]));
    let transform = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "transform")
        .unwrap();
    assert_eq!(transform["stale"], true);
    assert_eq!(transform["max_age_secs"], 3_600);
    assert!(transform["age_secs"].as_u64().unwrap() >= 7_180);

    // A step that never succeeded is stale under any max age.
    let out = status(&db, &["--max-age", "export-serving=365d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stale: export-serving"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("STALE"));
}

#[test]
fn a_missing_state_db_fails_clearly_and_bad_flags_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.sqlite");
    let out = status(&missing, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "failed");
    assert!(
        json["error"].as_str().unwrap().contains("no state DB at"),
        "{json}"
    );
    assert!(!missing.exists(), "the status tool created a state DB");

    for bad in ["transform", "transform=soon", "=1h"] {
        let out = status(&missing, &["--max-age", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
}
