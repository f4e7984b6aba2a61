//! `materia-status quarantine` and `unquarantine`: the operator's escape hatch for a landing
//! file that breaks the transform. The ledger holds the file out of the transform (which then
//! builds from the others) until it is released; the file itself is never deleted or modified,
//! and backup-sync still backs it up.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};
use std::time::SystemTime;

use run_ledger::{Ledger, Quarantine, Quarantined};
use serde::Serialize;

use crate::limits::QUARANTINE_REASON_CHARS_MAX;

/// How a quarantine command ended (`status` of `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuarantineStatus {
    /// The file is held from now on.
    Quarantined,
    /// It was held already; nothing changed.
    AlreadyQuarantined,
    /// The file is read again from the transform's next run.
    Released,
    /// It was not held; nothing changed.
    NotQuarantined,
    Failed,
}

/// What `quarantine` and `unquarantine` print with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineReport {
    pub status: QuarantineStatus,
    pub dataset: Option<String>,
    /// Relative to the landing root: `psd/2026/11/<sha256>.csv.gzip`.
    pub path: Option<String>,
    pub sha256: Option<String>,
    pub reason: Option<String>,
    pub quarantined_at: Option<String>,
    pub released_at: Option<String>,
    pub error: Option<String>,
}

impl QuarantineReport {
    pub fn failed(error: String) -> QuarantineReport {
        QuarantineReport {
            status: QuarantineStatus::Failed,
            dataset: None,
            path: None,
            sha256: None,
            reason: None,
            quarantined_at: None,
            released_at: None,
            error: Some(error),
        }
    }

    fn of(status: QuarantineStatus, q: Quarantine) -> QuarantineReport {
        QuarantineReport {
            status,
            dataset: Some(q.dataset),
            path: Some(q.path),
            sha256: Some(q.sha256),
            reason: Some(q.reason),
            quarantined_at: Some(q.quarantined_at),
            released_at: q.released_at,
            error: None,
        }
    }

    /// The line printed without `--json`.
    pub fn line(&self) -> String {
        let path = self.path.as_deref().unwrap_or("-");
        let since = self.quarantined_at.as_deref().unwrap_or("-");
        let reason = self.reason.as_deref().unwrap_or("-");
        match self.status {
            QuarantineStatus::Quarantined => format!(
                "quarantined {path}: {reason}\nthe transform skips it from its next run; the file stays in the landing store"
            ),
            QuarantineStatus::AlreadyQuarantined => {
                format!("{path} is quarantined already, since {since}: {reason}")
            }
            QuarantineStatus::Released => format!(
                "released {path} (quarantined since {since}: {reason})\nthe transform reads it again from its next run"
            ),
            QuarantineStatus::NotQuarantined => format!("{path} is not quarantined"),
            QuarantineStatus::Failed => self.error.clone().unwrap_or_default(),
        }
    }
}

/// A command that could not be carried out: `usage` errors (a file that does not exist, a bad
/// reason) exit 2, the others 1.
#[derive(Debug)]
pub struct CommandError {
    pub usage: bool,
    pub error: anyhow::Error,
}

fn usage(message: String) -> CommandError {
    CommandError {
        usage: true,
        error: anyhow::anyhow!(message),
    }
}

impl<E: Into<anyhow::Error>> From<E> for CommandError {
    fn from(e: E) -> CommandError {
        CommandError {
            usage: false,
            error: e.into(),
        }
    }
}

/// The landing file `file` names: a content address (64 hex digits), a path relative to the
/// landing root (`psd/2026/11/<sha>.csv.gzip`), or a path to the file. It must exist in the
/// landing store at `landing_dir`.
fn resolve(landing_dir: &Path, file: &str) -> Result<landing_store::LandingFile, CommandError> {
    // Read only: a mistyped --landing-dir must not become a new, empty landing directory.
    if !landing_dir.is_dir() {
        return Err(usage(format!(
            "no landing directory at {}: set --landing-dir (or LANDING_DIR) to the pipeline's",
            landing_dir.display()
        )));
    }
    let store = landing_store::LandingStore::open_existing(landing_dir)?;
    let all = store.list_all()?;
    if let Ok(address) = landing_store::ContentAddress::parse(file) {
        let found: Vec<_> = all.into_iter().filter(|f| f.address == address).collect();
        return match found.len() {
            1 => Ok(found.into_iter().next().expect("one")),
            0 => Err(usage(format!(
                "no landing file with content address {file} under {}",
                landing_dir.display()
            ))),
            n => Err(usage(format!(
                "{n} landing files have content address {file}; name one by its path: {}",
                found
                    .iter()
                    .map(|f| f.relative.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        };
    }
    let relative = relative_to_landing(landing_dir, file)?;
    all.into_iter()
        .find(|f| f.relative == Path::new(&relative))
        .ok_or_else(|| {
            usage(format!(
                "{file} is not a landing file under {} (name one as <dataset>/YYYY/MM/<sha256>.csv.gzip, by its path, or by its sha256)",
                landing_dir.display()
            ))
        })
}

/// `file` as a path relative to the landing root: as given when it is relative and has the
/// landing layout, else resolved (symbolic links too) and taken relative to the resolved root.
fn relative_to_landing(landing_dir: &Path, file: &str) -> Result<String, CommandError> {
    if landing_store::LandingPath::parse(file).is_some() {
        return Ok(file.to_owned());
    }
    let not_under = || {
        usage(format!(
            "{file} is not a landing file under {}",
            landing_dir.display()
        ))
    };
    let root = fs::canonicalize(landing_dir).map_err(|_| not_under())?;
    let path = fs::canonicalize(file).map_err(|_| not_under())?;
    let relative = path.strip_prefix(&root).map_err(|_| not_under())?;
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    parts.map(|p| p.join("/")).ok_or_else(not_under)
}

/// A reason as the ledger keeps it: one line, not empty, bounded.
fn check_reason(reason: &str) -> Result<String, CommandError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(usage(
            "--reason must say why (it is shown by materia-status and kept in the ledger)"
                .to_owned(),
        ));
    }
    if reason.chars().count() > QUARANTINE_REASON_CHARS_MAX {
        return Err(usage(format!(
            "--reason is longer than {QUARANTINE_REASON_CHARS_MAX} characters"
        )));
    }
    if reason.chars().any(char::is_control) {
        return Err(usage(
            "--reason must be one line without control characters".to_owned(),
        ));
    }
    Ok(reason.to_owned())
}

/// A write to the state DB by another user than its owner (root by `sudo`) can leave SQLite's
/// `-wal`/`-shm` files owned by that user, which the service user then cannot open: refused.
pub(crate) fn check_owner(state_db: &Path) -> Result<(), CommandError> {
    let Ok(db) = fs::metadata(state_db) else {
        return Err(usage(format!(
            "no state DB at {}: set --state-db (or STATE_DB) to the pipeline's",
            state_db.display()
        )));
    };
    // The effective uid, as the owner of /proc/self (the workspace forbids unsafe code, so
    // no geteuid(2) through libc).
    let me = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| anyhow::anyhow!("cannot read this process's uid from /proc/self: {e}"))?;
    if db.uid() != me {
        return Err(usage(format!(
            "{} belongs to uid {}, not to this user (uid {me}); run this as its owner, e.g. `sudo -u <service user> materia-status ...`",
            state_db.display(),
            db.uid()
        )));
    }
    Ok(())
}

/// `materia-status quarantine FILE --reason TEXT`.
pub fn quarantine(
    state_db: &Path,
    landing_dir: &Path,
    file: &str,
    reason: &str,
) -> Result<QuarantineReport, CommandError> {
    let reason = check_reason(reason)?;
    check_owner(state_db)?;
    let found = resolve(landing_dir, file)?;
    let ledger = Ledger::open(state_db)?;
    let relative = found.relative.to_string_lossy();
    let at = step_runtime::iso8601(SystemTime::now());
    Ok(
        match ledger.quarantine(
            found.dataset(),
            &relative,
            found.address.as_str(),
            &reason,
            &at,
        )? {
            Quarantined::New(q) => QuarantineReport::of(QuarantineStatus::Quarantined, q),
            Quarantined::Already(q) => {
                QuarantineReport::of(QuarantineStatus::AlreadyQuarantined, q)
            }
        },
    )
}

/// `materia-status unquarantine FILE [--reason TEXT]`. FILE is matched against the held
/// quarantines first (so a file no longer in the landing store can still be released), then
/// against the landing store.
pub fn unquarantine(
    state_db: &Path,
    landing_dir: &Path,
    file: &str,
    reason: Option<&str>,
) -> Result<QuarantineReport, CommandError> {
    let reason = reason.map(check_reason).transpose()?;
    check_owner(state_db)?;
    let ledger = Ledger::open(state_db)?;
    let held = ledger.quarantined()?;
    // A held file may be gone from the store: matched by its name alone, never resolved on disk.
    let under_root = Path::new(file)
        .strip_prefix(landing_dir)
        .ok()
        .and_then(Path::to_str);
    let matching: Vec<&Quarantine> = held
        .iter()
        .filter(|q| q.sha256 == file || q.path == file || under_root == Some(q.path.as_str()))
        .collect();
    if matching.len() > 1 {
        return Err(usage(format!(
            "{} quarantined files have content address {file}; name one by its path: {}",
            matching.len(),
            matching
                .iter()
                .map(|q| q.path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let by_name = matching.first();
    let path = match by_name {
        Some(q) => q.path.clone(),
        None => resolve(landing_dir, file)?
            .relative
            .to_string_lossy()
            .into_owned(),
    };
    let at = step_runtime::iso8601(SystemTime::now());
    Ok(
        match ledger.release_quarantine(&path, reason.as_deref(), &at)? {
            Some(q) => QuarantineReport::of(QuarantineStatus::Released, q),
            None => QuarantineReport {
                status: QuarantineStatus::NotQuarantined,
                path: Some(path),
                error: None,
                ..QuarantineReport::failed(String::new())
            },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_one_bounded_line() {
        assert_eq!(check_reason("  Value n/a  ").unwrap(), "Value n/a");
        for bad in [
            String::new(),
            "   ".to_owned(),
            "two\nlines".to_owned(),
            "x".repeat(QUARANTINE_REASON_CHARS_MAX + 1),
        ] {
            let e = check_reason(&bad).unwrap_err();
            assert!(e.usage, "{bad:?}: {:#}", e.error);
        }
    }

    #[test]
    fn statuses_keep_their_strings_on_the_wire() {
        let wire = |s: QuarantineStatus| serde_json::to_value(s).unwrap();
        assert_eq!(wire(QuarantineStatus::Quarantined), "quarantined");
        assert_eq!(
            wire(QuarantineStatus::AlreadyQuarantined),
            "already-quarantined"
        );
        assert_eq!(wire(QuarantineStatus::Released), "released");
        assert_eq!(wire(QuarantineStatus::NotQuarantined), "not-quarantined");
        assert_eq!(wire(QuarantineStatus::Failed), "failed");
    }
}
