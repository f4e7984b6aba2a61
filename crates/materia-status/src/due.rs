//! `materia-status --due` and `--extractors`: the workflow registry (`workflows.toml`) read
//! against the state DB, so that the shell supervisor never parses TOML.

use std::path::Path;
use std::time::SystemTime;

use run_ledger::{Ledger, RunStatus};
use serde::Serialize;
use workflows::Workflow;

use crate::parse_time;

/// One extractor of the registry and whether it is due.
#[derive(Debug, Clone, Serialize)]
pub struct DueRow {
    pub binary: String,
    pub dataset: String,
    pub due: bool,
    /// The interval in force now, in seconds.
    pub interval_secs: u64,
    /// When its last good run (`success` or `unchanged`) finished.
    pub last_success: Option<String>,
    /// When its latest run started, and how it ended.
    pub last_run: Option<String>,
    pub last_status: Option<String>,
}

/// Why `--due` could not answer: a registry error is usage (exit 2), a state DB one is not.
#[derive(Debug)]
pub struct DueError {
    pub usage: bool,
    pub error: anyhow::Error,
}

/// The registry at `workflows`, checked.
pub fn registry(workflows: &Path) -> Result<Vec<Workflow>, DueError> {
    workflows::load(workflows).map_err(|e| DueError {
        usage: true,
        error: e.into(),
    })
}

/// Every extractor of the registry, due or not at `now` by the state DB (a state DB that does
/// not exist yet has no runs: everything is due).
pub fn due(workflows: &Path, state_db: &Path, now: SystemTime) -> Result<Vec<DueRow>, DueError> {
    let registry = registry(workflows)?;
    let summaries = if state_db.exists() {
        Ledger::open_read_only(state_db)
            .and_then(|l| l.step_summaries())
            .map_err(|e| DueError {
                usage: false,
                error: anyhow::Error::from(e)
                    .context(format!("cannot read the state DB {}", state_db.display())),
            })?
    } else {
        Vec::new()
    };
    Ok(registry
        .into_iter()
        .map(|w| {
            let summary = summaries.iter().find(|s| s.step == w.binary);
            let last_good = summary
                .and_then(|s| s.last_success_at.as_deref())
                .and_then(parse_time);
            let latest = summary
                .and_then(|s| Some((parse_time(&s.started_at)?, s.status == RunStatus::Failed)));
            DueRow {
                due: w.schedule.is_due(now, last_good, latest),
                interval_secs: w.schedule.interval_at(now).as_secs(),
                last_success: summary.and_then(|s| s.last_success_at.clone()),
                last_run: summary.map(|s| s.started_at.clone()),
                last_status: summary.map(|s| s.status.as_str().to_owned()),
                binary: w.binary,
                dataset: w.dataset,
            }
        })
        .collect())
}
