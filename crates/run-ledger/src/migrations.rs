//! The schema: append-only migrations keyed on `PRAGMA user_version`.

use crate::{Ledger, LedgerError};

/// Migration `i` brings the schema from version `i` to `i + 1`. Append only; never edit one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: extraction runs, other steps' runs, and the union view that status tools read.
    r"
    CREATE TABLE extraction_runs (
        run_id        INTEGER PRIMARY KEY,
        extractor     TEXT NOT NULL,
        status        TEXT NOT NULL,
        started_at    TEXT NOT NULL,
        finished_at   TEXT,
        etag          TEXT,
        last_modified TEXT,
        sha256        TEXT,
        path          TEXT,
        rows          INTEGER,
        bytes         INTEGER,
        error         TEXT,
        detail        TEXT,
        pid           INTEGER
    );
    CREATE INDEX extraction_runs_by_extractor ON extraction_runs (extractor, run_id);
    CREATE TABLE step_runs (
        run_id      INTEGER PRIMARY KEY,
        step        TEXT NOT NULL,
        status      TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        detail      TEXT,
        error       TEXT,
        pid         INTEGER
    );
    CREATE INDEX step_runs_by_step ON step_runs (step, run_id);
    CREATE VIEW runs AS
        SELECT 'extract-' || extractor AS step, run_id, status, started_at, finished_at,
               detail, error
          FROM extraction_runs
        UNION ALL
        SELECT step, run_id, status, started_at, finished_at, detail, error
          FROM step_runs;
    ",
    // 2: what a step's inputs were when it ran, so that a step can skip work when they did not
    // change since its last success (the transform's landing manifest and project files).
    r"
    ALTER TABLE step_runs ADD COLUMN input_fingerprint TEXT;
    ",
    // 3: digests of landing files as stored (gzip bytes), computed once: landing files never
    // change, and backup-sync compares them with the remote's on every push.
    r"
    CREATE TABLE file_digests (
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        md5 TEXT NOT NULL
    );
    ",
    // 4: release tags whose deploy failed; deploy-poll never tries them again.
    r"
    CREATE TABLE deploy_bad_tags (
        tag TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    );
    ",
    // 5: the oldest schema version whose binaries may still use this DB (see `compat`), so a
    // release rolled back past an additive migration keeps working.
    r"
    CREATE TABLE schema_compat (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        readable_by INTEGER NOT NULL
    );
    INSERT INTO schema_compat (id, readable_by) VALUES (1, 5);
    ",
    // 6: landing files an operator quarantined (`materia-status quarantine`): kept in the
    // landing store, skipped by the transform. A release sets `released_at` instead of deleting
    // the row, so the history stays. Additive: older binaries do not know the table and read
    // every file, as before.
    r"
    CREATE TABLE landing_quarantine (
        id             INTEGER PRIMARY KEY,
        dataset        TEXT NOT NULL,
        path           TEXT NOT NULL,
        sha256         TEXT NOT NULL,
        reason         TEXT NOT NULL,
        quarantined_at TEXT NOT NULL,
        released_at    TEXT,
        release_reason TEXT
    );
    CREATE UNIQUE INDEX landing_quarantine_held ON landing_quarantine (path)
        WHERE released_at IS NULL;
    ",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

impl Ledger {
    pub(crate) fn migrate(&self) -> Result<(), LedgerError> {
        let found = self.schema_version()?;
        if found > SCHEMA_VERSION && self.newer_schema_is_usable()? {
            return Ok(());
        }
        if found > SCHEMA_VERSION {
            return Err(LedgerError::TooNew {
                path: self.path.clone(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let to = i as i64 + 1;
            let apply = || -> rusqlite::Result<()> {
                // IMMEDIATE: two binaries starting at once cannot both apply the same migration;
                // the loser waits, then sees the new version and skips it.
                self.conn.execute_batch("BEGIN IMMEDIATE")?;
                let current: i64 = self
                    .conn
                    .query_row("PRAGMA user_version", [], |r| r.get(0))?;
                if current < to {
                    self.conn.execute_batch(migration)?;
                    self.conn
                        .execute_batch(&format!("PRAGMA user_version = {to}"))?;
                }
                self.conn.execute_batch("COMMIT")
            };
            if let Err(e) = apply() {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(self.sql(e));
            }
        }
        Ok(())
    }
}
