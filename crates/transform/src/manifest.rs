//! The landing manifest: every landing file of every dataset, in landing order, written for the
//! SQLMesh project (`transform/config.py` reads it through `MATERIA_LANDING_MANIFEST`), so that
//! SQLMesh reads exactly the files the fingerprint covers and the step checks afterwards.
//!
//! Order within a dataset: month directory, then the order in which the ledger first recorded
//! each file as landed, then modification time (files restored without a ledger), then name.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use landing_store::LandingFile;
use run_ledger::Ledger;

/// Absolute paths of each dataset's files, oldest first, by dataset.
pub type Manifest = BTreeMap<String, Vec<String>>;

/// The manifest of `landing` (files of a store rooted at `root`): paths under `root` with its
/// symbolic links resolved, as SQLMesh reports the files it read.
pub fn build(root: &Path, landing: &[LandingFile], ledger: &Ledger) -> anyhow::Result<Manifest> {
    let root =
        fs::canonicalize(root).with_context(|| format!("cannot resolve {}", root.display()))?;
    let mut by_dataset: BTreeMap<&str, Vec<&LandingFile>> = BTreeMap::new();
    for file in landing {
        by_dataset.entry(file.dataset()).or_default().push(file);
    }
    let mut manifest = Manifest::new();
    for (dataset, files) in by_dataset {
        let first_landed: BTreeMap<String, i64> =
            ledger.landing_order(dataset)?.into_iter().collect();
        let mut keyed = Vec::with_capacity(files.len());
        for file in files {
            let path = root.join(&file.relative);
            let mtime_ns = fs::metadata(&path)
                .map(|m| i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()))
                .with_context(|| format!("cannot stat {}", path.display()))?;
            let month: PathBuf = file.relative.iter().take(3).collect();
            let relative = file.relative.to_string_lossy();
            let seq = first_landed
                .get(relative.as_ref())
                .copied()
                .unwrap_or(i64::MAX);
            keyed.push(((month, seq, mtime_ns, file.address.clone()), path));
        }
        keyed.sort();
        manifest.insert(
            dataset.to_owned(),
            keyed
                .into_iter()
                .map(|(_, p)| p.display().to_string())
                .collect(),
        );
    }
    Ok(manifest)
}

/// Writes `manifest` as JSON at `path` (temp file, then rename): `{"psd": ["/...", ...]}`.
pub fn write(path: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let text = serde_json::to_string(manifest).context("cannot serialise the landing manifest")?;
    fs::write(&tmp, text)
        .and_then(|()| fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()))
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
}

#[cfg(test)]
mod tests {
    use landing_store::{LandingStore, Published};
    use run_ledger::{Landed, RunOutcome, RunStatus};

    use super::*;

    fn address(c: char) -> landing_store::ContentAddress {
        landing_store::ContentAddress::parse(&c.to_string().repeat(64)).unwrap()
    }

    fn land(store: &LandingStore, dataset: &str, month: u8, c: char) -> LandingFile {
        let temp = store.create_temp("t", "").unwrap();
        match store
            .publish(temp, dataset, 2026, month, &address(c))
            .unwrap()
        {
            Published::New(f) | Published::AlreadyPresent(f) => f,
        }
    }

    #[test]
    fn months_first_then_the_ledgers_order_then_mtime_per_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let store = LandingStore::open(&dir.path().join("landing")).unwrap();
        let ledger = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        // Same month: 'f' is older on disk, but the ledger says 'a' landed first.
        let f = land(&store, "psd", 2, 'f');
        let a = land(&store, "psd", 2, 'a');
        land(&store, "psd", 1, 'e');
        // Without ledger rows (restored files): modification time, not the name, decides.
        let toy_d = land(&store, "toy", 1, 'd');
        let toy_c = land(&store, "toy", 1, 'c');
        let t0 = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        for (file, secs) in [(&toy_d, 0), (&toy_c, 60)] {
            fs::File::open(&file.path)
                .unwrap()
                .set_modified(t0 + std::time::Duration::from_secs(secs))
                .unwrap();
        }
        for file in [&a, &f] {
            let run = ledger.begin("extract-psd", "t").unwrap();
            let outcome = RunOutcome {
                landed: Some(Landed {
                    path: Some(file.relative.display().to_string()),
                    ..Default::default()
                }),
                ..RunOutcome::new(RunStatus::Success)
            };
            ledger.finish(run, "t", &outcome).unwrap();
        }
        let manifest = build(store.root(), &store.list_all().unwrap(), &ledger).unwrap();
        let names = |d: &str| -> Vec<String> {
            manifest[d]
                .iter()
                .map(|p| Path::new(p).file_name().unwrap().to_string_lossy()[..1].to_owned())
                .collect()
        };
        assert_eq!(names("psd"), ["e", "a", "f"]);
        assert_eq!(names("toy"), ["d", "c"]);
        assert!(Path::new(&manifest["toy"][0]).is_absolute());
        assert_eq!(
            Path::new(&manifest["toy"][0]),
            toy_d.path.canonicalize().unwrap()
        );

        let out = dir.path().join("work/landing-manifest.json");
        write(&out, &manifest).unwrap();
        let back: Manifest = serde_json::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(back, manifest);
        assert_eq!(
            fs::read_dir(out.parent().unwrap()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
