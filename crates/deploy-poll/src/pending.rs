//! The deploy in progress, written to `<root>/.deploy-pending` before each phase that a kill
//! could interrupt, so that the next poll settles it instead of trusting a half-done deploy.
//!
//! - `building`: checking out, building or decrypting a tag. Nothing in service changed yet; a
//!   tag whose build was interrupted `BUILD_ATTEMPTS_MAX` times is recorded as bad, so a build
//!   that something outside kills every time (a unit time-out, an OOM kill) is not redone forever.
//! - `switched`: `current` may already name the new release, which is not verified. The next poll
//!   restarts it and runs the health check again: it is then deployed, or rolled back and bad.
//! - `rolling-back`: the new release failed; the next poll finishes the rollback.
//!
//! The file is replaced by rename (fsynced), so it is always one whole record or absent.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

const FILE: &str = ".deploy-pending";

/// Interrupted builds of one tag before it is recorded as bad.
pub const BUILD_ATTEMPTS_MAX: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Building,
    Switched,
    RollingBack,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub tag: String,
    /// The release current before the deploy (the rollback target).
    pub previous: Option<String>,
    pub phase: Phase,
    /// Builds of `tag` started so far, this one included.
    pub attempts: u32,
}

fn path(root: &Path) -> PathBuf {
    root.join(FILE)
}

/// The pending deploy, if a poll was interrupted. A file that cannot be parsed is an error: it
/// is never guessed at (an operator removes it after looking).
pub fn read(root: &Path) -> anyhow::Result<Option<Pending>> {
    let path = path(root);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    serde_json::from_str(&text).map(Some).with_context(|| {
        format!(
            "{} is not a pending deploy record; look at it, then remove it",
            path.display()
        )
    })
}

/// Replaces the record: temp file, fsync, rename, fsync of the directory.
pub fn write(root: &Path, pending: &Pending) -> anyhow::Result<()> {
    let path = path(root);
    let tmp = root.join(format!("{FILE}.tmp"));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(serde_json::to_string(pending)?.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        fs::File::open(root)?.sync_all()
    })();
    result.with_context(|| format!("cannot write {}", path.display()))
}

pub fn clear(root: &Path) -> anyhow::Result<()> {
    let path = path(root);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => fs::File::open(root)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot fsync {}", root.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_clearing_twice_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let p = Pending {
            tag: "v2".into(),
            previous: Some("v1".into()),
            phase: Phase::Switched,
            attempts: 1,
        };
        write(dir.path(), &p).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(p));
        clear(dir.path()).unwrap();
        clear(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), "{\"tag\": \"v2\"").unwrap();
        let err = read(dir.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a pending deploy record"),
            "{err:#}"
        );
    }
}
