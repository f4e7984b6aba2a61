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

/// Source of the coffee prices CSV: an http(s) URL, a `file://` URL or a plain path. Default
/// FRED's `fredgraph.csv?id=<PRICES_SERIES>`.
pub const PRICES_URL: &str = "PRICES_URL";
/// The FRED series of the prices CSV, comma-separated. Default `PCOFFOTMUSDM,PCOFFROBUSDM`.
pub const PRICES_SERIES: &str = "PRICES_SERIES";
/// Cap on the prices CSV, in bytes. Default 16 MiB.
pub const PRICES_MAX_BYTES: &str = "PRICES_MAX_BYTES";
/// Bound on the whole prices download including retries, in seconds. Default 300.
pub const PRICES_TIMEOUT_SECS: &str = "PRICES_TIMEOUT_SECS";
/// How many times a failed prices attempt is retried (connection errors, 429, 5xx). Default 4.
pub const PRICES_RETRIES: &str = "PRICES_RETRIES";

/// The workflow registry `materia-status --due` reads. Default `workflows.toml` (relative to
/// the working directory: the repository or release root).
pub const MATERIA_WORKFLOWS: &str = "MATERIA_WORKFLOWS";

/// The SQLMesh project directory of the transform. Default `transform` (relative to the working
/// directory); production `/opt/materia/current/transform`.
pub const MATERIA_TRANSFORM_DIR: &str = "MATERIA_TRANSFORM_DIR";
/// The `sqlmesh` executable of the project's virtualenv. Default `.venv/bin/sqlmesh`.
pub const MATERIA_SQLMESH: &str = "MATERIA_SQLMESH";
/// Bound on each SQLMesh command the transform runs, in seconds. Default 3600.
pub const TRANSFORM_TIMEOUT_SECS: &str = "TRANSFORM_TIMEOUT_SECS";
/// Set by the transform for its SQLMesh project (read by `transform/config.py`): the landing
/// manifest of this cycle, a JSON file `{"<dataset>": ["/abs/path", ...]}` in landing order.
/// Unset (SQLMesh run by hand): `config.py` lists `LANDING_DIR` itself.
pub const MATERIA_LANDING_MANIFEST: &str = "MATERIA_LANDING_MANIFEST";
/// Set by the transform for its SQLMesh project (read by `transform/history.py`): a JSON file
/// `{"<dataset>": {"<sha256>": rows}}`, the rows each landing file landed with (the ledger's),
/// checked against the rows read before the history commits.
pub const MATERIA_LANDED_ROWS: &str = "MATERIA_LANDED_ROWS";
/// Set by the transform for its SQLMesh project (read by `transform/history.py`): the digest of
/// the project's files; a history built with another digest is rebuilt in full.
pub const MATERIA_PROJECT_DIGEST: &str = "MATERIA_PROJECT_DIGEST";
/// Set by the transform for its SQLMesh project (read by `transform/history.py`): `1` with
/// `--full-rebuild`, else `0`.
pub const MATERIA_FULL_REBUILD: &str = "MATERIA_FULL_REBUILD";
/// Fault injection for the transform's crash tests, passed through to its SQLMesh cycle when
/// set: the cycle kills itself with SIGKILL at the named point (`history-commit`, `plan`; see
/// `transform/history.py`). Never set in production.
pub const MATERIA_TEST_KILL_AT: &str = "MATERIA_TEST_KILL_AT";
/// Set by the transform for its SQLMesh project: SQLMesh's cache directory
/// (`<lakehouse dir>/.sqlmesh/cache`), so that a release directory can stay read-only.
pub const MATERIA_SQLMESH_CACHE_DIR: &str = "MATERIA_SQLMESH_CACHE_DIR";

/// Schema of the lakehouse that export-serving publishes. Default `serving`.
pub const SERVING_SCHEMA: &str = "SERVING_SCHEMA";
/// Previous serving generations export-serving keeps for rollback. Default 1.
pub const SERVING_KEEP: &str = "SERVING_KEEP";
/// How long export-serving waits for the lakehouse writer's lock, in seconds. Default 300.
pub const EXPORT_LOCK_WAIT_SECS: &str = "EXPORT_LOCK_WAIT_SECS";

/// backup-sync's remote: `r2:BUCKET/PREFIX` or a local directory.
pub const BACKUP_REMOTE: &str = "BACKUP_REMOTE";
/// The rclone executable backup-sync runs. Default `rclone` on PATH.
pub const MATERIA_RCLONE: &str = "MATERIA_RCLONE";
/// Bound on each rclone call of backup-sync, in seconds. Default 3600.
pub const BACKUP_TIMEOUT_SECS: &str = "BACKUP_TIMEOUT_SECS";
/// R2 credentials and endpoint (`https://<account>.r2.cloudflarestorage.com`) for `r2:` remotes;
/// handed to rclone only through its environment.
pub const R2_ACCESS_KEY_ID: &str = "R2_ACCESS_KEY_ID";
pub const R2_SECRET_ACCESS_KEY: &str = "R2_SECRET_ACCESS_KEY";
pub const R2_ENDPOINT: &str = "R2_ENDPOINT";

/// deploy-poll's root: `repo/`, `releases/<tag>/`, `current`. Default `/opt/materia`.
pub const MATERIA_ROOT: &str = "MATERIA_ROOT";
/// The sops executable deploy-poll decrypts `.env.prod.sops` with. Default `sops` on PATH.
pub const MATERIA_SOPS: &str = "MATERIA_SOPS";
/// deploy-poll deploys only SSH-signed tags when `true` (`--require-signed`); the shipped
/// materia-deploy.service sets it.
pub const MATERIA_REQUIRE_SIGNED: &str = "MATERIA_REQUIRE_SIGNED";
/// ssh-keygen allowed_signers file that release tags are verified against. Default
/// `/etc/materia/allowed_signers` (root-owned, written by setup_server.sh).
pub const MATERIA_ALLOWED_SIGNERS: &str = "MATERIA_ALLOWED_SIGNERS";
/// The server's age key for sops (read by sops itself).
pub const SOPS_AGE_KEY_FILE: &str = "SOPS_AGE_KEY_FILE";

/// materia-web's address, `ADDR:PORT`. Default `127.0.0.1:8080`; ignored under socket activation.
pub const MATERIA_WEB_LISTEN: &str = "MATERIA_WEB_LISTEN";
/// Age of the serving file past which materia-web's `/healthz` answers 503 `stale`. Default `45d`.
pub const MATERIA_WEB_MAX_SERVING_AGE: &str = "MATERIA_WEB_MAX_SERVING_AGE";
/// Connections materia-web serves at once; more are answered 503 with `Retry-After`. Default 512.
pub const MATERIA_WEB_MAX_CONNECTIONS: &str = "MATERIA_WEB_MAX_CONNECTIONS";
/// systemd socket activation (read by materia-web): how many sockets were passed from fd 3 on,
/// and the pid they are meant for.
pub const LISTEN_FDS: &str = "LISTEN_FDS";
pub const LISTEN_PID: &str = "LISTEN_PID";
