//! The read side of the serving contract (docs/INTERFACES.md section 5).
//!
//! `export-serving` publishes each generation of the serving file by renaming a complete file
//! over `SERVING_DUCKDB_PATH`. A connection keeps reading the generation it opened (its file
//! stays alive while open, even once replaced), so a reader must notice the switch itself:
//! before each query [`ServingReader`] compares the path's (device, inode) with the file it has
//! open and reopens on change. One reader per thread: it owns one read-only connection, and its
//! methods take `&mut self`, so the compiler keeps a reader from being shared between threads.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

    fn stat(&self) -> Result<FileId, ReadError> {
        FileId::of(&self.path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ReadError::Missing {
                    path: self.path.clone(),
                }
            } else {
                ReadError::Stat {
                    path: self.path.clone(),
                    source,
                }
            }
        })
    }

    /// The connection to the generation the path names now, reopened if it changed since the
    /// last call. Queries on it see one generation, whole, however long they run.
    pub fn connection(&mut self) -> Result<&Connection, ReadError> {
        let now = self.stat()?;
        if self.open.as_ref().is_some_and(|(id, _)| *id == now) {
            return Ok(&self.open.as_ref().expect("checked above").1);
        }
        // Drop the old generation first: its file may already be unlinked, and holding it
        // keeps its disk space allocated.
        self.open = None;
        let mut before = now;
        for _ in 0..REOPEN_ATTEMPTS_MAX {
            let conn =
                lakehouse::open_read_only(&self.path, Duration::ZERO).map_err(|e| match e {
                    OpenError::Missing { path } => ReadError::Missing { path },
                    other => ReadError::Open(other),
                })?;
            // The path names the same file before and after the open: the connection reads it.
            let after = self.stat()?;
            if after == before {
                self.reopens += 1;
                self.open = Some((after, conn));
                return Ok(&self.open.as_ref().expect("just set").1);
            }
            before = after;
        }
        Err(ReadError::Unstable {
            path: self.path.clone(),
            attempts: REOPEN_ATTEMPTS_MAX,
        })
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
