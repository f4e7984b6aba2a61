//! The harness every Materia step binary runs in.
//!
//! A binary parses its arguments, then hands its body to [`run_step`], which sets up logging,
//! takes the step's lock, runs the body, writes metrics, prints the `--json` result and returns
//! the exit code docs/INTERFACES.md gives it. The body never prints to stdout and never calls
//! `exit`.

pub mod args;
pub mod binaries;
pub mod child;
pub mod env_vars;
pub mod exit;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod recorded;
pub mod time;

use std::io::Write;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub use args::{CommonArgs, Config};
pub use exit::{FailureClass, ResultExt, StepError};
pub use lock::StepLock;
pub use metrics::Metric;
pub use recorded::{run_recorded, settle};
pub use run_ledger::{Landed, RunOutcome, RunStatus};
pub use time::{UtcDateTime, iso8601};

/// What a step prints with `--json`, what it adds to its metrics, and what it writes into its
/// ledger row.
pub trait Report: Serialize {
    /// The report of a run that failed with `error` (fields that do not apply are null).
    fn failed(error: String) -> Self;

    /// The report of a run that failed with `error` of `class`; reports that carry an
    /// `error_class` (extractors: `upstream` versus the rest) override it.
    fn failed_as(class: FailureClass, error: String) -> Self
    where
        Self: Sized,
    {
        let _ = class;
        Self::failed(error)
    }

    /// How the run is recorded in the ledger ([`run_recorded`]): its status and detail, and
    /// `error` when the run failed with a full report.
    fn outcome(&self) -> RunOutcome;

    /// Why a run that produced a full report still failed (a verification that found
    /// mismatches: the report lists them). `Some` makes the exit code 1.
    fn failure(&self) -> Option<String> {
        None
    }

    /// Step-specific gauges added to the four every step writes.
    fn metrics(&self) -> Vec<Metric> {
        Vec::new()
    }
}

/// What the body of a step is given.
pub struct StepContext {
    pub step: &'static str,
    pub config: Config,
    pub started: SystemTime,
}

impl StepContext {
    /// ISO-8601 UTC, millisecond precision, for ledger rows.
    pub fn started_at(&self) -> String {
        iso8601(self.started)
    }
}

/// An absolute path for `path` (made so against the working directory, without touching the
/// filesystem): what a step hands to a child or compares, whatever directory it runs in.
pub fn absolute(path: &std::path::Path) -> Result<std::path::PathBuf, StepError> {
    std::path::absolute(path).map_err(|e| {
        StepError::usage(
            anyhow::Error::new(e).context(format!("cannot resolve {}", path.display())),
        )
    })
}

/// Runs one step end to end and returns its exit code. See the crate docs.
pub fn run_step<R, F>(step: &'static str, common: &CommonArgs, body: F) -> ExitCode
where
    R: Report,
    F: FnOnce(&StepContext) -> Result<R, StepError>,
{
    logging::init(step);
    let ctx = StepContext {
        step,
        config: common.resolve(),
        started: SystemTime::now(),
    };
    let clock = Instant::now();

    let outcome = StepLock::acquire(&ctx.config.lock_dir(), step).and_then(|lock| {
        log::debug!("holding {}", lock.path().display());
        let result = body(&ctx);
        drop(lock);
        result
    });

    let (report, code) = match outcome {
        Ok(report) => match report.failure() {
            Some(why) => {
                log::error!("{why}");
                (report, exit::EXIT_FAILURE)
            }
            None => (report, exit::EXIT_SUCCESS),
        },
        Err(err) => {
            let message = err.message();
            log::error!("{message}");
            (R::failed_as(err.class, message), err.class.exit_code())
        }
    };

    // A run refused because another holds the lock did not run: it must not overwrite the
    // metrics of the run that is in progress.
    if code != exit::EXIT_BUSY
        && let Some(dir) = &ctx.config.metrics_dir
    {
        let mut all = standard_metrics(dir, step, ctx.started, clock.elapsed().as_secs_f64(), code);
        all.extend(report.metrics());
        if let Err(e) = metrics::write_textfile(dir, step, &all) {
            log::warn!("{e:#}");
        }
    }

    if ctx.config.json {
        print_json(&report);
    }
    ExitCode::from(code)
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn standard_metrics(
    dir: &std::path::Path,
    step: &str,
    started: SystemTime,
    duration_secs: f64,
    code: u8,
) -> Vec<Metric> {
    let last_success = if code == exit::EXIT_SUCCESS {
        Some(unix_secs(SystemTime::now()))
    } else {
        metrics::read_previous(dir, step, "last_success_timestamp_seconds")
    };
    // Carried over from the previous file: the alert "a step failing repeatedly"
    // (ops/alerts.yml) reads it.
    let consecutive_failures = if code == exit::EXIT_SUCCESS {
        0.0
    } else {
        metrics::read_previous(dir, step, "consecutive_failures").unwrap_or(0.0) + 1.0
    };
    let mut out = vec![
        Metric::new(
            "last_run_timestamp_seconds",
            "Unix time the last run started",
            unix_secs(started),
        ),
        Metric::new(
            "duration_seconds",
            "Wall time of the last run",
            duration_secs,
        ),
        Metric::new(
            "exit_code",
            "Exit code of the last run (0 ok, 1 failed, 2 usage, 75 busy)",
            f64::from(code),
        ),
        Metric::new(
            "consecutive_failures",
            "Runs that failed in a row since the last success (0 after a success)",
            consecutive_failures,
        ),
    ];
    if let Some(ts) = last_success {
        out.push(Metric::new(
            "last_success_timestamp_seconds",
            "Unix time the last successful run ended",
            ts,
        ));
    }
    out
}

/// Prints one JSON object and a newline on stdout; a closed pipe is not an error.
pub fn print_json<T: Serialize>(value: &T) {
    let mut line = serde_json::to_string(value).unwrap_or_else(|e| {
        format!(r#"{{"status":"failed","error":"cannot serialise result: {e}"}}"#)
    });
    line.push('\n');
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

/// Parses arguments with clap; on a usage error prints clap's message (and, with `--json`
/// anywhere on the command line, one JSON failure object) and exits 2. `--help` and
/// `--version` print to stdout and exit 0.
///
/// An environment variable that is set but empty counts as unset (a `KEY=` line in an env file
/// means "no value"), for every argument that reads one.
pub fn parse_args<P: clap::Parser>() -> Result<P, ExitCode> {
    let mut command = P::command();
    let empty: Vec<clap::Id> = command
        .get_arguments()
        .filter(|a| {
            a.get_env()
                .is_some_and(|name| std::env::var_os(name).is_some_and(|v| v.is_empty()))
        })
        .map(|a| a.get_id().clone())
        .collect();
    for id in empty {
        command = command.mut_arg(id, |a| a.env(None::<&str>));
    }
    let parsed = command
        .try_get_matches()
        .and_then(|m| P::from_arg_matches(&m));
    match parsed {
        Ok(p) => Ok(p),
        Err(e) => {
            use clap::error::ErrorKind;
            let informational = matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            let _ = e.print();
            if informational && e.kind() != ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                return Err(ExitCode::SUCCESS);
            }
            if std::env::args_os().any(|a| a == "--json") {
                let message = e.to_string();
                let first = message.lines().next().unwrap_or("usage error");
                print_json(&serde_json::json!({
                    "status": "failed",
                    "error": first.strip_prefix("error: ").unwrap_or(first),
                }));
            }
            Err(ExitCode::from(exit::EXIT_USAGE))
        }
    }
}
