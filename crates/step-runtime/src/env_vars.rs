//! Every environment variable a Materia binary reads, one documented constant each.
//!
//! A flag always beats its variable. An empty variable counts as unset, so a
//! `KEY=` line in an env file does not silently become an empty path.

/// Root of the immutable landing store. Default `data/landing`; production `/data/materia/landing`.
pub const LANDING_DIR: &str = "LANDING_DIR";
/// SQLite run ledger shared by every step. Default `$LANDING_DIR/.state.sqlite`.
pub const STATE_DB: &str = "STATE_DB";
/// The lakehouse DuckDB file that SQLMesh writes. Default `data/lakehouse.duckdb`.
pub const DUCKDB_PATH: &str = "DUCKDB_PATH";
/// The published, read-only serving DuckDB file. Default `data/analytics.duckdb`.
pub const SERVING_DUCKDB_PATH: &str = "SERVING_DUCKDB_PATH";
/// node_exporter textfile collector directory. Unset: no metrics are written.
pub const METRICS_DIR: &str = "METRICS_DIR";
/// Log level on stderr: `error`, `warn`, `info` (default) or `debug`.
pub const MATERIA_LOG: &str = "MATERIA_LOG";
/// Any non-empty value turns off colour on a terminal (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";

/// Source of the PSD bulk zip: an http(s) URL, a `file://` URL or a plain path.
pub const PSD_URL: &str = "PSD_URL";
/// Cap on the decompressed CSV, in bytes. Default 4 GiB.
pub const PSD_MAX_CSV_BYTES: &str = "PSD_MAX_CSV_BYTES";
/// Bound on the whole download including retries, in seconds. Default 900.
pub const PSD_TIMEOUT_SECS: &str = "PSD_TIMEOUT_SECS";
/// How many times a failed attempt is retried (connection errors, 429, 5xx). Default 4.
pub const PSD_RETRIES: &str = "PSD_RETRIES";

/// The SQLMesh project directory of the transform. Default `transform` (relative to the working
/// directory); production `/opt/materia/current/transform`.
pub const MATERIA_TRANSFORM_DIR: &str = "MATERIA_TRANSFORM_DIR";
/// The `sqlmesh` executable of the project's virtualenv. Default `.venv/bin/sqlmesh`.
pub const MATERIA_SQLMESH: &str = "MATERIA_SQLMESH";
/// Bound on each SQLMesh command the transform runs, in seconds. Default 3600.
pub const TRANSFORM_TIMEOUT_SECS: &str = "TRANSFORM_TIMEOUT_SECS";

/// Schema of the lakehouse that export-serving publishes. Default `serving`.
pub const SERVING_SCHEMA: &str = "SERVING_SCHEMA";
/// Previous serving generations export-serving keeps for rollback. Default 1.
pub const SERVING_KEEP: &str = "SERVING_KEEP";
/// How long export-serving waits for the lakehouse writer's lock, in seconds. Default 300.
pub const EXPORT_LOCK_WAIT_SECS: &str = "EXPORT_LOCK_WAIT_SECS";
