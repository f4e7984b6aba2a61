//! One run of a step at a time: an exclusive, non-blocking `flock` per step.
//!
//! The kernel drops the lock when the holder dies, even on `kill -9`, so a stale lock file never
//! blocks the next run. The file holds a line naming the holder, for the refusal message.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::exit::StepError;

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct StepLock {
    _file: File,
    path: PathBuf,
}

impl StepLock {
    /// Takes the lock of `step` in `dir` or fails at once with [`crate::FailureClass::Busy`].
    pub fn acquire(dir: &Path, step: &str) -> Result<StepLock, StepError> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create lock directory {}", dir.display()))?;
        let path = dir.join(format!("{step}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "an unknown process"
                } else {
                    holder
                };
                return Err(StepError::busy(anyhow::anyhow!(
                    "{step} is already running: lock {} is held by {holder}",
                    path.display()
                )));
            }
            Err(TryLockError::Error(e)) => {
                return Err(StepError::from(
                    anyhow::Error::new(e).context(format!("cannot lock {}", path.display())),
                ));
            }
        }
        let holder = format!(
            "pid {} since {}\n",
            std::process::id(),
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        );
        // The holder line is informational; failing to write it must not fail the run.
        let _ = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(holder.as_bytes()));
        Ok(StepLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FailureClass;

    #[test]
    fn second_acquire_is_busy_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = StepLock::acquire(dir.path(), "extract-psd").unwrap();
        let err = StepLock::acquire(dir.path(), "extract-psd").unwrap_err();
        assert_eq!(err.class, FailureClass::Busy);
        let message = err.message();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(first);
        StepLock::acquire(dir.path(), "extract-psd").expect("lock is free again after drop");
    }

    #[test]
    fn different_steps_do_not_block_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let a = StepLock::acquire(dir.path(), "extract-psd").unwrap();
        let b = StepLock::acquire(dir.path(), "export-serving");
        assert!(
            b.is_ok(),
            "export-serving blocked while extract-psd runs: {:?}",
            b.as_ref().err().map(StepError::message)
        );
        let b = b.unwrap();
        assert_ne!(a.path(), b.path(), "each step has a lock file of its own");
        // Each still excludes a second run of its own step.
        for step in ["extract-psd", "export-serving"] {
            let err = StepLock::acquire(dir.path(), step).unwrap_err();
            assert_eq!(err.class, FailureClass::Busy, "{step}");
        }
    }
}
