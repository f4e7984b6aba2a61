//! The ledger row around a step's work: stale runs marked interrupted, a `running` row, then the
//! outcome written, without ever letting a failure to record hide (or replace) the run's result.

use std::time::SystemTime;

use run_ledger::{Ledger, RunOutcome};

use crate::{FailureClass, Report, StepContext, StepError, iso8601};

/// Runs `work` inside a ledger row of `ctx.step` (a row of `extraction_runs` for an
/// `extract-<dataset>` step, of `step_runs` for any other): earlier rows left `running` by a run
/// that died are marked failed ("interrupted") first (the caller holds the step lock, so none
/// of them is alive), then the row is opened and finally closed with the report's
/// [`Report::outcome`] or the error.
pub fn run_recorded<R: Report>(
    ctx: &StepContext,
    ledger: &Ledger,
    work: impl FnOnce() -> Result<R, StepError>,
) -> Result<R, StepError> {
    let interrupted = ledger.interrupt_stale(ctx.step, &iso8601(SystemTime::now()))?;
    if interrupted > 0 {
        log::warn!("marked {interrupted} earlier run(s) left 'running' as failed (interrupted)");
    }
    let run = ledger.begin(ctx.step, &ctx.started_at())?;
    let result = work();
    let finished_at = iso8601(SystemTime::now());
    let outcome = match &result {
        Ok(report) => report.outcome(),
        Err(e) if e.class == FailureClass::Upstream => RunOutcome {
            detail: Some(run_ledger::DETAIL_UPSTREAM.to_owned()),
            ..RunOutcome::failed(e.message())
        },
        Err(e) => RunOutcome::failed(e.message()),
    };
    let recorded = ledger.finish(run, &finished_at, &outcome);
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
