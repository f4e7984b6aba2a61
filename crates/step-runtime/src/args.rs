//! The flags every binary shares (docs/INTERFACES.md section 1), one `#[derive(Args)]` group flattened
//! into each binary's own arguments.

use std::path::PathBuf;

use clap::Args;

use crate::env_vars;

/// Paths and output switches common to every Materia step.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Root of the immutable landing store
    #[arg(long, env = env_vars::LANDING_DIR, value_name = "DIR", default_value = "data/landing", global = true)]
    pub landing_dir: PathBuf,

    /// SQLite run ledger shared by every step [default: $LANDING_DIR/.state.sqlite]
    #[arg(long, env = env_vars::STATE_DB, value_name = "PATH", global = true)]
    pub state_db: Option<PathBuf>,

    /// Lakehouse DuckDB file written by the transform
    #[arg(long = "lakehouse", env = env_vars::DUCKDB_PATH, value_name = "PATH", default_value = "data/lakehouse.duckdb", global = true)]
    pub lakehouse: PathBuf,

    /// Published read-only serving DuckDB file
    #[arg(long = "serving", env = env_vars::SERVING_DUCKDB_PATH, value_name = "PATH", default_value = "data/analytics.duckdb", global = true)]
    pub serving: PathBuf,

    /// node_exporter textfile collector directory; unset writes no metrics
    #[arg(long, env = env_vars::METRICS_DIR, value_name = "DIR", global = true)]
    pub metrics_dir: Option<PathBuf>,

    /// Print exactly one JSON object on stdout when the run ends
    #[arg(long, global = true)]
    pub json: bool,
}

/// The resolved configuration a step runs with: defaults derived, empty values dropped.
#[derive(Debug, Clone)]
pub struct Config {
    pub landing_dir: PathBuf,
    pub state_db: PathBuf,
    pub lakehouse: PathBuf,
    pub serving: PathBuf,
    pub metrics_dir: Option<PathBuf>,
    pub json: bool,
}

impl CommonArgs {
    pub fn resolve(&self) -> Config {
        let state_db = non_empty(self.state_db.clone())
            .unwrap_or_else(|| self.landing_dir.join(".state.sqlite"));
        Config {
            landing_dir: self.landing_dir.clone(),
            state_db,
            lakehouse: self.lakehouse.clone(),
            serving: self.serving.clone(),
            metrics_dir: non_empty(self.metrics_dir.clone()),
            json: self.json,
        }
    }
}

impl Config {
    /// Directory of the per-step lock files: beside the state DB, so that every step of one
    /// installation agrees on it whatever else differs.
    pub fn lock_dir(&self) -> PathBuf {
        let parent = self.state_db.parent().filter(|p| !p.as_os_str().is_empty());
        parent.map_or_else(|| PathBuf::from(".locks"), |p| p.join(".locks"))
    }
}

fn non_empty(path: Option<PathBuf>) -> Option<PathBuf> {
    path.filter(|p| !p.as_os_str().is_empty())
}
