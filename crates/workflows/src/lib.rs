//! The workflow registry, `workflows.toml` at the repository root: one table per extractor,
//! naming its binary, the dataset it lands and its schedule. The supervisor asks
//! `materia-status --due` which extractors are due and never reads the file itself.
//!
//! ```toml
//! [psd]
//! binary = "extract-psd"     # crates/extract-psd, declared in step-runtime's binaries.rs
//! dataset = "psd"            # LANDING_DIR/psd/...; the binary must be extract-<dataset>
//! every = "1d"               # due when its last good run is this old
//! days = [9, 10, 11, 12]     # optional: UTC days of the month with their own interval
//! days_every = "1h"          # the interval on those days
//! required = true            # optional, default true: false for a source whose failure must
//!                            # not fail the cycle's status (it is still recorded and alerted)
//! ```
//!
//! An extractor is due when its last good run (`success` or `unchanged`) is at least the
//! interval in force now old (less [`DUE_SLACK`], so that an hourly supervisor does not slip a
//! cycle), or it never succeeded, unless its latest run failed less than
//! `min(interval, FAILED_RETRY_AFTER)` ago. A due extractor is due once: after downtime it runs
//! once, not once per missed interval.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use toml::Spanned;

/// The registry's file name, at the repository (release) root.
pub const FILE_NAME: &str = "workflows.toml";
/// How much earlier than its interval an extractor counts as due.
pub const DUE_SLACK: Duration = Duration::from_secs(5 * 60);
/// How soon an extractor whose latest run failed is tried again, at most.
pub const FAILED_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The shortest interval a schedule may have.
pub const INTERVAL_MIN: Duration = Duration::from_secs(60);
/// Bound on the registry's size.
pub const FILE_BYTES_MAX: u64 = 64 * 1024;
/// Most extractors in one registry.
pub const EXTRACTORS_MAX: usize = 64;

/// One extractor of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    /// The table's name.
    pub name: String,
    /// The binary (`crates/<binary>/`), `extract-<dataset>`: its step name in the ledger.
    pub binary: String,
    pub dataset: String,
    pub schedule: Schedule,
    /// Whether a failure of this extractor fails the cycle (`supervisor.sh --once`'s status).
    /// `false` for a secondary source: an outage of FRED must not fail a cycle that PSD,
    /// the transform and the export completed. Its run is recorded and alerted all the same.
    pub required: bool,
}

/// When an extractor is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The interval on ordinary days.
    pub every: Duration,
    /// UTC days of the month on which `days_every` is the interval instead.
    pub days: BTreeSet<u8>,
    pub days_every: Option<Duration>,
}

impl Schedule {
    /// The interval in force at `now` (by its UTC day of the month).
    pub fn interval_at(&self, now: SystemTime) -> Duration {
        match self.days_every {
            Some(d) if self.days.contains(&utc_day_of_month(now)) => d,
            _ => self.every,
        }
    }

    /// Whether a run is due at `now`, given when the last good run finished and when the
    /// latest run (of any status) started and whether it failed.
    pub fn is_due(
        &self,
        now: SystemTime,
        last_good: Option<SystemTime>,
        latest: Option<(SystemTime, bool)>,
    ) -> bool {
        let interval = self.interval_at(now);
        let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
        let stale = last_good.is_none_or(|t| age(t) + DUE_SLACK >= interval);
        let resting = latest.is_some_and(|(t, failed)| {
            failed && age(t) + DUE_SLACK < interval.min(FAILED_RETRY_AFTER)
        });
        stale && !resting
    }
}

/// A registry error: the line it is on (when it has one) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

impl std::error::Error for RegistryError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkflow {
    binary: Spanned<String>,
    dataset: Spanned<String>,
    every: Spanned<String>,
    #[serde(default)]
    days: Option<Spanned<Vec<Spanned<i64>>>>,
    #[serde(default)]
    days_every: Option<Spanned<String>>,
    #[serde(default)]
    required: Option<bool>,
}

/// Reads and checks the registry at `path`.
pub fn load(path: &Path) -> Result<Vec<Workflow>, RegistryError> {
    let shown = path.display().to_string();
    let fail = |message: String| RegistryError {
        path: shown.clone(),
        line: None,
        message,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| fail(format!("cannot read: {e}")))?
        .len();
    if len > FILE_BYTES_MAX {
        return Err(fail(format!(
            "{len} bytes, more than {FILE_BYTES_MAX}: not a registry"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    parse(&text, &shown)
}

/// Parses and checks registry text; `path` names it in errors.
pub fn parse(text: &str, path: &str) -> Result<Vec<Workflow>, RegistryError> {
    let at = |span: Option<Range<usize>>, message: String| RegistryError {
        path: path.to_owned(),
        line: span.map(|s| line_of(text, s.start)),
        message,
    };
    // Deserialized with spans, so that every error names its line.
    let doc: std::collections::BTreeMap<Spanned<String>, Spanned<RawWorkflow>> =
        toml::from_str(text).map_err(|e| at(e.span(), first_line(e.message())))?;
    if doc.is_empty() {
        return Err(at(
            None,
            "no extractor: one [table] per extractor expected".into(),
        ));
    }
    if doc.len() > EXTRACTORS_MAX {
        return Err(at(None, format!("more than {EXTRACTORS_MAX} extractors")));
    }
    let mut entries: Vec<(Spanned<String>, Spanned<RawWorkflow>)> = doc.into_iter().collect();
    entries.sort_by_key(|(name, _)| name.span().start);
    let mut out: Vec<Workflow> = Vec::new();
    for (name, raw) in entries {
        let name_span = name.span();
        let name = name.into_inner();
        let raw = raw.into_inner();
        let workflow = check(&name, raw, &|span, m| at(Some(span), m))?;
        if let Some(other) = out
            .iter()
            .find(|w| w.dataset == workflow.dataset || w.binary == workflow.binary)
        {
            return Err(at(
                Some(name_span),
                format!(
                    "[{name}] lands {} with {}, as [{}] does: one extractor per dataset",
                    workflow.dataset, workflow.binary, other.name
                ),
            ));
        }
        out.push(workflow);
    }
    Ok(out)
}

type At<'a> = dyn Fn(Range<usize>, String) -> RegistryError + 'a;

fn check(name: &str, raw: RawWorkflow, at: &At<'_>) -> Result<Workflow, RegistryError> {
    let dataset = raw.dataset.get_ref();
    if dataset.is_empty()
        || !dataset
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(at(
            raw.dataset.span(),
            format!("[{name}] dataset {dataset:?}: lowercase letters, digits and _ only"),
        ));
    }
    let expected = format!("extract-{dataset}");
    if raw.binary.get_ref() != &expected {
        return Err(at(
            raw.binary.span(),
            format!(
                "[{name}] binary {:?}: an extractor of dataset {dataset} is {expected:?} (its step name in the ledger)",
                raw.binary.get_ref()
            ),
        ));
    }
    let every = interval(&raw.every, name, "every", at)?;
    let days_every = match &raw.days_every {
        Some(d) => Some(interval(d, name, "days_every", at)?),
        None => None,
    };
    let mut days = BTreeSet::new();
    if let Some(list) = &raw.days {
        for day in list.get_ref() {
            let d = *day.get_ref();
            if !(1..=31).contains(&d) {
                return Err(at(
                    day.span(),
                    format!("[{name}] days: {d} is not a day of the month (1 to 31)"),
                ));
            }
            days.insert(d as u8);
        }
        if days.is_empty() {
            return Err(at(list.span(), format!("[{name}] days is empty")));
        }
    }
    match (&raw.days, &raw.days_every) {
        (Some(list), None) => Err(at(
            list.span(),
            format!("[{name}] days without days_every: say the interval on those days"),
        )),
        (None, Some(d)) => Err(at(
            d.span(),
            format!("[{name}] days_every without days: say on which days of the month"),
        )),
        _ => Ok(Workflow {
            name: name.to_owned(),
            binary: raw.binary.into_inner(),
            dataset: raw.dataset.into_inner(),
            schedule: Schedule {
                every,
                days,
                days_every,
            },
            required: raw.required.unwrap_or(true),
        }),
    }
}

fn interval(
    text: &Spanned<String>,
    name: &str,
    key: &str,
    at: &At<'_>,
) -> Result<Duration, RegistryError> {
    let d = humantime::parse_duration(text.get_ref()).map_err(|e| {
        at(
            text.span(),
            format!(
                "[{name}] {key} = {:?}: not a duration like \"1h\" or \"1d\" ({e})",
                text.get_ref()
            ),
        )
    })?;
    if d < INTERVAL_MIN {
        return Err(at(
            text.span(),
            format!(
                "[{name}] {key} = {:?}: shorter than {}s",
                text.get_ref(),
                INTERVAL_MIN.as_secs()
            ),
        ));
    }
    Ok(d)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or("").trim().to_owned()
}

/// The UTC day of the month (1 to 31) of `t`.
pub fn utc_day_of_month(t: SystemTime) -> u8 {
    let days = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    (doy - (153 * mp + 2) / 5 + 1) as u8
}

#[cfg(test)]
mod tests;
