//! `transform`: builds the lakehouse from the landing files by running the SQLMesh project:
//! incrementally (the new files only) when its history can be trusted, else in full.

mod audit;
mod fingerprint;
mod limits;
mod manifest;
mod sqlmesh;
mod step;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use step_runtime::{CommonArgs, env_vars};

/// Build lakehouse.duckdb from the landing files with SQLMesh (history -> cleaned -> serving)
///
/// When a landing file or a project file changed since the last successful run, appends the new
/// landing files to the history (or rebuilds it from every file when it cannot be trusted), then
/// runs SQLMesh (`plan --auto-apply`, then `janitor`, via the project's cycle.py), and nothing
/// otherwise; then checks every landing file's rows against the ledger. Exit codes: 0
/// transformed or unchanged; 1 failed; 2 usage; 75 locked.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// The SQLMesh project directory
    #[arg(long, env = env_vars::MATERIA_TRANSFORM_DIR, value_name = "DIR", default_value = "transform")]
    pub project: PathBuf,

    /// The sqlmesh executable of the project's virtualenv (the cycle runs with the python beside it)
    #[arg(long, env = env_vars::MATERIA_SQLMESH, value_name = "PATH", default_value = ".venv/bin/sqlmesh")]
    pub sqlmesh: PathBuf,

    /// Bound on each SQLMesh command, in seconds
    #[arg(long, env = env_vars::TRANSFORM_TIMEOUT_SECS, value_name = "SECS", default_value_t = limits::SQLMESH_TIMEOUT_SECS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=limits::SQLMESH_TIMEOUT_SECS_MAX))]
    pub timeout_secs: u64,

    /// Run SQLMesh even when no landing file and no project file changed
    #[arg(long)]
    pub force: bool,

    /// Rebuild the history and serving from every landing file, even when nothing changed
    #[arg(long)]
    pub full_rebuild: bool,
}

fn main() -> ExitCode {
    let args: Args = match step_runtime::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    step_runtime::run_step(step::STEP, &args.common, |ctx| step::run(ctx, &args))
}
