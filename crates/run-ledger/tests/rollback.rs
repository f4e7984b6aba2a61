//! A release rolled back past a migration keeps working: the previous release's binaries open a
//! state DB that the next release already migrated (additively), and refuse only one that a
//! migration marked as unusable for them.

#![allow(clippy::unwrap_used)]

use run_ledger::{Ledger, LedgerError, RunOutcome, RunStatus, SCHEMA_VERSION};

/// What the next release's binary does to the DB at its first step: one more migration.
fn migrate_like_the_next_release(path: &std::path::Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
        SCHEMA_VERSION + 1
    ))
    .unwrap();
}

#[test]
fn regression_a_rolled_back_release_uses_a_db_migrated_additively_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let ledger = Ledger::open(&path).unwrap();
    let before = ledger
        .begin("transform", "2026-11-01T00:00:00.000Z")
        .unwrap();
    drop(ledger);
    migrate_like_the_next_release(
        &path,
        "ALTER TABLE step_runs ADD COLUMN host TEXT; CREATE TABLE step_notes (run_id INTEGER, note TEXT)",
    );

    // Before: "state DB ... has schema version 6, newer than the 5 this binary knows".
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(
        ledger.schema_version().unwrap(),
        SCHEMA_VERSION + 1,
        "never downgraded"
    );
    assert_eq!(ledger.interrupt_stale("transform", "t").unwrap(), 1);
    let id = ledger
        .begin("transform", "2026-11-02T00:00:00.000Z")
        .unwrap();
    ledger
        .finish(
            id,
            "2026-11-02T00:00:01.000Z",
            &RunOutcome::new(RunStatus::Success),
        )
        .unwrap();
    assert_ne!(id, before);
    ledger
        .mark_bad_tag("v2", "health check failed", "t")
        .unwrap();
    drop(ledger);

    let ro = Ledger::open_read_only(&path).unwrap();
    let summaries = ro.step_summaries().unwrap();
    assert_eq!(summaries[0].status, RunStatus::Success);
    assert_eq!(ro.bad_tags().unwrap(), ["v2"]);
}

#[test]
fn a_migration_that_older_binaries_cannot_live_with_is_refused_by_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    drop(Ledger::open(&path).unwrap());
    migrate_like_the_next_release(
        &path,
        &format!(
            "UPDATE schema_compat SET readable_by = {}",
            SCHEMA_VERSION + 1
        ),
    );
    for result in [Ledger::open(&path), Ledger::open_read_only(&path)] {
        let err = result.err().unwrap();
        assert!(
            matches!(err, LedgerError::TooNew { found, .. } if found == SCHEMA_VERSION + 1),
            "{err}"
        );
    }
}
