//! `backup-sync`: append-only backup of the landing store and the state DB through rclone, its
//! verification, and restore with every file checked against its content address.

mod limits;
mod rclone;
mod sync;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use step_runtime::{CommonArgs, env_vars};

/// Back up landing files and the state DB to R2 (append-only), verify the backup, or restore it
///
/// The remote is `r2:BUCKET/PREFIX` (credentials from R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY and
/// R2_ENDPOINT, handed to rclone through its environment only) or a local directory. Exit codes:
/// 0 ok; 1 failed or mismatches found; 2 usage; 75 another backup-sync is running.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(subcommand)]
    pub command: Cmd,

    /// Where backups go: r2:BUCKET/PREFIX or a local directory
    #[arg(long, global = true, env = env_vars::BACKUP_REMOTE, value_name = "REMOTE", default_value = "")]
    pub remote: String,

    /// The rclone executable
    #[arg(long, global = true, env = env_vars::MATERIA_RCLONE, value_name = "PATH", default_value = "rclone")]
    pub rclone: PathBuf,

    /// Bound on each rclone call, in seconds
    #[arg(long, global = true, env = env_vars::BACKUP_TIMEOUT_SECS, value_name = "SECS", default_value_t = limits::RCLONE_TIMEOUT_SECS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=limits::RCLONE_TIMEOUT_SECS_MAX))]
    pub timeout_secs: u64,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Upload every landing file not yet remote, and a snapshot of the state DB
    Push,
    /// Check that every local landing file is remote with identical content (downloads them)
    Verify,
    /// Download every landing file, and link into DIR (same layout) each that matches its name
    Restore {
        /// The landing directory to fill: empty, an earlier partial restore, or a live one
        #[arg(long, value_name = "DIR")]
        to: PathBuf,

        /// Cap on a restored file's decompressed CSV, in bytes, as extract-psd's (gzip bombs)
        #[arg(long, env = env_vars::PSD_MAX_CSV_BYTES, value_name = "BYTES",
              default_value_t = limits::CSV_BYTES_MAX_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
        max_csv_bytes: u64,
    },
}

fn main() -> ExitCode {
    let args: Args = match step_runtime::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    step_runtime::run_step(sync::STEP, &args.common, |ctx| sync::run(ctx, &args))
}
