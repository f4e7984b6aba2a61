//! `materia-status`: one row per step from the state DB (last run, status, duration, last
//! success, age), and a health check: exit 1 when a step's last success is older than its
//! `--max-age`. `quarantine` and `unquarantine` hold a landing file out of the transform and
//! release it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::anyhow;
use clap::{Parser, Subcommand};
use materia_status::due;
use materia_status::quarantine::{self, CommandError, QuarantineReport, QuarantineStatus};
use materia_status::{Health, StatusReport, report, table};
use step_runtime::env_vars;

/// Show the last run and last success of every Materia step; exit 1 if one is too old
///
/// Reads the state DB (read-only), and lists the landing files held in quarantine. With
/// `--max-age STEP=DURATION` (repeatable, e.g. `--max-age extract-psd=35d --max-age
/// export-serving=2h`) it is a health check: exit 1 when a named step's last success is older
/// than that, or it never succeeded. Exit codes: 0 healthy; 1 stale or the state DB cannot be
/// read; 2 usage.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// The state DB (default `$LANDING_DIR/.state.sqlite`)
    #[arg(long, env = env_vars::STATE_DB, value_name = "PATH", global = true)]
    state_db: Option<PathBuf>,

    /// Landing directory: its datasets' extractors are listed, and it holds the default state DB
    #[arg(
        long,
        env = env_vars::LANDING_DIR,
        value_name = "DIR",
        default_value = "data/landing",
        global = true
    )]
    landing_dir: PathBuf,

    /// Largest acceptable age of a step's last success, as STEP=DURATION (30m, 6h, 35d)
    #[arg(long, value_name = "STEP=DURATION", value_parser = parse_max_age)]
    max_age: Vec<(String, Duration)>,

    /// Print one JSON object instead of the table
    #[arg(long, global = true)]
    json: bool,

    /// Print the extractors of the workflow registry that are due now, one binary a line
    /// (exit 2 naming the line when the registry is malformed)
    #[arg(long, conflicts_with_all = ["extractors", "max_age"])]
    due: bool,

    /// Print every extractor of the workflow registry, one binary a line, after checking it
    #[arg(long, conflicts_with = "max_age")]
    extractors: bool,

    /// The workflow registry read by --due and --extractors
    #[arg(long, env = env_vars::MATERIA_WORKFLOWS, value_name = "PATH", default_value = workflows::FILE_NAME)]
    workflows: PathBuf,

    /// The time --due decides at, RFC 3339 (default: now)
    #[arg(long, value_name = "TIME", value_parser = parse_now, requires = "due")]
    now: Option<SystemTime>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Hold a landing file out of the transform until it is released
    ///
    /// For a file that landed but breaks the transform. The file stays in the landing store,
    /// unchanged, and is still backed up; the state DB records it with the reason, and
    /// `materia-status` lists it until it is released with `unquarantine`. Run it as the state
    /// DB's owner (the service user). Exit codes: 0 held (or held already); 1 the state DB
    /// cannot be written; 2 usage (no such landing file, no reason).
    Quarantine {
        /// The landing file: `<dataset>/YYYY/MM/<sha256>.csv.gzip`, its path, or its sha256
        file: String,
        /// Why, in one line (kept in the state DB, shown by materia-status)
        #[arg(long)]
        reason: String,
    },
    /// Release a quarantined landing file: the transform reads it again from its next run
    ///
    /// Exit codes: 0 released (or not held); 1 the state DB cannot be written; 2 usage.
    Unquarantine {
        /// The landing file, named as for `quarantine`
        file: String,
        /// Why it may be read again (kept in the state DB)
        #[arg(long)]
        reason: Option<String>,
    },
}

fn parse_max_age(s: &str) -> Result<(String, Duration), String> {
    let (step, age) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not STEP=DURATION"))?;
    if step.is_empty() {
        return Err(format!("{s:?} names no step"));
    }
    let age = humantime::parse_duration(age.trim())
        .map_err(|e| format!("{age:?} is not a duration (30m, 6h, 35d): {e}"))?;
    Ok((step.to_owned(), age))
}

fn parse_now(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time (2026-12-09T06:00:00Z): {e}"))
}

/// `--due` and `--extractors`: binaries on stdout, one a line, or one JSON object.
fn run_registry(args: &Args, state_db: &std::path::Path) -> ExitCode {
    let result = if args.due {
        due::due(
            &args.workflows,
            state_db,
            args.now.unwrap_or_else(SystemTime::now),
        )
        .map(|rows| {
            let due: Vec<String> = rows
                .iter()
                .filter(|r| r.due)
                .map(|r| r.binary.clone())
                .collect();
            (due, serde_json::to_value(&rows).unwrap_or_default())
        })
    } else {
        due::registry(&args.workflows).map(|w| {
            let all: Vec<String> = w.iter().map(|w| w.binary.clone()).collect();
            let value = serde_json::json!(
                w.iter()
                    .map(|w| serde_json::json!({"binary": w.binary, "dataset": w.dataset}))
                    .collect::<Vec<_>>()
            );
            (all, value)
        })
    };
    match result {
        Ok((binaries, extractors)) => {
            if args.json {
                step_runtime::print_json(&serde_json::json!({
                    "status": "ok",
                    "workflows": args.workflows.display().to_string(),
                    "binaries": binaries,
                    "extractors": extractors,
                    "error": null,
                }));
            } else {
                let mut out = std::io::stdout().lock();
                for b in &binaries {
                    let _ = writeln!(out, "{b}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(due::DueError { usage, error }) => {
            let message = format!("{error:#}");
            if args.json {
                step_runtime::print_json(&serde_json::json!({
                    "status": "failed",
                    "workflows": args.workflows.display().to_string(),
                    "binaries": [],
                    "extractors": [],
                    "error": message,
                }));
            }
            let _ = writeln!(std::io::stderr(), "materia-status: {message}");
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn main() -> ExitCode {
    let args: Args = match step_runtime::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let state_db = args
        .state_db
        .clone()
        .unwrap_or_else(|| args.landing_dir.join(".state.sqlite"));
    if let Some(command) = &args.command {
        if !args.max_age.is_empty() {
            let message = "--max-age is for the status table, not for a subcommand";
            if args.json {
                step_runtime::print_json(&QuarantineReport::failed(message.to_owned()));
            }
            let _ = writeln!(std::io::stderr(), "materia-status: {message}");
            return ExitCode::from(2);
        }
        return run_command(command, &state_db, &args);
    }
    if args.due || args.extractors {
        return run_registry(&args, &state_db);
    }
    let result = report(&state_db, &args.landing_dir, &args.max_age);
    let (report, code) = match result {
        Ok(r) => {
            let code = if r.stale.is_empty() { 0 } else { 1 };
            (r, code)
        }
        Err(e) => {
            let message = format!("{:#}", anyhow!(e));
            (
                StatusReport {
                    status: Health::Failed,
                    state_db: state_db.display().to_string(),
                    steps: Vec::new(),
                    stale: Vec::new(),
                    quarantined: Vec::new(),
                    error: Some(message),
                },
                1,
            )
        }
    };
    if args.json {
        step_runtime::print_json(&report);
    } else {
        if let Some(e) = &report.error {
            let _ = writeln!(std::io::stderr(), "materia-status: {e}");
        } else {
            let _ = std::io::stdout()
                .lock()
                .write_all(table(&report).as_bytes());
        }
        if !report.stale.is_empty() {
            let _ = writeln!(
                std::io::stderr(),
                "materia-status: stale: {}",
                report.stale.join(", ")
            );
        }
    }
    ExitCode::from(code)
}

fn run_command(command: &Command, state_db: &std::path::Path, args: &Args) -> ExitCode {
    let result = match command {
        Command::Quarantine { file, reason } => {
            quarantine::quarantine(state_db, &args.landing_dir, file, reason)
        }
        Command::Unquarantine { file, reason } => {
            quarantine::unquarantine(state_db, &args.landing_dir, file, reason.as_deref())
        }
    };
    let (report, code) = match result {
        Ok(r) => (r, 0),
        Err(CommandError { usage, error }) => (
            QuarantineReport::failed(format!("{error:#}")),
            if usage { 2 } else { 1 },
        ),
    };
    if args.json {
        step_runtime::print_json(&report);
    } else if report.status == QuarantineStatus::Failed {
        let _ = writeln!(std::io::stderr(), "materia-status: {}", report.line());
    } else {
        let _ = writeln!(std::io::stdout(), "{}", report.line());
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_parses_step_and_duration() {
        assert_eq!(
            parse_max_age("extract-psd=35d").unwrap(),
            ("extract-psd".to_owned(), Duration::from_secs(35 * 86_400))
        );
        assert!(parse_max_age("extract-psd").is_err());
        assert!(parse_max_age("=3h").is_err());
        assert!(parse_max_age("x=soon").is_err());
    }
}
