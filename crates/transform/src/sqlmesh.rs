//! Running SQLMesh as a child process: a chosen environment (nothing inherited by accident), a
//! time bound, its output forwarded to our stderr line by line, and its last lines kept for
//! the error message.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, anyhow};
use step_runtime::child::{self, Options, Stdout};
use step_runtime::env_vars;

use crate::limits::TAIL_LINES_MAX;

/// Paths SQLMesh is run with; all absolute.
pub struct Invocation<'a> {
    pub sqlmesh: &'a Path,
    pub project: &'a Path,
    pub landing_dir: &'a Path,
    /// The landing manifest this cycle builds from (see `manifest.rs`).
    pub manifest: &'a Path,
    /// The rows each landing file landed with, by dataset and sha256 (the ledger's), for the
    /// history's row check before it commits.
    pub landed_rows: &'a Path,
    /// Digest of the project's files: a history built with another is rebuilt in full.
    pub project_digest: &'a str,
    /// `--full-rebuild`.
    pub full_rebuild: bool,
    /// Where cycle.py writes what the history did (`Cycle`).
    pub result: &'a Path,
    pub lakehouse: &'a Path,
    /// SQLMesh's cache and log files, kept out of the (possibly read-only) project directory.
    pub work_dir: &'a Path,
    pub timeout: Duration,
}

/// What a cycle did with the history (cycle.py's result file).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Cycle {
    /// `incremental` or `full`.
    pub mode: String,
    pub full_reason: Option<String>,
    pub files_applied: u64,
    pub rows_read: u64,
    pub changes_stored: u64,
    pub history_rows: u64,
    pub append_secs: f64,
    pub plan_secs: f64,
}

/// How a SQLMesh command failed.
#[derive(Debug)]
pub enum Failure {
    /// Another process holds the lakehouse's write lock.
    Locked(anyhow::Error),
    Other(anyhow::Error),
}

impl Invocation<'_> {
    fn environment(&self) -> Vec<(&'static str, OsString)> {
        let venv_bin = self
            .sqlmesh
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut path = OsString::from(venv_bin.as_os_str());
        path.push(":/usr/local/bin:/usr/bin:/bin");
        let mut env = vec![
            ("PATH", path),
            ("LANG", "C.UTF-8".into()),
            ("LC_ALL", "C.UTF-8".into()),
            ("TZ", "UTC".into()),
            ("TERM", "dumb".into()),
            ("NO_COLOR", "1".into()),
            ("COLUMNS", "120".into()),
            ("PYTHONDONTWRITEBYTECODE", "1".into()),
            ("PYTHONUNBUFFERED", "1".into()),
            (env_vars::LANDING_DIR, self.landing_dir.into()),
            (env_vars::MATERIA_LANDING_MANIFEST, self.manifest.into()),
            (env_vars::MATERIA_LANDED_ROWS, self.landed_rows.into()),
            (env_vars::MATERIA_PROJECT_DIGEST, self.project_digest.into()),
            (
                env_vars::MATERIA_FULL_REBUILD,
                if self.full_rebuild { "1" } else { "0" }.into(),
            ),
            (env_vars::DUCKDB_PATH, self.lakehouse.into()),
            (
                env_vars::MATERIA_SQLMESH_CACHE_DIR,
                self.work_dir.join("cache").into(),
            ),
        ];
        // The crash tests' fault injection (env_vars::MATERIA_TEST_KILL_AT), only when set.
        if let Some(point) = std::env::var_os(env_vars::MATERIA_TEST_KILL_AT) {
            env.push((env_vars::MATERIA_TEST_KILL_AT, point));
        }
        // SQLMesh writes into `$HOME/.sqlmesh` (or `SQLMESH_HOME`) and Python and DuckDB may
        // write under `$HOME` too; the service user's home is read-only under the units'
        // ProtectSystem=strict, so both are a directory of the work directory, beside the
        // lakehouse, which is writable.
        let home = self.work_dir.join("home");
        env.push(("SQLMESH_HOME", home.join(".sqlmesh").into()));
        env.push(("HOME", home.into()));
        env
    }

    /// Runs one cycle (`transform/cycle.py`: the history, plan --auto-apply, then janitor)
    /// with the virtualenv's Python, in the project directory, and reads what the history did.
    pub fn run_cycle(&self) -> Result<Cycle, Failure> {
        let _ = std::fs::remove_file(self.result);
        self.run(&["cycle.py"])?;
        let text = std::fs::read_to_string(self.result)
            .with_context(|| format!("cycle.py wrote no result at {}", self.result.display()))
            .map_err(Failure::Other)?;
        serde_json::from_str(&text)
            .with_context(|| format!("cannot read {}", self.result.display()))
            .map_err(Failure::Other)
    }

    /// Runs the virtualenv's `python cycle.py LOG_DIR RESULT` in the project directory.
    fn run(&self, args: &[&str]) -> Result<(), Failure> {
        let log_dir: PathBuf = self.work_dir.join("logs");
        for dir in [log_dir.clone(), self.work_dir.join("home")] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))
                .map_err(Failure::Other)?;
        }
        let python = self.sqlmesh.with_file_name("python");
        let mut cmd = Command::new(&python);
        cmd.args(args)
            .arg(&log_dir)
            .arg(self.result)
            .current_dir(self.project)
            .env_clear()
            .envs(self.environment());
        let shown = format!("sqlmesh cycle ({} {})", python.display(), args.join(" "));
        log::info!("running {shown}");
        let finished = child::run(
            cmd,
            Options {
                timeout: self.timeout,
                stdout: Stdout::Forward {
                    prefix: "sqlmesh: ",
                },
                tail_lines: TAIL_LINES_MAX,
                // SQLMesh stays in our process group: a supervisor stopping this step stops it too.
                own_process_group: false,
            },
        )
        .with_context(|| format!("cannot run {}", python.display()))
        .map_err(Failure::Other)?;
        let output = finished.tail_text();
        match finished.status {
            // SQLMesh runs DuckDB in its own process: killing it stops the work, and the
            // lakehouse's WAL makes the interrupted write roll back on the next open.
            None => Err(Failure::Other(anyhow!(
                "{shown} did not finish within {}s (--timeout-secs) and was killed; last output:\n{output}",
                self.timeout.as_secs()
            ))),
            Some(s) if s.success() => {
                log::info!("{shown} finished in {:.1}s", finished.elapsed.as_secs_f64());
                Ok(())
            }
            Some(s) => {
                let error = anyhow!("{shown} failed ({s}); last output:\n{output}");
                if output.contains("Could not set lock") || output.contains("Conflicting lock") {
                    Err(Failure::Locked(
                        error.context("the lakehouse is locked by another process"),
                    ))
                } else {
                    Err(Failure::Other(error))
                }
            }
        }
    }
}
