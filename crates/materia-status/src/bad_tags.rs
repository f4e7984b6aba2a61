//! `materia-status clear-bad TAG`: forgets that a release tag failed its deploy, so deploy-poll
//! tries it again at its next poll. deploy-poll marks a tag bad for good when its build, restart
//! or health check fails; when the cause was outside the release (a full disk, an outage the
//! health check could not tell apart), the operator clears the mark with this one command.

use std::path::Path;

use run_ledger::Ledger;
use serde::Serialize;

use crate::quarantine::{CommandError, check_owner};

/// How `clear-bad` ended (`status` of `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClearStatus {
    /// The mark was removed: deploy-poll may deploy the tag again.
    Cleared,
    /// The tag was not marked bad: nothing changed.
    NotMarked,
    Failed,
}

/// The `--json` of `materia-status clear-bad`.
#[derive(Debug, Clone, Serialize)]
pub struct ClearReport {
    pub status: ClearStatus,
    pub tag: Option<String>,
    /// Why deploy-poll had marked it.
    pub reason: Option<String>,
    pub error: Option<String>,
}

impl ClearReport {
    pub fn failed(error: String) -> ClearReport {
        ClearReport {
            status: ClearStatus::Failed,
            tag: None,
            reason: None,
            error: Some(error),
        }
    }

    /// The line printed without `--json`.
    pub fn line(&self) -> String {
        let tag = self.tag.as_deref().unwrap_or("-");
        match self.status {
            ClearStatus::Cleared => format!(
                "cleared the bad mark of {tag} (it was: {}); deploy-poll tries it at its next poll",
                self.reason.as_deref().unwrap_or("-")
            ),
            ClearStatus::NotMarked => format!("{tag} is not marked bad; nothing changed"),
            ClearStatus::Failed => self.error.clone().unwrap_or_default(),
        }
    }
}

/// `materia-status clear-bad TAG`, run as the state DB's owner (the service user).
pub fn clear_bad(state_db: &Path, tag: &str) -> Result<ClearReport, CommandError> {
    if tag.is_empty() || tag.contains('/') || tag.chars().any(char::is_control) {
        return Err(CommandError {
            usage: true,
            error: anyhow::anyhow!("{tag:?} is not a release tag (one path component, e.g. v42)"),
        });
    }
    check_owner(state_db)?;
    let ledger = Ledger::open(state_db)?;
    let reason = ledger.clear_bad_tag(tag)?;
    Ok(ClearReport {
        status: if reason.is_some() {
            ClearStatus::Cleared
        } else {
            ClearStatus::NotMarked
        },
        tag: Some(tag.to_owned()),
        reason,
        error: None,
    })
}
