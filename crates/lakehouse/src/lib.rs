//! Opening DuckDB files the way Materia's rules require.
//!
//! A DuckDB file opens read-write in one process or read-only in many, never both: while
//! SQLMesh writes the lakehouse, a reader's open fails with a lock error. [`open_read_only`]
//! retries such an open within a wait budget and reports a lock that outlived it distinctly, so
//! callers can exit 75 instead of 1.
//!
//! It is also the one place that names the DuckDB release ([`DUCKDB_RELEASE`]) and checks, at
//! the start of every step that opens DuckDB files, that the library actually loaded is that
//! release ([`check_library`]): the Python side (SQLMesh) must read what the Rust side writes.

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

/// The DuckDB release Materia is built for: the Rust crate (`=1.10506.1`), the prebuilt library
/// (`third-party/duckdb.lock`) and the Python package SQLMesh uses (`duckdb==1.5.6` in
/// `transform/requirements.txt`). `tests/release.rs` checks that all of them agree.
pub const DUCKDB_RELEASE: &str = "v1.5.6";

/// The DuckDB library version this build links, e.g. `v1.5.6`.
pub fn library_version() -> Result<String, duckdb::Error> {
    Connection::open_in_memory()?.query_row(
        "SELECT library_version FROM pragma_version()",
        [],
        |r| r.get(0),
    )
}

/// The DuckDB library a process runs with cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error(
        "DuckDB library {library} is {found}, but this build needs {expected}, the release the \
         Python side (SQLMesh) uses; run the binaries with their own release's lib/libduckdb.so"
    )]
    Mismatch {
        library: String,
        found: String,
        expected: &'static str,
    },
    #[error("DuckDB library {library} does not answer its version: {source}")]
    Unusable {
        library: String,
        source: duckdb::Error,
    },
}

/// Checks that the DuckDB library this process loaded is [`DUCKDB_RELEASE`]. Steps that open
/// DuckDB files call it first and exit 2 on an error, which names both versions and the library.
pub fn check_library() -> Result<(), LibraryError> {
    let library = library_description();
    let found = library_version().map_err(|source| LibraryError::Unusable {
        library: library.clone(),
        source,
    })?;
    check_release(&found, library)
}

fn check_release(found: &str, library: String) -> Result<(), LibraryError> {
    if found == DUCKDB_RELEASE {
        Ok(())
    } else {
        Err(LibraryError::Mismatch {
            library,
            found: found.to_owned(),
            expected: DUCKDB_RELEASE,
        })
    }
}

/// Where the process's DuckDB comes from: the path of the `libduckdb` it mapped, or "compiled
/// into this binary" for a `bundled` build.
pub fn library_description() -> String {
    match loaded_library() {
        Some(path) => path.display().to_string(),
        None if cfg!(feature = "bundled") => "compiled into this binary".to_owned(),
        None => "(not found in /proc/self/maps)".to_owned(),
    }
}

/// The path of the shared `libduckdb` this process has mapped, read from `/proc/self/maps`.
pub fn loaded_library() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .map(Path::new)
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libduckdb"))
        })
        .map(Path::to_path_buf)
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
        check_library().unwrap();
    }

    #[test]
    fn another_release_is_refused_naming_both_versions_and_the_library() {
        let err = check_release("v1.4.2", "/srv/x/lib/libduckdb.so".to_owned()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "DuckDB library /srv/x/lib/libduckdb.so is v1.4.2, but this build needs v1.5.6, the \
             release the Python side (SQLMesh) uses; run the binaries with their own release's \
             lib/libduckdb.so"
        );
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
