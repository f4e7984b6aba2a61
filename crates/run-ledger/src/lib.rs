//! The run ledger: the SQLite state DB where every step records every run.
//!
//! `extraction_runs` holds extractor runs with their provenance (etag, sha256, path...);
//! `step_runs` holds every other step. The view `runs` unions both for status tools. A row is
//! inserted as `running` before work starts and updated once when it ends; a run killed in
//! between leaves `running`, which the next run of that step turns into `failed`
//! ("interrupted") while it holds the step's lock. Schema changes are migrations keyed on
//! `PRAGMA user_version`; no table is ever dropped.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

mod compat;

/// How long a writer waits for another connection's write transaction, in milliseconds.
pub const BUSY_TIMEOUT_MS: u64 = 10_000;

/// The message written into rows of runs that died while `running`.
pub const INTERRUPTED: &str =
    "interrupted: the run ended without recording an outcome (killed, crashed or lost power)";

/// Migration `i` brings the schema from version `i` to `i + 1`. Append only; never edit one.
const MIGRATIONS: &[&str] = &[
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
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("no state DB at {path}: no step has run with this STATE_DB")]
    Missing { path: PathBuf },
    #[error("cannot open state DB {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create directory {path} for the state DB: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "state DB {path} has schema version {found}, newer than the {supported} this binary knows; run a newer release"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("state DB {path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// The status of a run, as stored in the `status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Success,
    Unchanged,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Unchanged => "unchanged",
            RunStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of an extraction, written when it ends.
#[derive(Debug, Clone, Default)]
pub struct ExtractionOutcome {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub sha256: Option<String>,
    /// Landing path relative to `LANDING_DIR`.
    pub path: Option<String>,
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
    pub error: Option<String>,
    pub detail: Option<String>,
}

/// The validators and content of the last run that reached upstream successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastGood {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub sha256: Option<String>,
    pub path: Option<String>,
}

/// How a non-extractor run ended, written when it ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepOutcome<'a> {
    pub detail: Option<&'a str>,
    pub error: Option<&'a str>,
    /// What the step's inputs were (see [`Ledger::last_good_fingerprint`]).
    pub input_fingerprint: Option<&'a str>,
}

/// The latest run of a step and its latest good one, for status displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSummary {
    /// As in the `runs` view: `extract-psd`, `transform`, `export-serving`, ...
    pub step: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    /// When the newest run that ended `success` or `unchanged` finished.
    pub last_success_at: Option<String>,
}

/// One row of the `runs` view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub step: String,
    pub run_id: i64,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub detail: Option<String>,
    pub error: Option<String>,
}

pub struct Ledger {
    conn: Connection,
    path: PathBuf,
}

impl Ledger {
    /// Opens (creating if needed) the state DB and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| LedgerError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| LedgerError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let ledger = Ledger {
            conn,
            path: path.to_path_buf(),
        };
        ledger.configure().map_err(|e| ledger.sql(e))?;
        ledger.migrate()?;
        Ok(ledger)
    }

    /// Opens an existing state DB for reading only (status tools): never creates or migrates
    /// it, and refuses a schema newer than this build knows.
    ///
    /// A WAL database is read through its `-shm` index, which the first reader creates. A
    /// reader that may not write the directory (the web unit reads `/data/materia` read-only)
    /// cannot create it, and SQLite then refuses the read. When that happens and no `-wal`
    /// file exists, every committed row is in the main file, so it is read as an immutable
    /// file instead: no lock, no `-shm`. A write that lands during such a read may be missed
    /// or, while a checkpoint rewrites pages, be reported as an error; a status display reads
    /// again on its next request.
    pub fn open_read_only(path: &Path) -> Result<Ledger, LedgerError> {
        if !path.is_file() {
            return Err(LedgerError::Missing {
                path: path.to_path_buf(),
            });
        }
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        match Ledger::open_read_only_with(path, path, flags) {
            Err(LedgerError::Sql { source, .. } | LedgerError::Open { source, .. })
                if cannot_create_shm(&source) && !wal_path(path).exists() =>
            {
                Ledger::open_read_only_with(
                    path,
                    Path::new(&immutable_uri(path)),
                    flags | rusqlite::OpenFlags::SQLITE_OPEN_URI,
                )
            }
            other => other,
        }
    }

    /// Opens `name` (the path, or a URI for it) with `flags`; errors name `path`.
    fn open_read_only_with(
        path: &Path,
        name: &Path,
        flags: rusqlite::OpenFlags,
    ) -> Result<Ledger, LedgerError> {
        let conn =
            Connection::open_with_flags(name, flags).map_err(|source| LedgerError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let ledger = Ledger {
            conn,
            path: path.to_path_buf(),
        };
        ledger
            .conn
            .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
            .map_err(|e| ledger.sql(e))?;
        let found = ledger.schema_version()?;
        if found > SCHEMA_VERSION && !ledger.newer_schema_is_usable()? {
            return Err(LedgerError::TooNew {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(ledger)
    }

    /// Every step that has run, with its latest run and latest success, by step name.
    pub fn step_summaries(&self) -> Result<Vec<StepSummary>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(
                "WITH ranked AS (
                     SELECT step, status, started_at, finished_at, error,
                            row_number() OVER (PARTITION BY step ORDER BY started_at DESC, run_id DESC) AS rn
                       FROM runs),
                 good AS (
                     SELECT step, max(finished_at) AS last_success_at FROM runs
                      WHERE status IN ('success', 'unchanged') GROUP BY step)
                 SELECT r.step, r.status, r.started_at, r.finished_at, r.error, g.last_success_at
                   FROM ranked r LEFT JOIN good g ON g.step = r.step
                  WHERE r.rn = 1 ORDER BY r.step",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StepSummary {
                    step: r.get(0)?,
                    status: r.get(1)?,
                    started_at: r.get(2)?,
                    finished_at: r.get(3)?,
                    error: r.get(4)?,
                    last_success_at: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.sql(e))?;
        Ok(rows)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    fn configure(&self) -> rusqlite::Result<()> {
        self.conn
            .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
        // WAL: status readers never block a step that is writing its row. FULL: a row that was
        // reported written survives a power cut.
        let _mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        self.conn.execute_batch("PRAGMA synchronous = FULL;")?;
        Ok(())
    }

    pub fn schema_version(&self) -> Result<i64, LedgerError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.sql(e))
    }

    fn migrate(&self) -> Result<(), LedgerError> {
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

    /// Marks `running` extraction rows of `extractor` as failed. Call only while holding the
    /// step's lock: then no such row can belong to a live run.
    pub fn interrupt_stale_extractions(
        &self,
        extractor: &str,
        now: &str,
    ) -> Result<usize, LedgerError> {
        self.conn
            .execute(
                "UPDATE extraction_runs SET status = 'failed', finished_at = ?1, error = ?2
                  WHERE extractor = ?3 AND status = 'running'",
                params![now, INTERRUPTED, extractor],
            )
            .map_err(|e| self.sql(e))
    }

    pub fn begin_extraction(&self, extractor: &str, started_at: &str) -> Result<i64, LedgerError> {
        self.conn
            .execute(
                "INSERT INTO extraction_runs (extractor, status, started_at, pid)
                 VALUES (?1, 'running', ?2, ?3)",
                params![extractor, started_at, std::process::id()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_extraction(
        &self,
        run_id: i64,
        status: RunStatus,
        finished_at: &str,
        outcome: &ExtractionOutcome,
    ) -> Result<(), LedgerError> {
        assert_ne!(
            status,
            RunStatus::Running,
            "a finished run cannot be running"
        );
        let updated = self
            .conn
            .execute(
                "UPDATE extraction_runs
                    SET status = ?2, finished_at = ?3, etag = ?4, last_modified = ?5,
                        sha256 = ?6, path = ?7, rows = ?8, bytes = ?9, error = ?10, detail = ?11
                  WHERE run_id = ?1",
                params![
                    run_id,
                    status.as_str(),
                    finished_at,
                    outcome.etag,
                    outcome.last_modified,
                    outcome.sha256,
                    outcome.path,
                    outcome.rows.map(|v| v as i64),
                    outcome.bytes.map(|v| v as i64),
                    outcome.error,
                    outcome.detail,
                ],
            )
            .map_err(|e| self.sql(e))?;
        assert_eq!(updated, 1, "run {run_id} must exist");
        Ok(())
    }

    /// The most recent run of `extractor` that reached upstream (status success or unchanged).
    pub fn last_good_extraction(&self, extractor: &str) -> Result<Option<LastGood>, LedgerError> {
        self.conn
            .query_row(
                "SELECT etag, last_modified, sha256, path FROM extraction_runs
                  WHERE extractor = ?1 AND status IN ('success', 'unchanged')
                  ORDER BY run_id DESC LIMIT 1",
                params![extractor],
                |r| {
                    Ok(LastGood {
                        etag: r.get(0)?,
                        last_modified: r.get(1)?,
                        sha256: r.get(2)?,
                        path: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Marks `running` rows of a non-extractor step as failed; same rule as for extractions.
    pub fn interrupt_stale_steps(&self, step: &str, now: &str) -> Result<usize, LedgerError> {
        self.conn
            .execute(
                "UPDATE step_runs SET status = 'failed', finished_at = ?1, error = ?2
                  WHERE step = ?3 AND status = 'running'",
                params![now, INTERRUPTED, step],
            )
            .map_err(|e| self.sql(e))
    }

    pub fn begin_step(&self, step: &str, started_at: &str) -> Result<i64, LedgerError> {
        self.conn
            .execute(
                "INSERT INTO step_runs (step, status, started_at, pid) VALUES (?1, 'running', ?2, ?3)",
                params![step, started_at, std::process::id()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_step(
        &self,
        run_id: i64,
        status: RunStatus,
        finished_at: &str,
        outcome: &StepOutcome<'_>,
    ) -> Result<(), LedgerError> {
        assert_ne!(
            status,
            RunStatus::Running,
            "a finished run cannot be running"
        );
        let updated = self
            .conn
            .execute(
                "UPDATE step_runs
                    SET status = ?2, finished_at = ?3, detail = ?4, error = ?5, input_fingerprint = ?6
                  WHERE run_id = ?1",
                params![
                    run_id,
                    status.as_str(),
                    finished_at,
                    outcome.detail,
                    outcome.error,
                    outcome.input_fingerprint
                ],
            )
            .map_err(|e| self.sql(e))?;
        assert_eq!(updated, 1, "run {run_id} must exist");
        Ok(())
    }

    /// The input fingerprint of the last run of `step` that succeeded or found nothing to do.
    pub fn last_good_fingerprint(&self, step: &str) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row(
                "SELECT input_fingerprint FROM step_runs
                  WHERE step = ?1 AND status IN ('success', 'unchanged')
                  ORDER BY run_id DESC LIMIT 1",
                params![step],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.sql(e))
    }

    /// Data rows of every file `extractor` landed, by content address.
    pub fn landed_rows(&self, extractor: &str) -> Result<Vec<(String, u64)>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT sha256, max(rows) FROM extraction_runs
                  WHERE extractor = ?1 AND status = 'success' AND sha256 IS NOT NULL AND rows IS NOT NULL
                  GROUP BY sha256",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![extractor], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.sql(e))?;
        Ok(rows)
    }

    /// The MD5 of a landing file (relative path) recorded when it had `size` bytes.
    pub fn file_md5(&self, path: &str, size: u64) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row(
                "SELECT md5 FROM file_digests WHERE path = ?1 AND size = ?2",
                params![path, size as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    pub fn record_file_md5(&self, path: &str, size: u64, md5: &str) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO file_digests (path, size, md5) VALUES (?1, ?2, ?3)",
                params![path, size as i64, md5],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// Remembers that deploying `tag` failed, for good.
    pub fn mark_bad_tag(&self, tag: &str, reason: &str, at: &str) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO deploy_bad_tags (tag, reason, recorded_at) VALUES (?1, ?2, ?3)",
                params![tag, reason, at],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// Every tag recorded as bad.
    pub fn bad_tags(&self) -> Result<Vec<String>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT tag FROM deploy_bad_tags ORDER BY tag")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
            .map_err(|e| self.sql(e))?;
        Ok(rows)
    }

    /// A consistent copy of the whole DB at `dest` through SQLite's online backup API (never a
    /// raw copy of a live file), while steps may be writing.
    pub fn snapshot_to(&self, dest: &Path) -> Result<(), LedgerError> {
        let mut out = Connection::open(dest).map_err(|source| LedgerError::Open {
            path: dest.to_path_buf(),
            source,
        })?;
        let backup =
            rusqlite::backup::Backup::new(&self.conn, &mut out).map_err(|e| self.sql(e))?;
        backup
            .run_to_completion(256, Duration::from_millis(5), None)
            .map_err(|e| self.sql(e))?;
        drop(backup);
        out.execute_batch("PRAGMA journal_mode = DELETE;")
            .map_err(|e| self.sql(e))?;
        out.close().map_err(|(_, e)| self.sql(e))
    }

    /// The newest `limit` rows of the `runs` view, newest first by start time.
    pub fn recent_runs(&self, limit: u32) -> Result<Vec<RunRow>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT step, run_id, status, started_at, finished_at, detail, error FROM runs
                  ORDER BY started_at DESC, run_id DESC LIMIT ?1",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![limit], |r| {
                Ok(RunRow {
                    step: r.get(0)?,
                    run_id: r.get(1)?,
                    status: r.get(2)?,
                    started_at: r.get(3)?,
                    finished_at: r.get(4)?,
                    detail: r.get(5)?,
                    error: r.get(6)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.sql(e))?;
        Ok(rows)
    }
}

/// `<db>-wal`, the write-ahead log beside a WAL database.
fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// True for SQLite's refusal to read a WAL database whose `-shm` it may not create.
fn cannot_create_shm(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen)
    )
}

/// An SQLite URI naming `path` read-only and immutable, with the characters URIs reserve
/// escaped.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                uri.push(char::from(*b));
            }
            _ => uri.push_str(&format!("%{b:02X}")),
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

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
            .begin_extraction("psd", "2026-11-01T00:00:00.000Z")
            .unwrap();
        assert_eq!(
            ledger
                .interrupt_stale_extractions("psd", "2026-11-02T00:00:00.000Z")
                .unwrap(),
            1
        );
        let ok = ledger
            .begin_extraction("psd", "2026-11-02T00:00:01.000Z")
            .unwrap();
        let outcome = ExtractionOutcome {
            etag: Some("\"abc\"".into()),
            sha256: Some("00".repeat(32)),
            ..Default::default()
        };
        ledger
            .finish_extraction(ok, RunStatus::Success, "2026-11-02T00:00:02.000Z", &outcome)
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
                [dead],
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
            .begin_step("export-serving", "2026-11-02T00:00:00.000Z")
            .unwrap();
        let failed = StepOutcome {
            error: Some("boom"),
            input_fingerprint: Some("f1"),
            ..Default::default()
        };
        ledger
            .finish_step(id, RunStatus::Failed, "2026-11-02T00:00:01.000Z", &failed)
            .unwrap();
        assert_eq!(
            ledger.last_good_fingerprint("export-serving").unwrap(),
            None,
            "failed runs do not count"
        );
        let ok = ledger
            .begin_step("export-serving", "2026-11-02T00:00:02.000Z")
            .unwrap();
        let good = StepOutcome {
            input_fingerprint: Some("f2"),
            ..Default::default()
        };
        ledger
            .finish_step(ok, RunStatus::Success, "2026-11-02T00:00:03.000Z", &good)
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
            .begin_extraction("psd", "2026-11-03T00:00:00.000Z")
            .unwrap();
        let runs = ledger.recent_runs(10).unwrap();
        assert_eq!(runs.len(), 3);
        assert_eq!(
            (
                runs[0].step.as_str(),
                runs[0].run_id,
                runs[0].status.as_str()
            ),
            ("extract-psd", x, "running")
        );
        assert_eq!(runs[2].step, "export-serving");
        assert_eq!(runs[2].error.as_deref(), Some("boom"));
        assert_eq!(
            ledger.interrupt_stale_steps("export-serving", "t").unwrap(),
            0
        );
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
        let id = ledger.begin_step("backup-sync", "t").unwrap();
        let snap = dir.path().join("snap.sqlite");
        ledger.snapshot_to(&snap).unwrap();
        let copy = Ledger::open_read_only(&snap).unwrap();
        assert_eq!(copy.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(copy.recent_runs(5).unwrap()[0].run_id, id);
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
            .begin_step("transform", "2026-11-02T00:00:00.000Z")
            .unwrap();
        ledger
            .finish_step(
                ok,
                RunStatus::Success,
                "2026-11-02T00:00:09.000Z",
                &StepOutcome::default(),
            )
            .unwrap();
        let bad = ledger
            .begin_step("transform", "2026-11-03T00:00:00.000Z")
            .unwrap();
        let failed = StepOutcome {
            error: Some("boom"),
            ..Default::default()
        };
        ledger
            .finish_step(bad, RunStatus::Failed, "2026-11-03T00:00:01.000Z", &failed)
            .unwrap();
        let x = ledger
            .begin_extraction("psd", "2026-11-01T00:00:00.000Z")
            .unwrap();
        ledger
            .finish_extraction(
                x,
                RunStatus::Unchanged,
                "2026-11-01T00:00:02.000Z",
                &ExtractionOutcome::default(),
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
        assert!(ro.begin_step("transform", "t").is_err(), "read-only");
    }

    #[test]
    fn landed_rows_come_from_successful_extractions() {
        let (_dir, ledger) = open_temp();
        let a = ledger.begin_extraction("psd", "t1").unwrap();
        let outcome = ExtractionOutcome {
            sha256: Some("aa".into()),
            rows: Some(7),
            ..Default::default()
        };
        ledger
            .finish_extraction(a, RunStatus::Success, "t2", &outcome)
            .unwrap();
        let b = ledger.begin_extraction("psd", "t3").unwrap();
        let dup = ExtractionOutcome {
            sha256: Some("aa".into()),
            rows: Some(7),
            ..Default::default()
        };
        ledger
            .finish_extraction(b, RunStatus::Unchanged, "t4", &dup)
            .unwrap();
        assert_eq!(
            ledger.landed_rows("psd").unwrap(),
            vec![("aa".to_owned(), 7)]
        );
    }
}
