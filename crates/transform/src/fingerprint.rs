//! What the transform's output depends on, as one hash: the landing manifest, the quarantined
//! landing files it skips, the project's files and where the lakehouse is. Equal fingerprints
//! mean SQLMesh would find nothing to do.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use landing_store::LandingFile;
use sha2::{Digest, Sha256};

use crate::limits::PROJECT_FILES_MAX;

/// Project entries that do not change what the transform builds.
const IGNORED: [&str; 5] = ["tests", ".cache", "logs", "__pycache__", ".venv"];

/// The fingerprint of a build from `landing`, skipping `held` (quarantined). Without quarantined
/// files it is what it was before quarantines existed, so an upgrade rebuilds nothing.
pub fn fingerprint(
    landing: &[LandingFile],
    held: &[LandingFile],
    project: &Path,
    lakehouse: &Path,
) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    h.update(b"materia-transform-fingerprint-v1\n");
    for f in landing {
        h.update(format!("landing {}\n", f.relative.display()).as_bytes());
    }
    for f in held {
        h.update(format!("quarantined {}\n", f.relative.display()).as_bytes());
    }
    project_lines(project, &mut h)?;
    h.update(format!("lakehouse {}\n", lakehouse.display()).as_bytes());
    Ok(format!("{:x}", h.finalize()))
}

/// The digest of the project's files alone (tests excepted): the history records the one it was
/// built with, and a history built with other SQL is rebuilt in full.
pub fn project_digest(project: &Path) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    h.update(b"materia-transform-project-v1\n");
    project_lines(project, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

fn project_lines(project: &Path, h: &mut Sha256) -> anyhow::Result<()> {
    let mut files = Vec::new();
    collect(project, project, &mut files)?;
    files.sort();
    for rel in &files {
        let bytes = fs::read(project.join(rel))
            .with_context(|| format!("cannot read {}", project.join(rel).display()))?;
        h.update(format!("project {} {:x}\n", rel.display(), Sha256::digest(&bytes)).as_bytes());
    }
    Ok(())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name();
        if IGNORED.iter().any(|i| name == *i) {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect(root, &path, out)?;
        } else {
            out.push(path.strip_prefix(root).expect("under root").to_path_buf());
            anyhow::ensure!(
                out.len() <= PROJECT_FILES_MAX,
                "more than {PROJECT_FILES_MAX} files under {}",
                root.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_with_landing_files_quarantines_and_model_files_but_not_tests() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("p");
        fs::create_dir_all(project.join("models")).unwrap();
        fs::create_dir_all(project.join("tests")).unwrap();
        fs::write(project.join("models/a.sql"), "SELECT 1").unwrap();
        let lake = Path::new("/x/lake.duckdb");
        let file = |c: char| LandingFile {
            address: landing_store::ContentAddress::parse(&c.to_string().repeat(64)).unwrap(),
            relative: PathBuf::from(format!("psd/2026/11/{}.csv.gzip", c.to_string().repeat(64))),
            path: PathBuf::new(),
        };
        let base = fingerprint(&[file('a')], &[], &project, lake).unwrap();
        assert_eq!(
            base,
            fingerprint(&[file('a')], &[], &project, lake).unwrap()
        );
        assert_ne!(
            base,
            fingerprint(&[file('a'), file('b')], &[], &project, lake).unwrap()
        );
        // Holding 'b' out is not the same build as without 'b', nor as reading it.
        let held = fingerprint(&[file('a')], &[file('b')], &project, lake).unwrap();
        assert_ne!(base, held);
        assert_ne!(
            held,
            fingerprint(&[file('a'), file('b')], &[], &project, lake).unwrap()
        );
        fs::write(project.join("tests/t.yaml"), "x").unwrap();
        assert_eq!(
            base,
            fingerprint(&[file('a')], &[], &project, lake).unwrap(),
            "tests do not count"
        );
        fs::write(project.join("models/a.sql"), "SELECT 2").unwrap();
        assert_ne!(
            base,
            fingerprint(&[file('a')], &[], &project, lake).unwrap()
        );
    }
}
