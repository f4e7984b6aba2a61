//! Runs of every step: a `running` row when work starts, one update when it ends, and the
//! queries status tools and steps read back.
//!
//! One API for every step. Where a run's row lives follows from the step's name: the runs of
//! `extract-<dataset>` are rows of `extraction_runs` with `extractor = <dataset>` (with their
//! provenance: etag, sha256, path, rows...), every other step's are rows of `step_runs`; the
//! view `runs` shows both under the step's name.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{OptionalExtension, params};

use crate::{Ledger, LedgerError};

/// The `detail` of a failed run whose upstream source could not be reached or answered with an
/// error (connection refused, DNS, time-out, HTTP 5xx): not the release's fault, so a deploy's
/// health check does not roll back for it (docs/INTERFACES.md, "Exit classes").
pub const DETAIL_UPSTREAM: &str = "upstream";

/// The message written into rows of runs that died while `running`.
pub const INTERRUPTED: &str =
    "interrupted: the run ended without recording an outcome (killed, crashed or lost power)";

/// The prefix of extractor steps: `extract-psd` lands the dataset `psd`.
pub const EXTRACTOR_PREFIX: &str = "extract-";

/// The status of a run, as stored in the `status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Success,
    Unchanged,
    Failed,
}

impl RunStatus {
    pub const ALL: [RunStatus; 4] = [
        RunStatus::Running,
        RunStatus::Success,
        RunStatus::Unchanged,
        RunStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Unchanged => "unchanged",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the stored text, as operators and older callers write it.
impl PartialEq<str> for RunStatus {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for RunStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl ToSql for RunStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for RunStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        RunStatus::parse(text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown run status {text:?}").into()))
    }
}

/// The step that lands `dataset`: `extract-<dataset>`.
pub fn extractor_step(dataset: &str) -> String {
    format!("{EXTRACTOR_PREFIX}{dataset}")
}

/// The dataset an extractor step lands (`extract-psd` -> `psd`); None for other steps.
pub fn dataset_of_step(step: &str) -> Option<&str> {
    step.strip_prefix(EXTRACTOR_PREFIX)
        .filter(|d| !d.is_empty())
}

/// The table a step's runs are rows of, and the column naming the step there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Extraction,
    Step,
}

impl Table {
    /// The table of `step` and the key its rows carry (the dataset, or the step's name).
    fn of(step: &str) -> (Table, &str) {
        match dataset_of_step(step) {
            Some(dataset) => (Table::Extraction, dataset),
            None => (Table::Step, step),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Table::Extraction => "extraction_runs",
            Table::Step => "step_runs",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Table::Extraction => "extractor",
            Table::Step => "step",
        }
    }
}

/// A run's row, from [`Ledger::begin`] to [`Ledger::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunId {
    table: Table,
    id: i64,
}

impl RunId {
    /// The row's `run_id`.
    pub fn get(self) -> i64 {
        self.id
    }
}

/// What an extraction landed or saw upstream; written into its `extraction_runs` row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Landed {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub sha256: Option<String>,
    /// Landing path relative to `LANDING_DIR`.
    pub path: Option<String>,
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
}

/// How a run ended, written into its row when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// Anything but `Running`.
    pub status: RunStatus,
    pub detail: Option<String>,
    pub error: Option<String>,
    /// What the step's inputs were (see [`Ledger::last_good_fingerprint`]); `step_runs` only.
    pub input_fingerprint: Option<String>,
    /// An extractor's provenance; `extraction_runs` only.
    pub landed: Option<Landed>,
}

impl RunOutcome {
    /// An outcome with `status` and nothing else.
    pub fn new(status: RunStatus) -> RunOutcome {
        RunOutcome {
            status,
            detail: None,
            error: None,
            input_fingerprint: None,
            landed: None,
        }
    }

    /// A failed run and why.
    pub fn failed(error: String) -> RunOutcome {
        RunOutcome {
            error: Some(error),
            ..RunOutcome::new(RunStatus::Failed)
        }
    }
}

/// The validators and content of the last run that reached upstream successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastGood {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub sha256: Option<String>,
    pub path: Option<String>,
}

/// The latest run of a step and its latest good one, for status displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSummary {
    /// As in the `runs` view: `extract-psd`, `transform`, `export-serving`, ...
    pub step: String,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    /// When the newest run that ended `success` or `unchanged` finished.
    pub last_success_at: Option<String>,
    /// The latest run's detail: what it did (the transform's mode, rows read, changes stored),
    /// or [`DETAIL_UPSTREAM`] for a failure upstream.
    pub detail: Option<String>,
}

/// One row of the `runs` view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub step: String,
    pub run_id: i64,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub detail: Option<String>,
    pub error: Option<String>,
}

impl Ledger {
    /// Marks the rows of `step` left `running` as failed ("interrupted"). Call only while
    /// holding the step's lock: then no such row can belong to a live run.
    pub fn interrupt_stale(&self, step: &str, now: &str) -> Result<usize, LedgerError> {
        let (table, key) = Table::of(step);
        self.conn
            .execute(
                &format!(
                    "UPDATE {} SET status = 'failed', finished_at = ?1, error = ?2
                      WHERE {} = ?3 AND status = 'running'",
                    table.name(),
                    table.key()
                ),
                params![now, INTERRUPTED, key],
            )
            .map_err(|e| self.sql(e))
    }

    /// Inserts the `running` row of a run of `step` that starts now.
    pub fn begin(&self, step: &str, started_at: &str) -> Result<RunId, LedgerError> {
        let (table, key) = Table::of(step);
        self.conn
            .execute(
                &format!(
                    "INSERT INTO {} ({}, status, started_at, pid) VALUES (?1, 'running', ?2, ?3)",
                    table.name(),
                    table.key()
                ),
                params![key, started_at, std::process::id()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(RunId {
            table,
            id: self.conn.last_insert_rowid(),
        })
    }

    /// Writes how the run ended, once.
    pub fn finish(
        &self,
        run: RunId,
        finished_at: &str,
        outcome: &RunOutcome,
    ) -> Result<(), LedgerError> {
        assert_ne!(
            outcome.status,
            RunStatus::Running,
            "a finished run cannot be running"
        );
        let updated = match run.table {
            Table::Extraction => {
                assert!(
                    outcome.input_fingerprint.is_none(),
                    "extraction runs record no input fingerprint"
                );
                let landed = outcome.landed.clone().unwrap_or_default();
                self.conn.execute(
                    "UPDATE extraction_runs
                        SET status = ?2, finished_at = ?3, etag = ?4, last_modified = ?5,
                            sha256 = ?6, path = ?7, rows = ?8, bytes = ?9, error = ?10, detail = ?11
                      WHERE run_id = ?1",
                    params![
                        run.id,
                        outcome.status,
                        finished_at,
                        landed.etag,
                        landed.last_modified,
                        landed.sha256,
                        landed.path,
                        landed.rows.map(|v| v as i64),
                        landed.bytes.map(|v| v as i64),
                        outcome.error,
                        outcome.detail,
                    ],
                )
            }
            Table::Step => {
                assert!(
                    outcome.landed.is_none(),
                    "only extractor steps record what they landed"
                );
                self.conn.execute(
                    "UPDATE step_runs
                        SET status = ?2, finished_at = ?3, detail = ?4, error = ?5, input_fingerprint = ?6
                      WHERE run_id = ?1",
                    params![
                        run.id,
                        outcome.status,
                        finished_at,
                        outcome.detail,
                        outcome.error,
                        outcome.input_fingerprint
                    ],
                )
            }
        }
        .map_err(|e| self.sql(e))?;
        assert_eq!(updated, 1, "run {} must exist", run.id);
        Ok(())
    }

    /// Every step that has run, with its latest run and latest success, by step name.
    pub fn step_summaries(&self) -> Result<Vec<StepSummary>, LedgerError> {
        self.rows(
            "WITH ranked AS (
                 SELECT step, status, started_at, finished_at, error, detail,
                        row_number() OVER (PARTITION BY step ORDER BY started_at DESC, run_id DESC) AS rn
                   FROM runs),
             good AS (
                 SELECT step, max(finished_at) AS last_success_at FROM runs
                  WHERE status IN ('success', 'unchanged') GROUP BY step)
             SELECT r.step, r.status, r.started_at, r.finished_at, r.error, g.last_success_at,
                    r.detail
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
                    detail: r.get(6)?,
                })
            },
        )
    }

    /// The most recent run landing `dataset` that reached upstream (status success or unchanged).
    pub fn last_good_extraction(&self, dataset: &str) -> Result<Option<LastGood>, LedgerError> {
        self.conn
            .query_row(
                "SELECT etag, last_modified, sha256, path FROM extraction_runs
                  WHERE extractor = ?1 AND status IN ('success', 'unchanged')
                  ORDER BY run_id DESC LIMIT 1",
                params![dataset],
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

    /// When the pipeline last confirmed upstream: the `finished_at` of the newest run of any
    /// extractor that ended `success` or `unchanged` (a new file, a 304, or a download of
    /// content already landed). Freshness is measured from it, not from when content changed.
    pub fn last_confirmation(&self) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row(
                "SELECT max(finished_at) FROM extraction_runs WHERE status IN ('success', 'unchanged')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))
    }

    /// When content of `dataset` last changed upstream: the `finished_at` of the newest run that
    /// landed a new file (status `success`). The age of the data itself is measured from it.
    pub fn last_new_data(&self, dataset: &str) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row(
                "SELECT max(finished_at) FROM extraction_runs WHERE extractor = ?1 AND status = 'success'",
                params![dataset],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))
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

    /// Data rows of every file of `dataset` that landed, by content address.
    pub fn landed_rows(&self, dataset: &str) -> Result<Vec<(String, u64)>, LedgerError> {
        self.rows(
            "SELECT sha256, max(rows) FROM extraction_runs
              WHERE extractor = ?1 AND status = 'success' AND sha256 IS NOT NULL AND rows IS NOT NULL
              GROUP BY sha256",
            params![dataset],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)),
        )
    }

    /// The order in which the files of `dataset` landed: each landing path (relative) with the
    /// `run_id` of the run that first landed it.
    pub fn landing_order(&self, dataset: &str) -> Result<Vec<(String, i64)>, LedgerError> {
        self.rows(
            "SELECT path, min(run_id) FROM extraction_runs
              WHERE extractor = ?1 AND status = 'success' AND path IS NOT NULL
              GROUP BY path",
            params![dataset],
            |r| Ok((r.get(0)?, r.get(1)?)),
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
