//! The read side of the serving file: how readers follow the generations export-serving publishes.
//!
//! `export-serving` publishes each generation of the serving file by renaming a complete file
//! over `SERVING_DUCKDB_PATH`. A connection keeps reading the generation it opened (its file
//! stays alive while open, even once replaced), so a reader must notice the switch itself:
//! before each query [`ServingReader`] compares the path's (device, inode) with the file it has
//! open and reopens on change. One reader per thread: it owns one read-only connection, and its
//! methods take `&mut self`, so the compiler keeps a reader from being shared between threads.
//!
//! A server that answers many requests from the same data uses a [`Follower`] instead: it reads
//! each generation once, through one read-only connection, into data the caller prepares, and
//! shares that data with every thread as an `Arc`. A request that holds the `Arc` answers from
//! exactly one generation, and the generation it holds stays alive until the last such request
//! ends, however many generations are published meanwhile.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use lakehouse::OpenError;
pub use lakehouse::duckdb;
use lakehouse::duckdb::Connection;

/// The table every generation carries: one row per exported table.
pub const EXPORT_TABLE: &str = "_materia_export";
/// How often [`ServingReader::connection`] retries when the path changes between its checks
/// (a publication racing the open), before giving up.
pub const REOPEN_ATTEMPTS_MAX: u32 = 5;

/// Which file a path names: (device, inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(path: &Path) -> std::io::Result<FileId> {
        let meta = std::fs::metadata(path)?;
        Ok(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path} does not exist (has export-serving run?)")]
    Missing { path: PathBuf },
    #[error("cannot stat {path}: {source}")]
    Stat {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the serving file read-only: {0}")]
    Open(OpenError),
    #[error("{path} kept changing while being opened ({attempts} attempts)")]
    Unstable { path: PathBuf, attempts: u32 },
    #[error("query on {path} failed: {source}")]
    Query {
        path: PathBuf,
        source: duckdb::Error,
    },
    #[error("cannot prepare the generation in {path}: {source}")]
    Prepare { path: PathBuf, source: PrepareError },
    #[error("reading {path} took longer than {timeout_ms} ms and was interrupted")]
    TimedOut { path: PathBuf, timeout_ms: u128 },
    #[error("cannot start the thread that bounds the read of {path}: {source}")]
    Watchdog {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One exported table as recorded in the generation's `_materia_export`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedTable {
    pub table_name: String,
    pub row_count: u64,
}

/// A generation's record: when it was exported, from where, and the tables it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// `exported_at` as text, e.g. `2026-11-21 12:00:00.123`.
    pub exported_at: String,
    pub source_path: String,
    pub tables: Vec<ExportedTable>,
}

/// A per-thread reader of the serving file.
pub struct ServingReader {
    path: PathBuf,
    schema: String,
    open: Option<(FileId, Connection)>,
    reopens: u64,
}

impl ServingReader {
    /// A reader of `path`; nothing is opened until the first query.
    pub fn new(path: impl Into<PathBuf>) -> ServingReader {
        ServingReader {
            path: path.into(),
            schema: "serving".to_owned(),
            open: None,
            reopens: 0,
        }
    }

    /// The schema the generation's tables live in (default `serving`).
    pub fn with_schema(mut self, schema: &str) -> ServingReader {
        self.schema = schema.to_owned();
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many times the reader opened a file (the first open included).
    pub fn opens(&self) -> u64 {
        self.reopens
    }

    /// The identity of the file the open connection reads, if any.
    pub fn open_file(&self) -> Option<FileId> {
        self.open.as_ref().map(|(id, _)| *id)
    }

    /// The connection to the generation the path names now, reopened if it changed since the
    /// last call. Queries on it see one generation, whole, however long they run.
    pub fn connection(&mut self) -> Result<&Connection, ReadError> {
        let now = stat(&self.path)?;
        if self.open.as_ref().is_some_and(|(id, _)| *id == now) {
            return Ok(&self.open.as_ref().expect("checked above").1);
        }
        // Drop the old generation first: its file may already be unlinked, and holding it
        // keeps its disk space allocated.
        self.open = None;
        let (id, conn) = open_stable(&self.path, now)?;
        self.reopens += 1;
        self.open = Some((id, conn));
        Ok(&self.open.as_ref().expect("just set").1)
    }

    /// Runs `f` on the current generation's connection; a query error is reported with the path.
    pub fn with<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, duckdb::Error>,
    ) -> Result<T, ReadError> {
        let path = self.path.clone();
        let conn = self.connection()?;
        f(conn).map_err(|source| ReadError::Query { path, source })
    }

    /// The current generation's `_materia_export` rows. To compare them with the tables,
    /// query both inside one [`ServingReader::with`] using [`read_generation`]: two calls may
    /// see two generations.
    pub fn generation(&mut self) -> Result<Generation, ReadError> {
        let schema = self.schema.clone();
        self.with(|conn| read_generation(conn, &schema))
    }
}

/// Which file `path` names now; a missing path is [`ReadError::Missing`].
pub fn stat(path: &Path) -> Result<FileId, ReadError> {
    FileId::of(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ReadError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            ReadError::Stat {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Opens `path` read-only and returns the connection with the file it reads: the path named
/// the same file before and after the open (`before` is the caller's stat), so the connection
/// reads that file, not one a publication renamed over it meanwhile.
fn open_stable(path: &Path, mut before: FileId) -> Result<(FileId, Connection), ReadError> {
    for _ in 0..REOPEN_ATTEMPTS_MAX {
        let conn = lakehouse::open_read_only(path, Duration::ZERO).map_err(|e| match e {
            OpenError::Missing { path } => ReadError::Missing { path },
            other => ReadError::Open(other),
        })?;
        let after = stat(path)?;
        if after == before {
            return Ok((after, conn));
        }
        before = after;
    }
    Err(ReadError::Unstable {
        path: path.to_path_buf(),
        attempts: REOPEN_ATTEMPTS_MAX,
    })
}

/// One generation, read once: its file, its `_materia_export` record, and what the
/// [`Follower`]'s owner prepared from it.
#[derive(Debug)]
pub struct Prepared<T> {
    pub file: FileId,
    pub generation: Generation,
    /// When this process finished reading it.
    pub read_at: SystemTime,
    pub data: T,
}

/// Why a generation could not be prepared: a DuckDB error, or data the preparer refuses.
pub type PrepareError = Box<dyn std::error::Error + Send + Sync>;

/// How a [`Follower`] turns a generation into the data its readers share. Runs once per
/// generation, on a read-only connection to it.
pub type Prepare<T> =
    Box<dyn Fn(&Connection, &Generation) -> Result<T, PrepareError> + Send + Sync>;

/// The serving file for many threads: each generation is read once, through one read-only
/// connection, into a `T` that every thread shares (see the crate docs).
///
/// [`Follower::current`] never touches the file system; [`Follower::changed`] is one `stat`;
/// [`Follower::refresh`] reads the generation the path names now, if it is not the current one,
/// and swaps it in. The connection is closed once the generation is read: the shared data is
/// the generation from then on, and an unlinked file's space is not held. Readers never write
/// and never hold a lock that a writer waits for.
pub struct Follower<T> {
    path: PathBuf,
    schema: String,
    query_timeout: Duration,
    prepare: Prepare<T>,
    current: RwLock<Option<Arc<Prepared<T>>>>,
    /// One refresh at a time; a second caller waits for the first and then finds it current.
    refreshing: Mutex<()>,
}

impl<T> Follower<T> {
    /// A follower of `path`; nothing is read until the first [`Follower::refresh`]. Reading a
    /// generation (its record and `prepare`) is interrupted after `query_timeout`.
    pub fn new(path: impl Into<PathBuf>, query_timeout: Duration, prepare: Prepare<T>) -> Self {
        Follower {
            path: path.into(),
            schema: "serving".to_owned(),
            query_timeout,
            prepare,
            current: RwLock::new(None),
            refreshing: Mutex::new(()),
        }
    }

    /// The schema the generation's tables live in (default `serving`).
    pub fn with_schema(mut self, schema: &str) -> Self {
        self.schema = schema.to_owned();
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The generation in use, if one was read. Holding the `Arc` keeps it alive.
    pub fn current(&self) -> Option<Arc<Prepared<T>>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The file the path names now, when it is not the generation in use (`None`: up to date).
    pub fn changed(&self) -> Result<Option<FileId>, ReadError> {
        let now = stat(&self.path)?;
        let current = self.current();
        Ok((current.as_ref().map(|p| p.file) != Some(now)).then_some(now))
    }

    /// Makes the generation the path names now the current one, reading it if it is not
    /// already. Blocks while it reads; an error leaves the current generation as it was.
    pub fn refresh(&self) -> Result<Arc<Prepared<T>>, ReadError> {
        let _one_at_a_time = self
            .refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = stat(&self.path)?;
        if let Some(current) = self.current().filter(|c| c.file == now) {
            return Ok(current);
        }
        let (file, conn) = open_stable(&self.path, now)?;
        let (generation, data) = self.read(&conn)?;
        drop(conn);
        let prepared = Arc::new(Prepared {
            file,
            generation,
            read_at: SystemTime::now(),
            data,
        });
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(prepared.clone());
        Ok(prepared)
    }

    /// Reads the generation's record and prepares its data, interrupting DuckDB after the
    /// query time-out.
    fn read(&self, conn: &Connection) -> Result<(Generation, T), ReadError> {
        let interrupt = conn.interrupt_handle();
        let fired = Arc::new(AtomicBool::new(false));
        let (done, wait) = mpsc::channel::<()>();
        let watchdog = {
            let fired = fired.clone();
            let timeout = self.query_timeout;
            std::thread::Builder::new()
                .name("serving-read-watchdog".to_owned())
                .spawn(move || {
                    if let Err(RecvTimeoutError::Timeout) = wait.recv_timeout(timeout) {
                        fired.store(true, Ordering::SeqCst);
                        interrupt.interrupt();
                    }
                })
                .map_err(|source| ReadError::Watchdog {
                    path: self.path.clone(),
                    source,
                })?
        };
        let result = match read_generation(conn, &self.schema) {
            Ok(generation) => match (self.prepare)(conn, &generation) {
                Ok(data) => Ok((generation, data)),
                Err(source) => Err(ReadError::Prepare {
                    path: self.path.clone(),
                    source,
                }),
            },
            Err(source) => Err(ReadError::Query {
                path: self.path.clone(),
                source,
            }),
        };
        drop(done);
        let _ = watchdog.join();
        if fired.load(Ordering::SeqCst) && result.is_err() {
            return Err(ReadError::TimedOut {
                path: self.path.clone(),
                timeout_ms: self.query_timeout.as_millis(),
            });
        }
        result
    }
}

/// The `_materia_export` rows of the generation `conn` reads.
pub fn read_generation(conn: &Connection, schema: &str) -> Result<Generation, duckdb::Error> {
    let sql = format!(
        "SELECT CAST(exported_at AS VARCHAR), source_path, table_name, row_count
           FROM \"{}\".{EXPORT_TABLE} ORDER BY table_name",
        schema.replace('"', "\"\"")
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                ExportedTable {
                    table_name: r.get(2)?,
                    row_count: r.get::<_, i64>(3)? as u64,
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let (exported_at, source_path) = rows
        .first()
        .map(|(a, s, _)| (a.clone(), s.clone()))
        .unwrap_or_default();
    Ok(Generation {
        exported_at,
        source_path,
        tables: rows.into_iter().map(|(_, _, t)| t).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(dir: &Path, path: &Path, rows: u32) {
        let tmp = dir.join(format!("next-{rows}.duckdb"));
        let conn = Connection::open(&tmp).unwrap();
        conn.execute_batch(&format!(
            "CREATE SCHEMA serving;
             CREATE TABLE serving.t AS SELECT * FROM range({rows}) r(i);
             CREATE TABLE serving._materia_export AS SELECT TIMESTAMP '2026-11-21 12:00:00' AS exported_at,
                 'lake' AS source_path, 't' AS table_name, {rows}::BIGINT AS row_count;
             CHECKPOINT;"
        ))
        .unwrap();
        drop(conn);
        std::fs::rename(&tmp, path).unwrap();
    }

    fn count(reader: &mut ServingReader) -> i64 {
        reader
            .with(|c| c.query_row("SELECT count(*) FROM serving.t", [], |r| r.get(0)))
            .unwrap()
    }

    #[test]
    fn follows_a_rename_and_keeps_the_connection_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("analytics.duckdb");
        publish(dir.path(), &path, 3);
        let mut reader = ServingReader::new(&path);
        assert_eq!(count(&mut reader), 3);
        assert_eq!(count(&mut reader), 3);
        assert_eq!(reader.opens(), 1);
        publish(dir.path(), &path, 5);
        assert_eq!(count(&mut reader), 5);
        assert_eq!(reader.opens(), 2);
        assert_eq!(reader.open_file(), Some(FileId::of(&path).unwrap()));
        let generation = reader.generation().unwrap();
        assert_eq!(
            generation.tables,
            vec![ExportedTable {
                table_name: "t".into(),
                row_count: 5
            }]
        );
        assert_eq!(generation.source_path, "lake");
    }

    #[test]
    fn a_missing_file_is_a_clear_error_and_is_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("analytics.duckdb");
        let mut reader = ServingReader::new(&path);
        let err = reader.connection().err().unwrap();
        assert!(matches!(err, ReadError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(!path.exists());
    }

    fn follower(path: &Path, timeout: Duration) -> Follower<i64> {
        Follower::new(
            path,
            timeout,
            Box::new(|c, _| Ok(c.query_row("SELECT count(*) FROM serving.t", [], |r| r.get(0))?)),
        )
    }

    #[test]
    fn a_follower_reads_each_generation_once_and_old_ones_outlive_the_swap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("analytics.duckdb");
        let follower = follower(&path, Duration::from_secs(30));
        assert!(follower.current().is_none());
        assert!(matches!(
            follower.refresh().unwrap_err(),
            ReadError::Missing { .. }
        ));
        publish(dir.path(), &path, 3);
        assert_eq!(
            follower.changed().unwrap(),
            Some(FileId::of(&path).unwrap())
        );
        let first = follower.refresh().unwrap();
        assert_eq!(first.data, 3);
        assert_eq!(first.generation.tables[0].row_count, 3);
        assert_eq!(follower.changed().unwrap(), None);
        // Up to date: the same Arc, nothing read again.
        assert!(Arc::ptr_eq(&first, &follower.refresh().unwrap()));

        publish(dir.path(), &path, 5);
        assert!(follower.changed().unwrap().is_some());
        // Until a refresh, readers keep the generation in use.
        assert_eq!(follower.current().unwrap().data, 3);
        let second = follower.refresh().unwrap();
        assert_eq!(second.data, 5);
        assert_eq!(follower.current().unwrap().data, 5);
        // A request that took the first generation still answers from it, whole.
        assert_eq!(first.data, 3);
        assert_ne!(first.file, second.file);
    }

    #[test]
    fn an_unreadable_generation_is_an_error_and_the_current_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("analytics.duckdb");
        publish(dir.path(), &path, 2);
        let follower = follower(&path, Duration::from_secs(30));
        follower.refresh().unwrap();
        let junk = dir.path().join("junk.duckdb");
        std::fs::write(&junk, b"not a duckdb file at all").unwrap();
        std::fs::rename(&junk, &path).unwrap();
        let err = follower.refresh().unwrap_err();
        assert!(matches!(err, ReadError::Open(_)), "{err}");
        assert_eq!(follower.current().unwrap().data, 2);
        assert!(follower.changed().unwrap().is_some());
    }

    #[test]
    fn a_read_that_outlives_the_query_timeout_is_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("analytics.duckdb");
        publish(dir.path(), &path, 1);
        let follower: Follower<i64> = Follower::new(
            &path,
            Duration::from_millis(200),
            Box::new(|c, _| {
                Ok(c.query_row(
                    "SELECT count(*) FROM range(100000000) a, range(100000000) b",
                    [],
                    |r| r.get(0),
                )?)
            }),
        );
        let err = follower.refresh().unwrap_err();
        assert!(matches!(err, ReadError::TimedOut { .. }), "{err}");
        assert!(err.to_string().contains("200 ms"), "{err}");
        assert!(follower.current().is_none());
    }

    #[test]
    fn the_connection_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("analytics.duckdb");
        publish(dir.path(), &path, 1);
        let mut reader = ServingReader::new(&path);
        let err = reader
            .with(|c| c.execute_batch("CREATE TABLE serving.x (i INTEGER)"))
            .unwrap_err();
        assert!(err.to_string().contains("read-only"), "{err}");
    }
}
