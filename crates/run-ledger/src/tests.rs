//! Tests of the ledger as a whole: schema, runs, digests, bad tags and snapshots.

use std::path::Path;

use rusqlite::Connection;

use crate::migrations::MIGRATIONS;
use crate::*;

fn open_temp() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("sub/state.sqlite")).unwrap();
    (dir, ledger)
}

#[test]
fn immutable_uris_escape_what_uris_reserve() {
    assert_eq!(
        immutable_uri(Path::new("/data/materia/landing/.state.sqlite")),
        "file:/data/materia/landing/.state.sqlite?mode=ro&immutable=1"
    );
    assert_eq!(
        immutable_uri(Path::new("/tmp/a b?#%.db")),
        "file:/tmp/a%20b%3F%23%25.db?mode=ro&immutable=1"
    );
}

#[test]
fn fresh_db_is_migrated_to_current_version_and_reopen_is_idempotent() {
    let (dir, ledger) = open_temp();
    assert_eq!(ledger.schema_version().unwrap(), SCHEMA_VERSION);
    drop(ledger);
    let again = Ledger::open(&dir.path().join("sub/state.sqlite")).unwrap();
    assert_eq!(again.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn a_version_1_db_is_migrated_in_place_keeping_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(MIGRATIONS[0]).unwrap();
    conn.execute_batch("PRAGMA user_version = 1; INSERT INTO step_runs (step, status, started_at) VALUES ('transform', 'success', 't');").unwrap();
    drop(conn);
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(ledger.last_good_fingerprint("transform").unwrap(), None);
    assert_eq!(
        ledger.recent_runs(5).unwrap().len(),
        1,
        "rows survive the migration"
    );
}

#[test]
fn newer_schema_is_refused_not_downgraded() {
    let (dir, ledger) = open_temp();
    ledger
        .conn
        .execute_batch("PRAGMA user_version = 999; UPDATE schema_compat SET readable_by = 999")
        .unwrap();
    drop(ledger);
    let err = Ledger::open(&dir.path().join("sub/state.sqlite"))
        .err()
        .unwrap();
    assert!(
        matches!(err, LedgerError::TooNew { found: 999, .. }),
        "{err}"
    );
}

#[test]
fn operators_query_works_and_interrupted_runs_are_failed() {
    let (_dir, ledger) = open_temp();
    let dead = ledger
        .begin("extract-psd", "2026-11-01T00:00:00.000Z")
        .unwrap();
    assert_eq!(
        ledger
            .interrupt_stale("extract-psd", "2026-11-02T00:00:00.000Z")
            .unwrap(),
        1
    );
    let ok = ledger
        .begin("extract-psd", "2026-11-02T00:00:01.000Z")
        .unwrap();
    let outcome = RunOutcome {
        landed: Some(Landed {
            etag: Some("\"abc\"".into()),
            sha256: Some("00".repeat(32)),
            ..Default::default()
        }),
        ..RunOutcome::new(RunStatus::Success)
    };
    ledger
        .finish(ok, "2026-11-02T00:00:02.000Z", &outcome)
        .unwrap();

    let mut stmt = ledger
        .conn
        .prepare("SELECT extractor, status, finished_at FROM extraction_runs ORDER BY run_id DESC LIMIT 20")
        .unwrap();
    let rows: Vec<(String, String, Option<String>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "psd".into(),
                "success".into(),
                Some("2026-11-02T00:00:02.000Z".into())
            ),
            (
                "psd".into(),
                "failed".into(),
                Some("2026-11-02T00:00:00.000Z".into())
            ),
        ]
    );
    let error: String = ledger
        .conn
        .query_row(
            "SELECT error FROM extraction_runs WHERE run_id = ?1",
            [dead.get()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(error, INTERRUPTED);
    let good = ledger.last_good_extraction("psd").unwrap().unwrap();
    assert_eq!(good.etag.as_deref(), Some("\"abc\""));
}

#[test]
fn step_runs_share_the_runs_view_and_remember_fingerprints() {
    let (_dir, ledger) = open_temp();
    let id = ledger
        .begin("export-serving", "2026-11-02T00:00:00.000Z")
        .unwrap();
    let failed = RunOutcome {
        input_fingerprint: Some("f1".into()),
        ..RunOutcome::failed("boom".into())
    };
    ledger
        .finish(id, "2026-11-02T00:00:01.000Z", &failed)
        .unwrap();
    assert_eq!(
        ledger.last_good_fingerprint("export-serving").unwrap(),
        None,
        "failed runs do not count"
    );
    let ok = ledger
        .begin("export-serving", "2026-11-02T00:00:02.000Z")
        .unwrap();
    let good = RunOutcome {
        input_fingerprint: Some("f2".into()),
        ..RunOutcome::new(RunStatus::Success)
    };
    ledger
        .finish(ok, "2026-11-02T00:00:03.000Z", &good)
        .unwrap();
    assert_eq!(
        ledger
            .last_good_fingerprint("export-serving")
            .unwrap()
            .as_deref(),
        Some("f2")
    );
    assert_eq!(ledger.last_good_fingerprint("transform").unwrap(), None);

    let x = ledger
        .begin("extract-psd", "2026-11-03T00:00:00.000Z")
        .unwrap();
    let runs = ledger.recent_runs(10).unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(
        (
            runs[0].step.as_str(),
            runs[0].run_id,
            runs[0].status.as_str()
        ),
        ("extract-psd", x.get(), "running")
    );
    assert_eq!(runs[2].step, "export-serving");
    assert_eq!(runs[2].error.as_deref(), Some("boom"));
    assert_eq!(ledger.interrupt_stale("export-serving", "t").unwrap(), 0);
}

#[test]
fn digests_bad_tags_and_snapshots() {
    let (dir, ledger) = open_temp();
    assert_eq!(ledger.file_md5("psd/a", 3).unwrap(), None);
    ledger.record_file_md5("psd/a", 3, "abc").unwrap();
    assert_eq!(ledger.file_md5("psd/a", 3).unwrap().as_deref(), Some("abc"));
    assert_eq!(
        ledger.file_md5("psd/a", 4).unwrap(),
        None,
        "another size, another file"
    );
    ledger.mark_bad_tag("v2", "health", "t1").unwrap();
    ledger.mark_bad_tag("v2", "again", "t2").unwrap();
    assert_eq!(ledger.bad_tags().unwrap(), ["v2"]);
    let id = ledger.begin("backup-sync", "t").unwrap();
    let snap = dir.path().join("snap.sqlite");
    ledger.snapshot_to(&snap).unwrap();
    let copy = Ledger::open_read_only(&snap).unwrap();
    assert_eq!(copy.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(copy.recent_runs(5).unwrap()[0].run_id, id.get());
    assert_eq!(copy.bad_tags().unwrap(), ["v2"]);
}

#[test]
fn summaries_give_the_latest_run_and_the_latest_success_read_only() {
    let (dir, ledger) = open_temp();
    let missing = dir.path().join("absent.sqlite");
    assert!(matches!(
        Ledger::open_read_only(&missing),
        Err(LedgerError::Missing { .. })
    ));
    assert!(!missing.exists());
    let ok = ledger
        .begin("transform", "2026-11-02T00:00:00.000Z")
        .unwrap();
    ledger
        .finish(
            ok,
            "2026-11-02T00:00:09.000Z",
            &RunOutcome::new(RunStatus::Success),
        )
        .unwrap();
    let bad = ledger
        .begin("transform", "2026-11-03T00:00:00.000Z")
        .unwrap();
    let failed = RunOutcome::failed("boom".into());
    ledger
        .finish(bad, "2026-11-03T00:00:01.000Z", &failed)
        .unwrap();
    let x = ledger
        .begin("extract-psd", "2026-11-01T00:00:00.000Z")
        .unwrap();
    ledger
        .finish(
            x,
            "2026-11-01T00:00:02.000Z",
            &RunOutcome::new(RunStatus::Unchanged),
        )
        .unwrap();

    let ro = Ledger::open_read_only(ledger.path()).unwrap();
    let summaries = ro.step_summaries().unwrap();
    assert_eq!(summaries.len(), 2);
    assert_eq!(summaries[0].step, "extract-psd");
    assert_eq!(summaries[0].status, "unchanged");
    assert_eq!(
        summaries[0].last_success_at.as_deref(),
        Some("2026-11-01T00:00:02.000Z")
    );
    assert_eq!(summaries[1].step, "transform");
    assert_eq!(summaries[1].status, "failed");
    assert_eq!(summaries[1].error.as_deref(), Some("boom"));
    assert_eq!(
        summaries[1].last_success_at.as_deref(),
        Some("2026-11-02T00:00:09.000Z")
    );
    assert!(ro.begin("transform", "t").is_err(), "read-only");
}

#[test]
fn landed_rows_come_from_successful_extractions() {
    let (_dir, ledger) = open_temp();
    let a = ledger.begin("extract-psd", "t1").unwrap();
    let landed = Landed {
        sha256: Some("aa".into()),
        rows: Some(7),
        ..Default::default()
    };
    let outcome = RunOutcome {
        landed: Some(landed.clone()),
        ..RunOutcome::new(RunStatus::Success)
    };
    ledger.finish(a, "t2", &outcome).unwrap();
    let b = ledger.begin("extract-psd", "t3").unwrap();
    let dup = RunOutcome {
        landed: Some(landed),
        ..RunOutcome::new(RunStatus::Unchanged)
    };
    ledger.finish(b, "t4", &dup).unwrap();
    assert_eq!(
        ledger.landed_rows("psd").unwrap(),
        vec![("aa".to_owned(), 7)]
    );
}

#[test]
fn extractor_steps_are_rows_of_extraction_runs_and_others_of_step_runs() {
    let (_dir, ledger) = open_temp();
    assert_eq!(dataset_of_step("extract-psd"), Some("psd"));
    assert_eq!(dataset_of_step(&extractor_step("wasde")), Some("wasde"));
    assert_eq!(dataset_of_step("extract-"), None);
    assert_eq!(dataset_of_step("transform"), None);
    let x = ledger.begin("extract-toy", "t1").unwrap();
    let s = ledger.begin("transform", "t2").unwrap();
    let count = |sql: &str| -> i64 { ledger.conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM extraction_runs WHERE extractor = 'toy'"),
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM step_runs WHERE step = 'transform'"),
        1
    );
    assert_eq!(ledger.interrupt_stale("extract-toy", "t3").unwrap(), 1);
    assert_eq!(ledger.interrupt_stale("transform", "t3").unwrap(), 1);
    let steps: Vec<String> = ledger
        .recent_runs(5)
        .unwrap()
        .into_iter()
        .map(|r| format!("{} {} {}", r.step, r.run_id, r.status))
        .collect();
    assert_eq!(
        steps,
        [
            format!("transform {} failed", s.get()),
            format!("extract-toy {} failed", x.get())
        ]
    );
}

#[test]
#[should_panic(expected = "only extractor steps record what they landed")]
fn a_step_cannot_record_landed_files() {
    let (_dir, ledger) = open_temp();
    let run = ledger.begin("transform", "t").unwrap();
    let outcome = RunOutcome {
        landed: Some(Landed::default()),
        ..RunOutcome::new(RunStatus::Success)
    };
    let _ = ledger.finish(run, "t", &outcome);
}

#[test]
fn an_unknown_status_in_the_db_is_an_error_not_a_guess() {
    let (_dir, ledger) = open_temp();
    ledger
        .conn
        .execute_batch(
            "INSERT INTO step_runs (step, status, started_at) VALUES ('x', 'weird', 't')",
        )
        .unwrap();
    let err = ledger.step_summaries().unwrap_err();
    assert!(
        err.to_string().contains("unknown run status \"weird\""),
        "{err}"
    );
    for status in RunStatus::ALL {
        assert_eq!(RunStatus::parse(status.as_str()), Some(status));
    }
}
