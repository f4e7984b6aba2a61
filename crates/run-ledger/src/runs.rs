//! Runs of every step: a `running` row when work starts, one update when it ends, and the
//! queries status tools and steps read back.

use std::fmt;

use rusqlite::{OptionalExtension, params};

use crate::{Ledger, LedgerError};

/// The message written into rows of runs that died while `running`.
pub const INTERRUPTED: &str =
    "interrupted: the run ended without recording an outcome (killed, crashed or lost power)";
/// The status of a run, as stored in the `status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Success,
    Unchanged,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Unchanged => "unchanged",
            RunStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of an extraction, written when it ends.
#[derive(Debug, Clone, Default)]
pub struct ExtractionOutcome {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub sha256: Option<String>,
    /// Landing path relative to `LANDING_DIR`.
    pub path: Option<String>,
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
    pub error: Option<String>,
    pub detail: Option<String>,
}

/// The validators and content of the last run that reached upstream successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastGood {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub sha256: Option<String>,
    pub path: Option<String>,
}

/// How a non-extractor run ended, written when it ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepOutcome<'a> {
    pub detail: Option<&'a str>,
    pub error: Option<&'a str>,
    /// What the step's inputs were (see [`Ledger::last_good_fingerprint`]).
    pub input_fingerprint: Option<&'a str>,
}

/// The latest run of a step and its latest good one, for status displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSummary {
    /// As in the `runs` view: `extract-psd`, `transform`, `export-serving`, ...
    pub step: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    /// When the newest run that ended `success` or `unchanged` finished.
    pub last_success_at: Option<String>,
}

/// One row of the `runs` view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub step: String,
    pub run_id: i64,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub detail: Option<String>,
    pub error: Option<String>,
}

impl Ledger {
    /// Every step that has run, with its latest run and latest success, by step name.
    pub fn step_summaries(&self) -> Result<Vec<StepSummary>, LedgerError> {
        self.rows(
            "WITH ranked AS (
                 SELECT step, status, started_at, finished_at, error,
                        row_number() OVER (PARTITION BY step ORDER BY started_at DESC, run_id DESC) AS rn
                   FROM runs),
             good AS (
                 SELECT step, max(finished_at) AS last_success_at FROM runs
                  WHERE status IN ('success', 'unchanged') GROUP BY step)
             SELECT r.step, r.status, r.started_at, r.finished_at, r.error, g.last_success_at
               FROM ranked r LEFT JOIN good g ON g.step = r.step
              WHERE r.rn = 1 ORDER BY r.step",
            [],
            |r| {
                Ok(StepSummary {
                    step: r.get(0)?,
                    status: r.get(1)?,
                    started_at: r.get(2)?,
                    finished_at: r.get(3)?,
                    error: r.get(4)?,
                    last_success_at: r.get(5)?,
                })
            },
        )
    }

    /// Marks `running` extraction rows of `extractor` as failed. Call only while holding the
    /// step's lock: then no such row can belong to a live run.
    pub fn interrupt_stale_extractions(
        &self,
        extractor: &str,
        now: &str,
    ) -> Result<usize, LedgerError> {
        self.conn
            .execute(
                "UPDATE extraction_runs SET status = 'failed', finished_at = ?1, error = ?2
                  WHERE extractor = ?3 AND status = 'running'",
                params![now, INTERRUPTED, extractor],
            )
            .map_err(|e| self.sql(e))
    }

    pub fn begin_extraction(&self, extractor: &str, started_at: &str) -> Result<i64, LedgerError> {
        self.conn
            .execute(
                "INSERT INTO extraction_runs (extractor, status, started_at, pid)
                 VALUES (?1, 'running', ?2, ?3)",
                params![extractor, started_at, std::process::id()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_extraction(
        &self,
        run_id: i64,
        status: RunStatus,
        finished_at: &str,
        outcome: &ExtractionOutcome,
    ) -> Result<(), LedgerError> {
        assert_ne!(
            status,
            RunStatus::Running,
            "a finished run cannot be running"
        );
        let updated = self
            .conn
            .execute(
                "UPDATE extraction_runs
                    SET status = ?2, finished_at = ?3, etag = ?4, last_modified = ?5,
                        sha256 = ?6, path = ?7, rows = ?8, bytes = ?9, error = ?10, detail = ?11
                  WHERE run_id = ?1",
                params![
                    run_id,
                    status.as_str(),
                    finished_at,
                    outcome.etag,
                    outcome.last_modified,
                    outcome.sha256,
                    outcome.path,
                    outcome.rows.map(|v| v as i64),
                    outcome.bytes.map(|v| v as i64),
                    outcome.error,
                    outcome.detail,
                ],
            )
            .map_err(|e| self.sql(e))?;
        assert_eq!(updated, 1, "run {run_id} must exist");
        Ok(())
    }

    /// The most recent run of `extractor` that reached upstream (status success or unchanged).
    pub fn last_good_extraction(&self, extractor: &str) -> Result<Option<LastGood>, LedgerError> {
        self.conn
            .query_row(
                "SELECT etag, last_modified, sha256, path FROM extraction_runs
                  WHERE extractor = ?1 AND status IN ('success', 'unchanged')
                  ORDER BY run_id DESC LIMIT 1",
                params![extractor],
                |r| {
                    Ok(LastGood {
                        etag: r.get(0)?,
                        last_modified: r.get(1)?,
                        sha256: r.get(2)?,
                        path: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Marks `running` rows of a non-extractor step as failed; same rule as for extractions.
    pub fn interrupt_stale_steps(&self, step: &str, now: &str) -> Result<usize, LedgerError> {
        self.conn
            .execute(
                "UPDATE step_runs SET status = 'failed', finished_at = ?1, error = ?2
                  WHERE step = ?3 AND status = 'running'",
                params![now, INTERRUPTED, step],
            )
            .map_err(|e| self.sql(e))
    }

    pub fn begin_step(&self, step: &str, started_at: &str) -> Result<i64, LedgerError> {
        self.conn
            .execute(
                "INSERT INTO step_runs (step, status, started_at, pid) VALUES (?1, 'running', ?2, ?3)",
                params![step, started_at, std::process::id()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_step(
        &self,
        run_id: i64,
        status: RunStatus,
        finished_at: &str,
        outcome: &StepOutcome<'_>,
    ) -> Result<(), LedgerError> {
        assert_ne!(
            status,
            RunStatus::Running,
            "a finished run cannot be running"
        );
        let updated = self
            .conn
            .execute(
                "UPDATE step_runs
                    SET status = ?2, finished_at = ?3, detail = ?4, error = ?5, input_fingerprint = ?6
                  WHERE run_id = ?1",
                params![
                    run_id,
                    status.as_str(),
                    finished_at,
                    outcome.detail,
                    outcome.error,
                    outcome.input_fingerprint
                ],
            )
            .map_err(|e| self.sql(e))?;
        assert_eq!(updated, 1, "run {run_id} must exist");
        Ok(())
    }

    /// The input fingerprint of the last run of `step` that succeeded or found nothing to do.
    pub fn last_good_fingerprint(&self, step: &str) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row(
                "SELECT input_fingerprint FROM step_runs
                  WHERE step = ?1 AND status IN ('success', 'unchanged')
                  ORDER BY run_id DESC LIMIT 1",
                params![step],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.sql(e))
    }

    /// Data rows of every file `extractor` landed, by content address.
    pub fn landed_rows(&self, extractor: &str) -> Result<Vec<(String, u64)>, LedgerError> {
        self.rows(
            "SELECT sha256, max(rows) FROM extraction_runs
              WHERE extractor = ?1 AND status = 'success' AND sha256 IS NOT NULL AND rows IS NOT NULL
              GROUP BY sha256",
            params![extractor],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)),
        )
    }

    /// The newest `limit` rows of the `runs` view, newest first by start time.
    pub fn recent_runs(&self, limit: u32) -> Result<Vec<RunRow>, LedgerError> {
        self.rows(
            "SELECT step, run_id, status, started_at, finished_at, detail, error FROM runs
              ORDER BY started_at DESC, run_id DESC LIMIT ?1",
            params![limit],
            |r| {
                Ok(RunRow {
                    step: r.get(0)?,
                    run_id: r.get(1)?,
                    status: r.get(2)?,
                    started_at: r.get(3)?,
                    finished_at: r.get(4)?,
                    detail: r.get(5)?,
                    error: r.get(6)?,
                })
            },
        )
    }
}
