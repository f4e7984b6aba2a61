//! `materia-status`: one row per step from the state DB (last run, status, duration, last
//! success, age), and a health check: exit 1 when a step's last success is older than its
//! `--max-age`.

mod limits;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use clap::Parser;
use run_ledger::{Ledger, RunStatus, StepSummary, extractor_step};
use serde::Serialize;
use step_runtime::env_vars;

/// Show the last run and last success of every Materia step; exit 1 if one is too old
///
/// Reads the state DB (read-only). With `--max-age STEP=DURATION` (repeatable, e.g.
/// `--max-age extract-psd=35d --max-age export-serving=2h`) it is a health check: exit 1 when a
/// named step's last success is older than that, or it never succeeded. Exit codes: 0 healthy;
/// 1 stale or the state DB cannot be read; 2 usage.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The state DB (default `$LANDING_DIR/.state.sqlite`)
    #[arg(long, env = env_vars::STATE_DB, value_name = "PATH")]
    state_db: Option<PathBuf>,

    /// Landing directory: its datasets' extractors are listed, and it holds the default state DB
    #[arg(long, env = env_vars::LANDING_DIR, value_name = "DIR", default_value = "data/landing")]
    landing_dir: PathBuf,

    /// Largest acceptable age of a step's last success, as STEP=DURATION (30m, 6h, 35d)
    #[arg(long, value_name = "STEP=DURATION", value_parser = parse_max_age)]
    max_age: Vec<(String, Duration)>,

    /// Print one JSON object instead of the table
    #[arg(long)]
    json: bool,
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

#[derive(Debug, Serialize)]
struct StepStatus {
    step: String,
    /// `success`, `unchanged`, `failed`, `running`, or `never` (no run recorded).
    #[serde(serialize_with = "status_or_never")]
    status: Option<RunStatus>,
    last_run: Option<String>,
    duration_secs: Option<f64>,
    last_success: Option<String>,
    age_secs: Option<u64>,
    max_age_secs: Option<u64>,
    /// The last success is older than `max_age` (or there is none).
    stale: bool,
    error: Option<String>,
}

fn status_or_never<S: serde::Serializer>(
    status: &Option<RunStatus>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(status.map_or("never", RunStatus::as_str))
}

/// The health of the whole (`status` of `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Health {
    /// No step is older than its `--max-age`.
    Ok,
    /// A step named in `--max-age` is older, or never succeeded.
    Stale,
    /// The state DB cannot be read.
    Failed,
}

#[derive(Debug, Serialize)]
struct StatusReport {
    status: Health,
    state_db: String,
    steps: Vec<StepStatus>,
    stale: Vec<String>,
    error: Option<String>,
}

fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()
}

fn status_of(
    step: &str,
    summary: Option<&StepSummary>,
    max_age: Option<Duration>,
    now: SystemTime,
) -> StepStatus {
    let last_success = summary.and_then(|s| s.last_success_at.clone());
    let age = last_success
        .as_deref()
        .and_then(parse_time)
        .map(|t| now.duration_since(t).unwrap_or_default());
    let duration_secs = summary.and_then(|s| {
        let start = parse_time(&s.started_at)?;
        let end = parse_time(s.finished_at.as_deref()?)?;
        Some(end.duration_since(start).unwrap_or_default().as_secs_f64())
    });
    let stale = max_age.is_some_and(|max| age.is_none_or(|a| a > max));
    StepStatus {
        step: step.to_owned(),
        status: summary.map(|s| s.status),
        last_run: summary.map(|s| s.started_at.clone()),
        duration_secs,
        last_success,
        age_secs: age.map(|a| a.as_secs()),
        max_age_secs: max_age.map(|m| m.as_secs()),
        stale,
        error: summary.and_then(|s| s.error.clone()),
    }
}

fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..172_800 => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3_600),
    }
}

fn table(report: &StatusReport) -> String {
    let mut out = format!(
        "{:<16} {:<10} {:<25} {:>9} {:<25} {:>8}\n",
        "STEP", "STATUS", "LAST RUN", "DURATION", "LAST SUCCESS", "AGE"
    );
    for s in &report.steps {
        let age = s
            .age_secs
            .map_or_else(|| "-".to_owned(), |a| short(Duration::from_secs(a)));
        let flag = if s.stale {
            format!(
                "  STALE (max {})",
                short(Duration::from_secs(s.max_age_secs.unwrap_or(0)))
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{:<16} {:<10} {:<25} {:>9} {:<25} {:>8}{flag}\n",
            s.step,
            s.status.map_or("never", RunStatus::as_str),
            s.last_run.as_deref().unwrap_or("-"),
            s.duration_secs
                .map_or_else(|| "-".to_owned(), |d| format!("{d:.1}s")),
            s.last_success.as_deref().unwrap_or("-"),
            age,
        ));
        if s.status == Some(RunStatus::Failed)
            && let Some(e) = &s.error
        {
            let line: String = e.chars().take(limits::ERROR_CHARS_SHOWN_MAX).collect();
            out.push_str(&format!("{:<16} error: {line}\n", ""));
        }
    }
    out
}

fn report(args: &Args, state_db: &std::path::Path) -> anyhow::Result<StatusReport> {
    let ledger = Ledger::open_read_only(state_db)?;
    let summaries = ledger
        .step_summaries()
        .context("cannot read the runs of the state DB")?;
    let by_step: BTreeMap<&str, &StepSummary> =
        summaries.iter().map(|s| (s.step.as_str(), s)).collect();
    let max_ages: BTreeMap<&str, Duration> =
        args.max_age.iter().map(|(s, d)| (s.as_str(), *d)).collect();
    // The extractor of every dataset in landing is listed, even before its first run.
    let extractors: Vec<String> = match landing_store::datasets(&args.landing_dir) {
        Ok(datasets) => datasets.iter().map(|d| extractor_step(d)).collect(),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "materia-status: warning: {e}");
            Vec::new()
        }
    };
    // The declared steps, listed even before their first run.
    let mut names: Vec<&str> = step_runtime::binaries::steps().collect();
    let found = extractors.iter().map(String::as_str);
    for s in found
        .chain(by_step.keys().copied())
        .chain(max_ages.keys().copied())
    {
        if !names.contains(&s) {
            names.push(s);
        }
    }
    let now = SystemTime::now();
    let steps: Vec<StepStatus> = names
        .iter()
        .map(|name| {
            status_of(
                name,
                by_step.get(name).copied(),
                max_ages.get(name).copied(),
                now,
            )
        })
        .collect();
    let stale: Vec<String> = steps
        .iter()
        .filter(|s| s.stale)
        .map(|s| s.step.clone())
        .collect();
    Ok(StatusReport {
        status: if stale.is_empty() {
            Health::Ok
        } else {
            Health::Stale
        },
        state_db: state_db.display().to_string(),
        steps,
        stale,
        error: None,
    })
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
    let result = report(&args, &state_db);
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

    #[test]
    fn a_step_without_success_is_stale_only_under_a_max_age() {
        let now = SystemTime::now();
        assert!(!status_of("x", None, None, now).stale);
        assert!(status_of("x", None, Some(Duration::from_secs(1)), now).stale);
    }

    #[test]
    fn statuses_keep_their_strings_on_the_wire() {
        let wire = |h: Health| serde_json::to_value(h).unwrap();
        assert_eq!(wire(Health::Ok), "ok");
        assert_eq!(wire(Health::Stale), "stale");
        assert_eq!(wire(Health::Failed), "failed");
        let now = SystemTime::now();
        let never = serde_json::to_value(status_of("x", None, None, now)).unwrap();
        assert_eq!(never["status"], "never");
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(short(Duration::from_secs(59)), "59s");
        assert_eq!(short(Duration::from_secs(3_599)), "59m");
        assert_eq!(short(Duration::from_secs(7_260)), "2h01m");
        assert_eq!(short(Duration::from_secs(3 * 86_400 + 7_200)), "3d02h");
    }
}
