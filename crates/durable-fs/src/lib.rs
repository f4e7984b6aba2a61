//! Filesystem changes that survive a power cut.
//!
//! A new, renamed or removed directory entry is durable only once the directory itself has
//! been fsynced: fsync of the file makes its bytes durable, not its name. Every store and step
//! that publishes by name (landing files, serving generations, the deploy's `current` link)
//! does it through these two functions.

use std::fs::{self, File};
use std::io;
use std::path::Path;

/// fsync of a directory: the entries created, renamed or removed in it reach the disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `rename(2)` of `from` over `to`, then fsync of `to`'s directory, so that once this returns
/// the new name survives a power cut. Both paths must be in the same directory's filesystem.
pub fn rename_durably(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    let dir = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_replaces_the_target_and_syncs_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, "new").unwrap();
        fs::write(&b, "old").unwrap();
        rename_durably(&a, &b).unwrap();
        assert_eq!(fs::read_to_string(&b).unwrap(), "new");
        assert!(!a.exists());
        sync_dir(dir.path()).unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = sync_dir(&dir.path().join("absent")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let err = rename_durably(&dir.path().join("x"), &dir.path().join("y")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
