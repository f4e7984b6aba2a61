//! The Rust `duckdb` crate and the Python `duckdb` package that SQLMesh and the web app use must
//! be the same DuckDB release and read each other's files. Needs the project's virtualenv
//! (`make venv`; `MATERIA_VENV` names it).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use test_support::CommandExt;

use lakehouse::duckdb::Connection;

/// Bound on every child process of these tests: a hang fails the test instead of the run.
const CHILD_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

fn python() -> PathBuf {
    let venv = std::env::var_os("MATERIA_VENV")
        .map_or_else(|| test_support::repo_root().join(".venv"), PathBuf::from);
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "no virtualenv at {}: run `make venv`",
        venv.display()
    );
    python
}

fn py(script: &str, arg: &Path) -> String {
    let out = Command::new(python())
        .env_clear()
        .arg("-c")
        .arg(script)
        .arg(arg)
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn both_sides_link_the_same_duckdb_release() {
    let python_version = py("import duckdb; print(duckdb.__version__)", Path::new("-"));
    assert_eq!(
        format!("v{}", python_version.trim()),
        lakehouse::library_version().unwrap()
    );
}

#[test]
fn a_file_written_by_rust_opens_in_python() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from_rust.duckdb");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE SCHEMA serving;
         CREATE TABLE serving.t (code TEXT, country TEXT, year INTEGER, value DOUBLE);
         INSERT INTO serving.t VALUES ('0711100', 'NA', 2026, 1.5), ('028', 'KS', 1960, NULL);
         CHECKPOINT;",
    )
    .unwrap();
    drop(conn);
    let rows = py(
        "import duckdb, json, sys\nc = duckdb.connect(sys.argv[1], read_only=True)\nprint(json.dumps(c.sql('SELECT * FROM serving.t ORDER BY year').fetchall()))",
        &path,
    );
    let rows: serde_json::Value = serde_json::from_str(&rows).unwrap();
    assert_eq!(
        rows,
        serde_json::json!([["028", "KS", 1960, null], ["0711100", "NA", 2026, 1.5]])
    );
}

#[test]
fn a_file_written_by_python_opens_in_rust() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from_python.duckdb");
    py(
        "import duckdb, sys\nc = duckdb.connect(sys.argv[1])\nc.execute(\"CREATE TABLE t AS SELECT '0711100' AS code, 42::INTEGER AS year, 2.5::DOUBLE AS value\")\nc.execute('CHECKPOINT')\nc.close()",
        &path,
    );
    let conn = lakehouse::open_read_only(&path, std::time::Duration::ZERO).unwrap();
    let row: (String, i32, f64) = conn
        .query_row("SELECT code, year, value FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(row, ("0711100".to_owned(), 42, 2.5));
}
