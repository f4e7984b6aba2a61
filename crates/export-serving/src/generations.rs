//! The files around the serving path: the work directory a generation is built in, the
//! previous generations kept for rollback, and the publication itself (one rename).
//!
//! Layout for `SERVING_DUCKDB_PATH=/data/analytics.duckdb`:
//! - `/data/.analytics.duckdb.export/` work directory: `<pid>.duckdb` under construction and
//!   DuckDB's spill directory. Removed at the end of a run and by the next run after a crash.
//! - `/data/analytics.duckdb.previous/<retired-at>.duckdb`: earlier generations, newest `--keep`.
//!
//! Everything lives in the serving file's directory, so the final rename never crosses a
//! filesystem.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

pub struct Paths {
    pub serving: PathBuf,
    pub dir: PathBuf,
    pub work: PathBuf,
    pub previous: PathBuf,
}

impl Paths {
    pub fn new(serving: &Path) -> anyhow::Result<Paths> {
        let name = serving
            .file_name()
            .with_context(|| format!("{} names no file", serving.display()))?
            .to_string_lossy()
            .into_owned();
        let dir = serving
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Ok(Paths {
            serving: serving.to_path_buf(),
            work: dir.join(format!(".{name}.export")),
            previous: dir.join(format!("{name}.previous")),
            dir,
        })
    }

    /// Removes whatever an earlier, interrupted run left in the work directory (the caller holds
    /// the step lock, so no run is using it) and creates it empty. Returns how many entries went.
    pub fn reset_work(&self) -> anyhow::Result<usize> {
        let mut removed = 0;
        match fs::read_dir(&self.work) {
            Ok(entries) => {
                removed = entries.count();
                fs::remove_dir_all(&self.work)
                    .with_context(|| format!("cannot remove {}", self.work.display()))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot list {}", self.work.display()));
            }
        }
        fs::create_dir_all(&self.work)
            .with_context(|| format!("cannot create {}", self.work.display()))?;
        Ok(removed)
    }

    pub fn remove_work(&self) -> anyhow::Result<()> {
        match fs::remove_dir_all(&self.work) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", self.work.display()))
            }
            _ => Ok(()),
        }
    }

    /// The kept generations, oldest first.
    pub fn kept(&self) -> anyhow::Result<Vec<PathBuf>> {
        let entries = match fs::read_dir(&self.previous) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot list {}", self.previous.display()));
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry
                .with_context(|| format!("cannot list {}", self.previous.display()))?
                .path();
            if path.extension().is_some_and(|e| e == "duckdb") {
                out.push(path);
            }
        }
        // Names are UTC timestamps: name order is age order.
        out.sort();
        Ok(out)
    }

    /// Makes `next` (complete, fsynced, in the work directory) the serving file: the current
    /// one becomes a kept generation (a second name, taken before the rename), `next` is renamed
    /// over the serving path, and generations beyond `keep` are deleted. Returns the kept ones.
    pub fn publish(
        &self,
        next: &Path,
        keep: u32,
        retired_at: &str,
    ) -> anyhow::Result<Vec<PathBuf>> {
        // A WAL beside the path belongs to the file being replaced (someone opened it
        // read-write); left there, DuckDB would replay it into the new file.
        for sidecar in sidecars(&self.serving)? {
            if sidecar.extension().is_some_and(|e| e == "wal") {
                log::warn!(
                    "removing {} left beside the serving file",
                    sidecar.display()
                );
                fs::remove_file(&sidecar)
                    .with_context(|| format!("cannot remove {}", sidecar.display()))?;
            }
        }
        if keep > 0 && self.serving.exists() {
            self.retire_current(retired_at)?;
        }
        durable_fs::rename_durably(next, &self.serving).with_context(|| {
            format!(
                "cannot rename {} over {}",
                next.display(),
                self.serving.display()
            )
        })?;
        self.prune(keep)
    }

    fn retire_current(&self, retired_at: &str) -> anyhow::Result<()> {
        let current = fs::metadata(&self.serving)
            .with_context(|| format!("cannot stat {}", self.serving.display()))?;
        // A run killed between this link and the rename already kept the current file.
        for kept in self.kept()? {
            if fs::metadata(&kept)
                .is_ok_and(|m| m.dev() == current.dev() && m.ino() == current.ino())
            {
                return Ok(());
            }
        }
        fs::create_dir_all(&self.previous)
            .with_context(|| format!("cannot create {}", self.previous.display()))?;
        let mut target = self.previous.join(format!("{retired_at}.duckdb"));
        let mut n = 1;
        while target.exists() {
            target = self.previous.join(format!("{retired_at}-{n}.duckdb"));
            n += 1;
        }
        fs::hard_link(&self.serving, &target).with_context(|| {
            format!(
                "cannot keep {} as {}",
                self.serving.display(),
                target.display()
            )
        })?;
        fsync_dir(&self.previous)
    }

    fn prune(&self, keep: u32) -> anyhow::Result<Vec<PathBuf>> {
        let mut kept = self.kept()?;
        let excess = kept.len().saturating_sub(keep as usize);
        if excess > 0 {
            for old in kept.drain(..excess) {
                fs::remove_file(&old)
                    .with_context(|| format!("cannot remove {}", old.display()))?;
                log::info!("removed generation {}", old.display());
            }
            fsync_dir(&self.previous)?;
        }
        Ok(kept)
    }
}

/// Entries beside `file` whose names start with its name and a dot (`x.duckdb.wal`,
/// `x.duckdb.tmp/`): DuckDB's sidecars.
pub fn sidecars(file: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Makes sure a closed DuckDB file stands alone: an empty WAL or an empty spill directory is
/// removed; a WAL with content (the checkpoint did not take everything) or anything unknown is
/// an error, because the file without it may not be what was written.
pub fn require_no_sidecars(file: &Path) -> anyhow::Result<()> {
    for sidecar in sidecars(file)? {
        let meta = fs::symlink_metadata(&sidecar)
            .with_context(|| format!("cannot stat {}", sidecar.display()))?;
        let is_wal = sidecar.extension().is_some_and(|e| e == "wal");
        if is_wal && meta.is_file() && meta.len() == 0 {
            fs::remove_file(&sidecar)
                .with_context(|| format!("cannot remove {}", sidecar.display()))?;
        } else if meta.is_dir() && fs::remove_dir(&sidecar).is_ok() {
            // An empty spill directory.
        } else if is_wal {
            bail!(
                "{} still holds {} bytes after the checkpoint",
                sidecar.display(),
                meta.len()
            );
        } else {
            bail!(
                "unexpected file beside {}: {}",
                file.display(),
                sidecar.display()
            );
        }
    }
    Ok(())
}

/// Makes `file` read-only for everyone (no process opens a generation read-write by mistake)
/// and flushes it to disk.
pub fn seal(file: &Path) -> anyhow::Result<()> {
    fs::set_permissions(file, fs::Permissions::from_mode(0o444))
        .with_context(|| format!("cannot make {} read-only", file.display()))?;
    File::open(file)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot fsync {}", file.display()))
}

pub fn fsync_dir(dir: &Path) -> anyhow::Result<()> {
    durable_fs::sync_dir(dir).with_context(|| format!("cannot fsync directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        fs::write(path, text).unwrap();
    }

    #[test]
    fn publish_keeps_n_generations_and_never_keeps_one_twice() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(&dir.path().join("a.duckdb")).unwrap();
        paths.reset_work().unwrap();
        for (i, stamp) in [
            "20260101T000000.000Z",
            "20260102T000000.000Z",
            "20260103T000000.000Z",
        ]
        .iter()
        .enumerate()
        {
            let next = paths.work.join("next.duckdb");
            write(&next, &format!("gen{i}"));
            let kept = paths.publish(&next, 2, stamp).unwrap();
            assert!(kept.len() <= 2);
        }
        assert_eq!(fs::read_to_string(&paths.serving).unwrap(), "gen2");
        let kept = paths.kept().unwrap();
        let contents: Vec<String> = kept
            .iter()
            .map(|p| fs::read_to_string(p).unwrap())
            .collect();
        assert_eq!(contents, ["gen0", "gen1"]);
        // A run killed after keeping the current file but before the rename keeps it once.
        paths.retire_current("20260104T000000.000Z").unwrap();
        paths.retire_current("20260105T000000.000Z").unwrap();
        assert_eq!(paths.kept().unwrap().len(), 3);
        assert_eq!(paths.prune(0).unwrap().len(), 0);
        assert_eq!(paths.kept().unwrap().len(), 0);
    }

    #[test]
    fn a_stale_wal_beside_the_serving_path_is_removed_before_the_rename() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(&dir.path().join("a.duckdb")).unwrap();
        paths.reset_work().unwrap();
        write(&paths.serving, "old");
        write(&dir.path().join("a.duckdb.wal"), "stale");
        let next = paths.work.join("n.duckdb");
        write(&next, "new");
        paths.publish(&next, 0, "20260101T000000.000Z").unwrap();
        assert!(!dir.path().join("a.duckdb.wal").exists());
        assert_eq!(fs::read_to_string(&paths.serving).unwrap(), "new");
    }

    #[test]
    fn sidecars_with_content_are_refused_and_empty_ones_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.duckdb");
        write(&file, "db");
        write(&dir.path().join("x.duckdb.wal"), "");
        fs::create_dir(dir.path().join("x.duckdb.tmp")).unwrap();
        require_no_sidecars(&file).unwrap();
        assert!(sidecars(&file).unwrap().is_empty());
        write(&dir.path().join("x.duckdb.wal"), "pending");
        let err = require_no_sidecars(&file).unwrap_err();
        assert!(
            err.to_string().contains("7 bytes after the checkpoint"),
            "{err}"
        );
    }
}
