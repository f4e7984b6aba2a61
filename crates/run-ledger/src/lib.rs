//! The run ledger: the SQLite state DB where every step records every run.
//!
//! `extraction_runs` holds extractor runs with their provenance (etag, sha256, path...);
//! `step_runs` holds every other step. The view `runs` unions both for status tools. A row is
//! inserted as `running` before work starts and updated once when it ends; a run killed in
//! between leaves `running`, which the next run of that step turns into `failed`
//! ("interrupted") while it holds the step's lock. Schema changes are migrations keyed on
//! `PRAGMA user_version`; no table is ever dropped.
//!
//! One module per concern: `migrations` (the schema), `runs` (every step's runs),
//! `digests` (backup-sync's landing-file MD5s), `deploys` (deploy-poll's bad tags),
//! `quarantine` (landing files an operator holds out of the transform).

mod deploys;

mod digests;

mod migrations;

mod quarantine;

mod runs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

pub use migrations::SCHEMA_VERSION;
pub use quarantine::{Quarantine, Quarantined};
pub use runs::{
    DETAIL_UPSTREAM, EXTRACTOR_PREFIX, INTERRUPTED, Landed, LastGood, RunId, RunOutcome, RunRow,
    RunStatus, StepSummary, dataset_of_step, extractor_step,
};

mod compat;

/// How long a writer waits for another connection's write transaction, in milliseconds.
pub const BUSY_TIMEOUT_MS: u64 = 10_000;

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

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every row `sql` returns for `params`, each made into a `T` by `row`.
    fn rows<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, LedgerError> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.sql(e))?;
        stmt.query_map(params, row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql(e))
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
mod tests;
