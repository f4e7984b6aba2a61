//! `materia-status`: one row per step from the state DB (last run, status, duration, last
//! success, age), and a health check: exit 1 when a step's last success is older than its
//! `--max-age`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use clap::Parser;
use materia_status::{Health, StatusReport, report, table};
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

fn main() -> ExitCode {
    let args: Args = match step_runtime::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let state_db = args
        .state_db
        .clone()
        .unwrap_or_else(|| args.landing_dir.join(".state.sqlite"));
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
}
