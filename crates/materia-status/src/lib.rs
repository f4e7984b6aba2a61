//! What `materia-status` shows, as a library: one row per step from the state DB (last run,
//! status, duration, last success, age) and which steps are staler than their limit. The
//! `materia-status` binary prints it; `materia-web` shows it on its `/status` page. Also the
//! landing files held in quarantine, and the commands that hold and release them.

pub mod bad_tags;
pub mod due;
pub mod limits;
pub mod quarantine;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use run_ledger::{Ledger, RunStatus, StepSummary, extractor_step};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct StepStatus {
    pub step: String,
    /// `success`, `unchanged`, `failed`, `running`, or `never` (no run recorded).
    #[serde(serialize_with = "status_or_never")]
    pub status: Option<RunStatus>,
    pub last_run: Option<String>,
    pub duration_secs: Option<f64>,
    pub last_success: Option<String>,
    pub age_secs: Option<u64>,
    pub max_age_secs: Option<u64>,
    /// The last success is older than `max_age` (or there is none).
    pub stale: bool,
    pub error: Option<String>,
    /// What the last run did, as it recorded it (the transform: incremental or full rebuild and
    /// why, files applied, rows read, changes stored, seconds).
    pub detail: Option<String>,
    /// For a failed last run: `upstream` when its source could not be reached or answered with
    /// an error (not the release's fault; the ledger row's detail), else `operational`.
    pub error_class: Option<&'static str>,
}

impl StepStatus {
    /// The status as shown: the ledger's, or `never` (no run recorded).
    pub fn status_str(&self) -> &'static str {
        self.status.map_or("never", RunStatus::as_str)
    }
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
pub enum Health {
    /// No step is older than its `--max-age`.
    Ok,
    /// A step named in `--max-age` is older, or never succeeded.
    Stale,
    /// The state DB cannot be read.
    Failed,
}

/// A landing file held out of the transform (`materia-status quarantine`).
#[derive(Debug, Clone, Serialize)]
pub struct HeldFile {
    pub dataset: String,
    /// Relative to the landing root.
    pub path: String,
    pub sha256: String,
    pub reason: String,
    pub quarantined_at: String,
}

/// The age of a dataset's newest content (`--max-data-age`), apart from its confirmations.
#[derive(Debug, Clone, Serialize)]
pub struct DataAge {
    pub dataset: String,
    /// When its extractor last landed a new file (status `success`).
    pub last_new_at: Option<String>,
    pub age_secs: Option<u64>,
    pub max_age_secs: u64,
    pub stale: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub status: Health,
    pub state_db: String,
    pub steps: Vec<StepStatus>,
    /// Steps past `--max-age`, and `data:DATASET` for datasets past `--max-data-age`.
    pub stale: Vec<String>,
    /// One entry per `--max-data-age`.
    pub data: Vec<DataAge>,
    /// Landing files the transform skips, oldest quarantine first.
    pub quarantined: Vec<HeldFile>,
    pub error: Option<String>,
}

/// A ledger timestamp (`2026-11-21T12:00:00.123Z`) as a time.
pub fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()
}

/// The row of `step` from its ledger summary, stale when its last success is older than
/// `max_age` (or it never succeeded) at `now`.
pub fn status_of(
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
        detail: summary.and_then(|s| s.detail.clone()),
        error_class: summary.filter(|s| s.status == RunStatus::Failed).map(|s| {
            if s.detail.as_deref() == Some(run_ledger::DETAIL_UPSTREAM) {
                "upstream"
            } else {
                "operational"
            }
        }),
    }
}

/// An age as operators read it: `59s`, `59m`, `2h01m`, `3d02h`.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..172_800 => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// The report as the table `materia-status` prints.
pub fn table(report: &StatusReport) -> String {
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
            s.status_str(),
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
            // scripts/health-check.sh reads `error (upstream):` under an extractor's row.
            let label = match s.error_class {
                Some("upstream") => "error (upstream)",
                _ => "error",
            };
            out.push_str(&format!("{:<16} {label}: {line}\n", ""));
        }
    }
    for d in &report.data {
        let age = d
            .age_secs
            .map_or_else(|| "never".to_owned(), |a| short(Duration::from_secs(a)));
        out.push_str(&format!(
            "\ndata {}: newest content landed {} ({age} ago), max {}{}",
            d.dataset,
            d.last_new_at.as_deref().unwrap_or("-"),
            short(Duration::from_secs(d.max_age_secs)),
            if d.stale { "  STALE" } else { "" }
        ));
    }
    if !report.data.is_empty() {
        out.push('\n');
    }
    if !report.quarantined.is_empty() {
        out.push_str(&format!(
            "\n{} landing file(s) quarantined, skipped by the transform (release: materia-status unquarantine FILE):\n",
            report.quarantined.len()
        ));
        for q in &report.quarantined {
            let reason: String = q
                .reason
                .chars()
                .take(limits::ERROR_CHARS_SHOWN_MAX)
                .collect();
            out.push_str(&format!(
                "  {}  since {}: {reason}\n",
                q.path, q.quarantined_at
            ));
        }
    }
    out
}

/// Reads every step's runs from the state DB (read-only, never created) and builds the report,
/// with `max_age` limits per step name. Every declared step, and the extractor of every dataset
/// in `landing_dir`, is listed even before its first run.
pub fn report(
    state_db: &Path,
    landing_dir: &Path,
    max_age: &[(String, Duration)],
    max_data_age: &[(String, Duration)],
) -> anyhow::Result<StatusReport> {
    let ledger = Ledger::open_read_only(state_db)?;
    let summaries = ledger
        .step_summaries()
        .context("cannot read the runs of the state DB")?;
    let by_step: BTreeMap<&str, &StepSummary> =
        summaries.iter().map(|s| (s.step.as_str(), s)).collect();
    let max_ages: BTreeMap<&str, Duration> =
        max_age.iter().map(|(s, d)| (s.as_str(), *d)).collect();
    let extractors: Vec<String> = match landing_store::datasets(landing_dir) {
        Ok(datasets) => datasets.iter().map(|d| extractor_step(d)).collect(),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "materia-status: warning: {e}");
            Vec::new()
        }
    };
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
    let mut data = Vec::new();
    for (dataset, max) in max_data_age {
        let last_new_at = ledger
            .last_new_data(dataset)
            .context("cannot read the extraction runs of the state DB")?;
        let age = last_new_at
            .as_deref()
            .and_then(parse_time)
            .map(|t| now.duration_since(t).unwrap_or_default());
        data.push(DataAge {
            dataset: dataset.clone(),
            last_new_at,
            age_secs: age.map(|a| a.as_secs()),
            max_age_secs: max.as_secs(),
            stale: age.is_none_or(|a| a > *max),
        });
    }
    let stale: Vec<String> = steps
        .iter()
        .filter(|s| s.stale)
        .map(|s| s.step.clone())
        .chain(
            data.iter()
                .filter(|d| d.stale)
                .map(|d| format!("data:{}", d.dataset)),
        )
        .collect();
    let quarantined = ledger
        .quarantined()
        .context("cannot read the quarantined landing files of the state DB")?
        .into_iter()
        .map(|q| HeldFile {
            dataset: q.dataset,
            path: q.path,
            sha256: q.sha256,
            reason: q.reason,
            quarantined_at: q.quarantined_at,
        })
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
        data,
        quarantined,
        error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // Hours and minutes up to two days, then days and hours.
        assert_eq!(short(Duration::from_secs(172_799)), "47h59m");
        assert_eq!(short(Duration::from_secs(172_800)), "2d00h");
        assert_eq!(short(Duration::from_secs(3 * 86_400 + 7_200)), "3d02h");
    }
}
