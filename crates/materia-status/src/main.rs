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
use materia_status::bad_tags::{self, ClearReport, ClearStatus};
use materia_status::due;
use materia_status::quarantine::{self, CommandError, QuarantineReport, QuarantineStatus};
use materia_status::{Health, StatusReport, report, table};
use step_runtime::env_vars;

/// Show the last run and last success of every Materia step; exit 1 if one is too old
///
/// Reads the state DB (read-only), and lists the landing files held in quarantine. With
/// `--max-age STEP=DURATION` (repeatable, e.g. `--max-age extract-psd=3d --max-age
/// export-serving=2h`) it is a health check: exit 1 when a named step's last success (for an
/// extractor: its last confirmation of upstream) is older than that, or it never succeeded.
/// `--max-data-age DATASET=DURATION` (e.g. psd=62d) bounds the age of the data itself: the time
/// since the dataset's extractor last landed new content. Exit codes: 0 healthy; 1 stale or the
/// state DB cannot be read; 2 usage.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// The state DB (default `$LANDING_DIR/.state.sqlite`)
    #[arg(long, env = env_vars::STATE_DB, value_name = "PATH", global = true)]
    state_db: Option<PathBuf>,

    /// Landing directory: its datasets' extractors are listed, and it holds the default state DB
    /// [default: data/landing, or the server's /data/materia/landing when there is no
    /// data/landing here]
    #[arg(long, env = env_vars::LANDING_DIR, value_name = "DIR", global = true)]
    landing_dir: Option<PathBuf>,

    /// Largest acceptable age of a step's last success, as STEP=DURATION (30m, 6h, 35d); for an
    /// extractor a success is any confirmation of upstream (a new file, a 304, an unchanged
    /// download)
    #[arg(long, value_name = "STEP=DURATION", value_parser = parse_max_age)]
    max_age: Vec<(String, Duration)>,

    /// Largest acceptable age of a dataset's newest content, as DATASET=DURATION (e.g.
    /// psd=62d): the time since its extractor last landed a new file, whatever it confirmed
    #[arg(long, value_name = "DATASET=DURATION", value_parser = parse_max_age)]
    max_data_age: Vec<(String, Duration)>,

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

    /// With --extractors: only those whose failure does not fail the cycle (`required = false`)
    #[arg(long, requires = "extractors")]
    optional: bool,

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
    /// Clear a release tag's bad mark: deploy-poll tries the tag again at its next poll
    ///
    /// deploy-poll marks a tag bad for good when its build, restart or health check fails. When
    /// the cause lay outside the release (a full disk, an outage), clear it with this. Run it
    /// as the state DB's owner (the service user). Exit codes: 0 cleared (or not marked); 1 the
    /// state DB cannot be written; 2 usage.
    ClearBad {
        /// The release tag, e.g. v42
        tag: String,
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
            let listed: Vec<_> = w.iter().filter(|w| !args.optional || !w.required).collect();
            let all: Vec<String> = listed.iter().map(|w| w.binary.clone()).collect();
            let value = serde_json::json!(
                listed
                    .iter()
                    .map(|w| serde_json::json!({"binary": w.binary, "dataset": w.dataset, "required": w.required}))
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

/// The landing directory of a Materia server (README, "Where data lives").
const SERVER_LANDING_DIR: &str = "/data/materia/landing";
/// The development default, relative to the repository.
const DEV_LANDING_DIR: &str = "data/landing";

/// `--landing-dir` / `LANDING_DIR` when given; else `data/landing` when it exists here; else the
/// server's landing directory when it exists (so `materia-status` works bare on the server);
/// else `data/landing`, which the error then names.
fn landing_dir(given: Option<&PathBuf>) -> PathBuf {
    resolve_landing_dir(
        given,
        std::path::Path::new(DEV_LANDING_DIR),
        std::path::Path::new(SERVER_LANDING_DIR),
    )
}

fn resolve_landing_dir(
    given: Option<&PathBuf>,
    dev: &std::path::Path,
    server: &std::path::Path,
) -> PathBuf {
    if let Some(dir) = given {
        return dir.clone();
    }
    if !dev.exists() && server.is_dir() {
        return server.to_path_buf();
    }
    dev.to_path_buf()
}

fn main() -> ExitCode {
    let mut args: Args = match step_runtime::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    args.landing_dir = Some(landing_dir(args.landing_dir.as_ref()));
    let landing = args.landing_dir.clone().unwrap_or_default();
    let state_db = args
        .state_db
        .clone()
        .unwrap_or_else(|| landing.join(".state.sqlite"));
    if let Some(command) = &args.command {
        if !args.max_age.is_empty() || !args.max_data_age.is_empty() {
            let message =
                "--max-age and --max-data-age are for the status table, not for a subcommand";
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
    let result = report(&state_db, &landing, &args.max_age, &args.max_data_age);
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
                    data: Vec::new(),
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
        Command::ClearBad { tag } => return clear_bad(state_db, tag, args.json),
        Command::Quarantine { file, reason } => {
            quarantine::quarantine(state_db, &landing_of(args), file, reason)
        }
        Command::Unquarantine { file, reason } => {
            quarantine::unquarantine(state_db, &landing_of(args), file, reason.as_deref())
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

fn landing_of(args: &Args) -> PathBuf {
    args.landing_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEV_LANDING_DIR))
}

fn clear_bad(state_db: &std::path::Path, tag: &str, json: bool) -> ExitCode {
    let (report, code) = match bad_tags::clear_bad(state_db, tag) {
        Ok(r) => (r, 0),
        Err(CommandError { usage, error }) => (
            ClearReport::failed(format!("{error:#}")),
            if usage { 2 } else { 1 },
        ),
    };
    if json {
        step_runtime::print_json(&report);
    } else if report.status == ClearStatus::Failed {
        let _ = writeln!(std::io::stderr(), "materia-status: {}", report.line());
    } else {
        let _ = writeln!(std::io::stdout(), "{}", report.line());
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 23: run bare on the server (no LANDING_DIR, outside a checkout) it finds the
    /// server's landing directory; a checkout's data/landing, or a given one, wins.
    #[test]
    fn the_landing_dir_falls_back_to_the_servers_outside_a_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("data/landing");
        let server = dir.path().join("srv/landing");
        // Neither: the development default, which the error then names.
        assert_eq!(resolve_landing_dir(None, &dev, &server), dev);
        std::fs::create_dir_all(&server).unwrap();
        assert_eq!(resolve_landing_dir(None, &dev, &server), server);
        std::fs::create_dir_all(&dev).unwrap();
        assert_eq!(resolve_landing_dir(None, &dev, &server), dev);
        let given = dir.path().join("elsewhere");
        assert_eq!(resolve_landing_dir(Some(&given), &dev, &server), given);
    }

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
