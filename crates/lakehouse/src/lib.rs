//! Opening DuckDB files the way Materia's rules require.
//!
//! A DuckDB file opens read-write in one process or read-only in many, never both: while
//! SQLMesh writes the lakehouse, a reader's open fails with a lock error. [`open_read_only`]
//! retries such an open within a wait budget and reports a lock that outlived it distinctly, so
//! callers can exit 75 instead of 1.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use duckdb;
use duckdb::{AccessMode, Config, Connection};

/// Pause between two attempts to open a locked file.
pub const LOCK_RETRY_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path} does not exist")]
    Missing { path: PathBuf },
    #[error("{path} stayed locked by another process for {waited_secs}s: {source}")]
    Locked {
        path: PathBuf,
        waited_secs: u64,
        source: duckdb::Error,
    },
    #[error("cannot open {path}: {source}")]
    Other {
        path: PathBuf,
        source: duckdb::Error,
    },
}

/// The DuckDB library version this build links, e.g. `v1.5.6`.
pub fn library_version() -> Result<String, duckdb::Error> {
    Connection::open_in_memory()?.query_row(
        "SELECT library_version FROM pragma_version()",
        [],
        |r| r.get(0),
    )
}

/// True when `e` says another process holds the file's lock (DuckDB has no error code for it).
pub fn is_lock_error(e: &duckdb::Error) -> bool {
    let text = e.to_string();
    text.contains("Could not set lock") || text.contains("Conflicting lock")
}

/// Opens `path` read-only, retrying while another process holds its write lock, for at most
/// `wait`.
pub fn open_read_only(path: &Path, wait: Duration) -> Result<Connection, OpenError> {
    retry_while_locked(path, wait, || {
        let config = Config::default().access_mode(AccessMode::ReadOnly)?;
        Connection::open_with_flags(path, config)
    })
}

/// Runs `attempt` (an open or an `ATTACH` of `path`) until it succeeds, fails for another
/// reason than a lock held by another process, or `wait` has passed. A missing `path` is
/// reported as such and never created.
pub fn retry_while_locked<T>(
    path: &Path,
    wait: Duration,
    mut attempt: impl FnMut() -> Result<T, duckdb::Error>,
) -> Result<T, OpenError> {
    if !path.exists() {
        return Err(OpenError::Missing {
            path: path.to_path_buf(),
        });
    }
    let start = Instant::now();
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(e) if is_lock_error(&e) => {
                let remaining = wait.saturating_sub(start.elapsed());
                if remaining.is_zero() {
                    return Err(OpenError::Locked {
                        path: path.to_path_buf(),
                        waited_secs: start.elapsed().as_secs(),
                        source: e,
                    });
                }
                std::thread::sleep(remaining.min(LOCK_RETRY_INTERVAL));
            }
            Err(source) => {
                return Err(OpenError::Other {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_duckdb_1_5_6() {
        assert_eq!(library_version().unwrap(), "v1.5.6");
    }

    #[test]
    fn read_only_open_sees_committed_rows_and_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.duckdb");
        let rw = Connection::open(&path).unwrap();
        rw.execute_batch("CREATE TABLE t AS SELECT * FROM range(10) r(i); CHECKPOINT;")
            .unwrap();
        drop(rw);
        let ro = open_read_only(&path, Duration::ZERO).unwrap();
        let n: i64 = ro
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 10);
        assert!(ro.execute_batch("INSERT INTO t VALUES (1)").is_err());
    }

    #[test]
    fn missing_file_is_reported_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.duckdb");
        assert!(matches!(
            open_read_only(&path, Duration::ZERO),
            Err(OpenError::Missing { .. })
        ));
        assert!(!path.exists());
    }
}
