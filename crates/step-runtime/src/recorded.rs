//! The ledger row around a step's work: stale runs marked interrupted, a `running` row, then the
//! outcome written, without ever letting a failure to record hide (or replace) the run's result.

use std::time::SystemTime;

use run_ledger::{Ledger, RunStatus, StepOutcome};

use crate::{StepContext, StepError, iso8601};

/// What a run that ended well writes into its `step_runs` row.
#[derive(Debug, Clone)]
pub struct Record {
    /// `Success`, `Unchanged`, or `Failed` for a run whose report says what failed.
    pub status: RunStatus,
    pub detail: String,
    pub input_fingerprint: Option<String>,
    pub error: Option<String>,
}

/// Runs `work` inside a `step_runs` row of `ctx.step`: earlier rows left `running` by a run that
/// died are marked failed ("interrupted") first (the caller holds the step lock, so none of them
/// is alive), then the row is opened and finally closed with `describe(report)` or the error.
pub fn run_recorded<R>(
    ctx: &StepContext,
    ledger: &Ledger,
    work: impl FnOnce() -> Result<R, StepError>,
    describe: impl FnOnce(&R) -> Record,
) -> Result<R, StepError> {
    let interrupted = ledger.interrupt_stale_steps(ctx.step, &iso8601(SystemTime::now()))?;
    if interrupted > 0 {
        log::warn!("marked {interrupted} earlier run(s) left 'running' as failed (interrupted)");
    }
    let run_id = ledger.begin_step(ctx.step, &ctx.started_at())?;
    let result = work();
    let finished_at = iso8601(SystemTime::now());
    let recorded = match &result {
        Ok(report) => {
            let record = describe(report);
            let outcome = StepOutcome {
                detail: Some(&record.detail),
                input_fingerprint: record.input_fingerprint.as_deref(),
                error: record.error.as_deref(),
            };
            ledger.finish_step(run_id, record.status, &finished_at, &outcome)
        }
        Err(e) => {
            let message = e.message();
            let outcome = StepOutcome {
                error: Some(&message),
                ..Default::default()
            };
            ledger.finish_step(run_id, RunStatus::Failed, &finished_at, &outcome)
        }
    };
    settle(result, recorded)
}

/// Combines a run's result with the result of recording it: the outcome of the work outranks a
/// failure to record it, but neither goes unreported.
pub fn settle<R, E>(result: Result<R, StepError>, recorded: Result<(), E>) -> Result<R, StepError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match (result, recorded) {
        (Ok(report), Ok(())) => Ok(report),
        (Ok(_), Err(e)) => Err(anyhow::Error::new(e)
            .context("the run succeeded but could not be recorded")
            .into()),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(record)) => {
            log::error!("cannot record the failed run: {record}");
            Err(e)
        }
    }
}
