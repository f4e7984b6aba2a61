//! `export-serving`: copies the lakehouse's serving schema into a new DuckDB file and publishes
//! it over `SERVING_DUCKDB_PATH` by one rename, so readers never see a torn or locked file.

mod export;
mod fingerprint;
mod generations;
mod limits;
mod schema;

use std::process::ExitCode;

use clap::Parser;
use step_runtime::{CommonArgs, env_vars};

/// Publish the lakehouse's serving tables as a new read-only DuckDB file, atomically
///
/// Copies every table and view of the schema into a new file beside the serving path (views
/// become tables), adds `<schema>._materia_export`, checkpoints, fsyncs, reopens it read-only to
/// check row counts, then renames it over the serving path. When the published file already
/// holds the same content (fingerprint in `_materia_export`), it is kept as it is. Exit codes: 0
/// exported or unchanged; 1 failed (nothing published); 2 usage; 75 the step or the lakehouse
/// stayed locked.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Schema of the lakehouse to publish (the same schema name in the serving file)
    #[arg(long, env = env_vars::SERVING_SCHEMA, value_name = "NAME", default_value = "serving",
          value_parser = schema::parse_identifier)]
    pub schema: String,

    /// Previous generations kept for rollback beside the serving file
    #[arg(long, env = env_vars::SERVING_KEEP, value_name = "N", default_value_t = limits::KEEP_DEFAULT,
          value_parser = clap::value_parser!(u32).range(0..=limits::KEEP_MAX as i64))]
    pub keep: u32,

    /// Publish even when a table or column of the published file would vanish
    #[arg(long)]
    pub allow_breaking: bool,

    /// How long to wait for the lakehouse while a writer (SQLMesh) holds it, in seconds
    #[arg(long, env = env_vars::EXPORT_LOCK_WAIT_SECS, value_name = "SECS", default_value_t = limits::LOCK_WAIT_SECS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(0..=limits::LOCK_WAIT_SECS_MAX))]
    pub lock_wait_secs: u64,
}

fn main() -> ExitCode {
    let args: Args = match step_runtime::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    step_runtime::run_step(export::STEP, &args.common, |ctx| export::run(ctx, &args))
}
