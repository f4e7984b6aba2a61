//! The landing store: immutable, content-addressed files under `LANDING_DIR`.
//!
//! Layout: `<dataset>/YYYY/MM/<sha256>.csv.gzip`, where the name is the SHA-256 of the
//! decompressed content, so any file can be verified by itself. A dataset is a top-level
//! directory with a dataset name ([`is_dataset_name`]); datasets are found by listing the root,
//! never declared, so a new extractor's files are backed up, fingerprinted and shown by every
//! step that iterates [`LandingStore::datasets`]. Files are born in
//! `LANDING_DIR/.tmp/`, fsynced, then hard-linked into place (which fails instead of replacing an
//! existing name), and the directories are fsynced: a file appears complete or not at all, and
//! no file under a dataset is ever modified, renamed or deleted by the pipeline.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Longest dataset name, in bytes.
pub const DATASET_NAME_BYTES_MAX: usize = 32;
/// Names that look like datasets but are not: `state/` holds state DB snapshots beside the
/// datasets on the backup remote.
pub const RESERVED_NAMES: [&str; 1] = ["state"];
/// The suffix of every landing file: a gzip of the CSV bytes.
pub const SUFFIX: &str = ".csv.gzip";
/// Where files are written before they are published.
pub const TMP_DIR: &str = ".tmp";

#[derive(Debug, thiserror::Error)]
pub enum LandingError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{0} is not a SHA-256 content address (64 lowercase hex digits)")]
    BadAddress(String),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LandingError + 'a {
    move |source| LandingError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// True for a dataset name: 1 to [`DATASET_NAME_BYTES_MAX`] of `a-z`, `0-9` and `_`, starting
/// with a letter, and not reserved. It also names the dataset's extractor step,
/// `extract-<dataset>`, and its SQLMesh variable, `landing_files_<dataset>`. Hidden entries
/// (`.tmp`, `.state.sqlite`, `.locks`) and names such as `lost+found` are never datasets.
pub fn is_dataset_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= DATASET_NAME_BYTES_MAX
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
        && !RESERVED_NAMES.contains(&name)
}

/// The datasets under the landing root `root`, by name. Creates nothing: a missing root has
/// none (status tools call this without opening the store).
pub fn datasets(root: &Path) -> Result<Vec<String>, LandingError> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("cannot list", root)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("cannot list", root))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_dataset_name(&name) && entry.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// A landing path relative to the root, taken apart: `<dataset>/YYYY/MM/<sha256>.csv.gzip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandingPath {
    pub dataset: String,
    pub year: u16,
    pub month: u8,
    pub address: ContentAddress,
}

impl LandingPath {
    /// The parts of `relative` (`/`-separated), or None unless it has the landing layout.
    pub fn parse(relative: &str) -> Option<LandingPath> {
        let parts: Vec<&str> = relative.split('/').collect();
        let [dataset, year, month, name] = parts[..] else {
            return None;
        };
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !is_dataset_name(dataset) || !digits(year, 4) || !digits(month, 2) {
            return None;
        }
        let month: u8 = month.parse().ok().filter(|m| (1..=12).contains(m))?;
        let address = ContentAddress::parse(name.strip_suffix(SUFFIX)?).ok()?;
        Some(LandingPath {
            dataset: dataset.to_owned(),
            year: year.parse().ok()?,
            month,
            address,
        })
    }
}

/// A lowercase hex SHA-256: the name of a landing file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentAddress(String);

impl ContentAddress {
    pub fn parse(s: &str) -> Result<Self, LandingError> {
        let ok = s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(ContentAddress(s.to_owned()))
        } else {
            Err(LandingError::BadAddress(s.to_owned()))
        }
    }

    pub fn from_digest(digest: &[u8]) -> Self {
        assert_eq!(digest.len(), 32, "a SHA-256 digest is 32 bytes");
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in digest {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        ContentAddress(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn file_name(&self) -> String {
        format!("{}{SUFFIX}", self.0)
    }
}

impl fmt::Display for ContentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A file in the landing store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandingFile {
    pub address: ContentAddress,
    /// Relative to the landing root, e.g. `psd/2026/11/<sha>.csv.gzip`.
    pub relative: PathBuf,
    pub path: PathBuf,
}

impl LandingFile {
    /// The dataset the file belongs to: the first component of its relative path.
    pub fn dataset(&self) -> &str {
        self.relative
            .iter()
            .next()
            .and_then(|c| c.to_str())
            .unwrap_or_default()
    }
}

/// A file being written in `.tmp/`; removed on drop unless published.
#[derive(Debug)]
pub struct TempFile {
    file: Option<File>,
    path: PathBuf,
}

impl TempFile {
    pub fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("temp file is open until published or dropped")
    }

    /// A second handle on the same file, for a writer thread.
    pub fn try_clone(&self) -> io::Result<File> {
        self.file.as_ref().expect("temp file is open").try_clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file.take();
        let _ = fs::remove_file(&self.path);
    }
}

/// What [`LandingStore::publish`] did.
#[derive(Debug)]
pub enum Published {
    /// The file is now in place.
    New(LandingFile),
    /// A file with that content address already exists at that place; nothing was written.
    AlreadyPresent(LandingFile),
}

#[derive(Debug, Clone)]
pub struct LandingStore {
    root: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl LandingStore {
    /// Opens the store, creating the root and `.tmp/` if they do not exist.
    pub fn open(root: &Path) -> Result<Self, LandingError> {
        let tmp = root.join(TMP_DIR);
        fs::create_dir_all(&tmp).map_err(io_err("cannot create landing directory", &tmp))?;
        Ok(LandingStore {
            root: root.to_path_buf(),
        })
    }

    /// Opens an existing store to read it, creating nothing (a tool that names files in the
    /// store without writing to it: a mistyped root is then an error, not a new directory).
    pub fn open_existing(root: &Path) -> Result<Self, LandingError> {
        let meta = fs::metadata(root).map_err(io_err("cannot open landing directory", root))?;
        if !meta.is_dir() {
            return Err(io_err("cannot open landing directory", root)(
                io::Error::from(io::ErrorKind::NotADirectory),
            ));
        }
        Ok(LandingStore {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }

    /// Creates a new, exclusive temp file named `<prefix>.<pid>.<n><suffix>`.
    pub fn create_temp(&self, prefix: &str, suffix: &str) -> Result<TempFile, LandingError> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self
            .tmp_dir()
            .join(format!("{prefix}.{}.{n}{suffix}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("cannot create temp file", &path))?;
        Ok(TempFile {
            file: Some(file),
            path,
        })
    }

    /// Takes over a complete file that a tool wrote somewhere under `.tmp/` (a restore's
    /// staging directory), to be [`LandingStore::publish`]ed like one of
    /// [`LandingStore::create_temp`]'s; removed on drop unless published.
    pub fn adopt_temp(&self, path: &Path) -> Result<TempFile, LandingError> {
        if !path.starts_with(self.tmp_dir()) {
            return Err(io_err("cannot adopt a file outside .tmp/", path)(
                io::Error::from(io::ErrorKind::InvalidInput),
            ));
        }
        let file = File::open(path).map_err(io_err("cannot open", path))?;
        Ok(TempFile {
            file: Some(file),
            path: path.to_path_buf(),
        })
    }

    /// Removes leftovers of killed runs: every entry of `.tmp/` whose name starts with
    /// `<prefix>.`. Call only while holding the lock of the step that owns the prefix.
    pub fn clean_temp(&self, prefix: &str) -> Result<Vec<PathBuf>, LandingError> {
        let dir = self.tmp_dir();
        let mut removed = Vec::new();
        let entries = fs::read_dir(&dir).map_err(io_err("cannot list", &dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err("cannot list", &dir))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(&format!("{prefix}.")) {
                let path = entry.path();
                let result = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                result.map_err(io_err("cannot remove leftover", &path))?;
                removed.push(path);
            }
        }
        Ok(removed)
    }

    /// The datasets of this store, by name (see [`datasets`]).
    pub fn datasets(&self) -> Result<Vec<String>, LandingError> {
        datasets(&self.root)
    }

    /// Every file of every dataset: datasets by name, each as [`LandingStore::list`] gives it.
    pub fn list_all(&self) -> Result<Vec<LandingFile>, LandingError> {
        let mut out = Vec::new();
        for dataset in self.datasets()? {
            out.extend(self.list(&dataset)?);
        }
        Ok(out)
    }

    /// Finds a file with this content address in any month of `dataset`.
    pub fn find(
        &self,
        dataset: &str,
        address: &ContentAddress,
    ) -> Result<Option<LandingFile>, LandingError> {
        let name = address.file_name();
        Ok(self
            .list(dataset)?
            .into_iter()
            .find(|f| f.relative.file_name().is_some_and(|n| *n == *name)))
    }

    /// Every file of `dataset`, oldest month first, then by name. Entries that are not
    /// `YYYY/MM/<sha256>.csv.gzip` are ignored.
    pub fn list(&self, dataset: &str) -> Result<Vec<LandingFile>, LandingError> {
        let base = self.root.join(dataset);
        let mut out = Vec::new();
        for year in sorted_children(&base, 4)? {
            for month in sorted_children(&base.join(&year), 2)? {
                let dir = base.join(&year).join(&month);
                let entries = fs::read_dir(&dir).map_err(io_err("cannot list", &dir))?;
                let mut files = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(io_err("cannot list", &dir))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let Some(stem) = name.strip_suffix(SUFFIX) else {
                        continue;
                    };
                    let Ok(address) = ContentAddress::parse(stem) else {
                        continue;
                    };
                    let relative = Path::new(dataset).join(&year).join(&month).join(&name);
                    files.push(LandingFile {
                        path: self.root.join(&relative),
                        relative,
                        address,
                    });
                }
                files.sort_by(|a, b| a.relative.cmp(&b.relative));
                out.extend(files);
            }
        }
        Ok(out)
    }

    /// Publishes a complete temp file as `<dataset>/YYYY/MM/<address>.csv.gzip`.
    ///
    /// The caller has verified that the content matches `address`. The file is fsynced, made
    /// read-only, linked into place without replacing anything, and every directory on the way
    /// is fsynced, so the new name survives a power cut once this returns.
    pub fn publish(
        &self,
        mut temp: TempFile,
        dataset: &str,
        year: u16,
        month: u8,
        address: &ContentAddress,
    ) -> Result<Published, LandingError> {
        assert!((1..=12).contains(&month), "month {month} out of range");
        assert!(
            is_dataset_name(dataset),
            "{dataset:?} is not a dataset name"
        );
        let relative = Path::new(dataset)
            .join(format!("{year:04}"))
            .join(format!("{month:02}"))
            .join(address.file_name());
        let dest = self.root.join(&relative);
        let landing = LandingFile {
            address: address.clone(),
            relative,
            path: dest.clone(),
        };

        let file = temp.file();
        file.sync_all()
            .map_err(io_err("cannot fsync", &temp.path))?;
        fs::set_permissions(&temp.path, fs::Permissions::from_mode(0o444))
            .map_err(io_err("cannot make read-only", &temp.path))?;

        let dir = dest.parent().expect("landing path has a parent");
        fs::create_dir_all(dir).map_err(io_err("cannot create landing directory", dir))?;
        match fs::hard_link(&temp.path, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Ok(Published::AlreadyPresent(landing));
            }
            Err(e) => return Err(io_err("cannot publish landing file", &dest)(e)),
        }
        // The new entry and every directory created for it must reach the disk.
        let mut d = dir.to_path_buf();
        loop {
            sync_dir(&d)?;
            if d == self.root || !d.pop() || !d.starts_with(&self.root) {
                break;
            }
        }
        drop(temp); // unlinks the temp name; the landing name keeps the data
        Ok(Published::New(landing))
    }
}

fn sorted_children(dir: &Path, digits: usize) -> Result<Vec<String>, LandingError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("cannot list", dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("cannot list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() == digits && name.bytes().all(|b| b.is_ascii_digit()) && entry.path().is_dir()
        {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// fsync of a directory makes the entries created in it durable.
pub fn sync_dir(dir: &Path) -> Result<(), LandingError> {
    durable_fs::sync_dir(dir).map_err(io_err("cannot fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const PSD: &str = "psd";

    fn addr(c: char) -> ContentAddress {
        ContentAddress::parse(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn content_address_accepts_only_lowercase_hex_of_64() {
        assert!(ContentAddress::parse(&"a".repeat(64)).is_ok());
        assert!(ContentAddress::parse(&"A".repeat(64)).is_err());
        assert!(ContentAddress::parse(&"a".repeat(63)).is_err());
        assert!(ContentAddress::parse("../../etc/passwd").is_err());
        assert_eq!(
            ContentAddress::from_digest(&[0xab; 32]).as_str(),
            "ab".repeat(32)
        );
    }

    #[test]
    fn publish_links_into_month_dir_read_only_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let store = LandingStore::open(dir.path()).unwrap();
        let mut t = store.create_temp("extract-psd", ".gz").unwrap();
        t.file().write_all(b"first").unwrap();
        let tmp_path = t.path().to_path_buf();
        let Published::New(f) = store.publish(t, PSD, 2026, 3, &addr('a')).unwrap() else {
            panic!()
        };
        assert_eq!(
            f.relative,
            Path::new("psd/2026/03").join(addr('a').file_name())
        );
        assert_eq!(fs::read(&f.path).unwrap(), b"first");
        assert!(!tmp_path.exists(), "temp name is gone after publish");
        assert_eq!(
            fs::metadata(&f.path).unwrap().permissions().mode() & 0o777,
            0o444
        );

        let mut t2 = store.create_temp("extract-psd", ".gz").unwrap();
        t2.file().write_all(b"second").unwrap();
        assert!(matches!(
            store.publish(t2, PSD, 2026, 3, &addr('a')).unwrap(),
            Published::AlreadyPresent(_)
        ));
        assert_eq!(
            fs::read(&f.path).unwrap(),
            b"first",
            "existing file untouched"
        );
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn list_and_find_span_months_and_ignore_foreign_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = LandingStore::open(dir.path()).unwrap();
        for (y, m, c) in [(2026, 11, 'b'), (2025, 1, 'c')] {
            let t = store.create_temp("x", "").unwrap();
            store.publish(t, PSD, y, m, &addr(c)).unwrap();
        }
        fs::write(dir.path().join("psd/2026/11/notes.txt"), "x").unwrap();
        fs::create_dir_all(dir.path().join("psd/abcd/01")).unwrap();
        let listed: Vec<_> = store
            .list(PSD)
            .unwrap()
            .into_iter()
            .map(|f| f.address)
            .collect();
        assert_eq!(listed, vec![addr('c'), addr('b')]);
        assert_eq!(
            store.find(PSD, &addr('b')).unwrap().unwrap().relative,
            Path::new("psd/2026/11").join(addr('b').file_name())
        );
        assert!(store.find(PSD, &addr('d')).unwrap().is_none());
        assert!(store.list("other").unwrap().is_empty());
    }

    #[test]
    fn datasets_are_the_top_directories_with_dataset_names() {
        let dir = tempfile::tempdir().unwrap();
        assert!(datasets(&dir.path().join("absent")).unwrap().is_empty());
        assert!(
            !dir.path().join("absent").exists(),
            "listing creates nothing"
        );
        let store = LandingStore::open(dir.path()).unwrap();
        for (dataset, c) in [(PSD, 'a'), ("toy_2", 'b')] {
            let t = store.create_temp("x", "").unwrap();
            store.publish(t, dataset, 2026, 1, &addr(c)).unwrap();
        }
        for other in ["lost+found", "state", "Caps", "_x", "9lives", ".locks"] {
            fs::create_dir_all(dir.path().join(other)).unwrap();
        }
        fs::write(dir.path().join("notes"), "a file, not a dataset").unwrap();
        fs::write(dir.path().join(".state.sqlite"), "").unwrap();
        assert_eq!(store.datasets().unwrap(), [PSD, "toy_2"]);
        let all: Vec<(String, ContentAddress)> = store
            .list_all()
            .unwrap()
            .into_iter()
            .map(|f| (f.dataset().to_owned(), f.address))
            .collect();
        assert_eq!(
            all,
            [(PSD.to_owned(), addr('a')), ("toy_2".to_owned(), addr('b'))]
        );
        assert!(is_dataset_name(&"a".repeat(DATASET_NAME_BYTES_MAX)));
        assert!(!is_dataset_name(&"a".repeat(DATASET_NAME_BYTES_MAX + 1)));
        assert!(!is_dataset_name(""));
    }

    #[test]
    fn landing_paths_parse_only_with_the_landing_layout() {
        let name = addr('c').file_name();
        let ok = LandingPath::parse(&format!("psd/2026/03/{name}")).unwrap();
        assert_eq!(
            (ok.dataset.as_str(), ok.year, ok.month, ok.address),
            (PSD, 2026, 3, addr('c'))
        );
        for bad in [
            format!("psd/2026/13/{name}"),
            format!("psd/26/03/{name}"),
            format!("state/2026/03/{name}"),
            format!("psd/2026/03/x/{name}"),
            format!("psd/2026/03/{}", name.replace(".csv.gzip", ".csv")),
            "psd/2026/03/stray.txt".to_owned(),
            format!("../2026/03/{name}"),
        ] {
            assert_eq!(LandingPath::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn an_adopted_file_from_a_staging_dir_is_published_under_the_same_rules() {
        let dir = tempfile::tempdir().unwrap();
        let store = LandingStore::open(dir.path()).unwrap();
        let staged = store.tmp_dir().join("restore.1/psd/2026/03/x");
        fs::create_dir_all(staged.parent().unwrap()).unwrap();
        fs::write(&staged, b"restored").unwrap();
        let t = store.adopt_temp(&staged).unwrap();
        let Published::New(f) = store.publish(t, PSD, 2026, 3, &addr('a')).unwrap() else {
            panic!()
        };
        assert_eq!(fs::read(&f.path).unwrap(), b"restored");
        assert!(!staged.exists(), "the staged name is gone after publish");
        assert_eq!(
            fs::metadata(&f.path).unwrap().permissions().mode() & 0o777,
            0o444
        );
        fs::write(&staged, b"other").unwrap();
        let t = store.adopt_temp(&staged).unwrap();
        assert!(matches!(
            store.publish(t, PSD, 2026, 3, &addr('a')).unwrap(),
            Published::AlreadyPresent(_)
        ));
        assert_eq!(fs::read(&f.path).unwrap(), b"restored", "never replaced");
        let outside = dir.path().join("elsewhere");
        fs::write(&outside, b"x").unwrap();
        assert!(store.adopt_temp(&outside).is_err());
    }

    #[test]
    fn clean_temp_removes_only_its_own_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = LandingStore::open(dir.path()).unwrap();
        let keep = store.create_temp("backup-sync", ".x").unwrap();
        let gone = store.create_temp("extract-psd", ".x").unwrap();
        let gone_path = gone.path().to_path_buf();
        std::mem::forget(gone); // as a killed run would leave it
        let removed = store.clean_temp("extract-psd").unwrap();
        assert_eq!(removed, vec![gone_path.clone()]);
        assert!(!gone_path.exists());
        assert!(keep.path().exists());
    }
}
