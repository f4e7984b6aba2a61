//! push, verify and restore, of every dataset of the landing store (found by listing it, and
//! the remote's top level on restore): a new extractor's files are backed up without a change
//! here.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};
use landing_store::{ContentAddress, LandingPath, LandingStore, Published};
use md5::{Digest as _, Md5};
use run_ledger::{Ledger, RunOutcome, RunStatus};
use serde::Serialize;
use sha2::Sha256;
use step_runtime::{Metric, Report, ResultExt, StepContext, StepError, UtcDateTime, run_recorded};

use crate::limits::MISMATCHES_SHOWN_MAX;
use crate::rclone::{Listed, R2Credentials, Rclone, Remote};
use crate::{Args, Cmd};

/// The step's name in the ledger, locks and metrics.
pub const STEP: &str = "backup-sync";
/// Prefix of this step's files in `LANDING_DIR/.tmp/`.
const TEMP_PREFIX: &str = "backup-sync";
/// Where state DB snapshots go on the remote (a name no dataset may have).
const STATE_DIR: &str = "state";
/// Prefix of a restore's staging directory in `<to>/.tmp/` (not `TEMP_PREFIX.`, so a restore
/// into `LANDING_DIR` never removes this run's own temp files).
const RESTORE_PREFIX: &str = "backup-sync-restore";

/// How a run of `backup-sync` ended (`status` of `--json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncStatus {
    /// Everything was pushed, verified or restored intact.
    Ok,
    /// Mismatches were found (listed), or the run could not finish.
    #[default]
    Failed,
}

impl From<SyncStatus> for RunStatus {
    fn from(status: SyncStatus) -> RunStatus {
        match status {
            SyncStatus::Ok => RunStatus::Success,
            SyncStatus::Failed => RunStatus::Failed,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    pub status: SyncStatus,
    pub command: Option<&'static str>,
    pub remote: Option<String>,
    /// Landing files uploaded (push).
    pub uploaded: Option<u64>,
    /// Landing files already remote with the same content (push), or checked (verify, restore).
    pub skipped: Option<u64>,
    /// Bytes uploaded (push) or restored (restore).
    pub bytes: Option<u64>,
    /// Files whose remote or restored copy is missing or differs.
    pub mismatches: Option<Vec<String>>,
    /// The state DB snapshot uploaded by push.
    pub state_snapshot: Option<String>,
    pub error: Option<String>,
}

impl Report for SyncReport {
    fn failed(error: String) -> Self {
        SyncReport {
            status: SyncStatus::Failed,
            error: Some(error),
            ..Default::default()
        }
    }

    fn failure(&self) -> Option<String> {
        self.error
            .clone()
            .filter(|_| self.status == SyncStatus::Failed)
    }

    fn metrics(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        if let Some(n) = self.uploaded {
            out.push(Metric::new(
                "uploaded_files",
                "Landing files uploaded",
                n as f64,
            ));
        }
        if let Some(n) = self.bytes {
            out.push(Metric::new("bytes", "Bytes uploaded or restored", n as f64));
        }
        if let Some(m) = &self.mismatches {
            out.push(Metric::new(
                "mismatches",
                "Files whose copy is missing or differs",
                m.len() as f64,
            ));
        }
        out
    }

    fn outcome(&self) -> RunOutcome {
        RunOutcome {
            detail: Some(describe(self)),
            error: self.failure(),
            ..RunOutcome::new(self.status.into())
        }
    }
}

pub fn run(ctx: &StepContext, args: &Args) -> Result<SyncReport, StepError> {
    let env = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
    let remote = Remote::parse(
        &args.remote,
        R2Credentials {
            access_key_id: env(step_runtime::env_vars::R2_ACCESS_KEY_ID),
            secret_access_key: env(step_runtime::env_vars::R2_SECRET_ACCESS_KEY),
            endpoint: env(step_runtime::env_vars::R2_ENDPOINT),
        },
    )
    .or_usage()?;
    let ledger = Ledger::open(&ctx.config.state_db)?;
    let command = match args.command {
        Cmd::Push => "push",
        Cmd::Verify => "verify",
        Cmd::Restore { .. } => "restore",
    };
    run_recorded(ctx, &ledger, || {
        let store = LandingStore::open(&ctx.config.landing_dir)?;
        let removed = store.clean_temp(TEMP_PREFIX)?;
        if !removed.is_empty() {
            log::info!(
                "removed {} leftover(s) of an interrupted run",
                removed.len()
            );
        }
        let config = store.create_temp(TEMP_PREFIX, ".rclone.conf")?;
        let rclone = Rclone {
            program: args.rclone.clone(),
            remote,
            timeout: Duration::from_secs(args.timeout_secs),
            config: config.path().to_path_buf(),
        };
        let mut report = match &args.command {
            Cmd::Push => push(&store, &ledger, &rclone),
            Cmd::Verify => verify(&store, &rclone),
            Cmd::Restore { to, max_csv_bytes } => restore(&rclone, &ledger, to, *max_csv_bytes),
        }?;
        report.command = Some(command);
        report.remote = Some(rclone.remote.display());
        Ok(report)
    })
}

fn describe(r: &SyncReport) -> String {
    format!(
        "{} {}: uploaded {}, checked {}, {} bytes, {} mismatches",
        r.command.unwrap_or("?"),
        r.remote.as_deref().unwrap_or("?"),
        r.uploaded.unwrap_or(0),
        r.skipped.unwrap_or(0),
        r.bytes.unwrap_or(0),
        r.mismatches.as_ref().map_or(0, Vec::len)
    )
}

/// A report that fails because of `mismatches` (listed, then counted).
fn with_mismatches(mut report: SyncReport, what: &str, mismatches: Vec<String>) -> SyncReport {
    if mismatches.is_empty() {
        report.status = SyncStatus::Ok;
        report.mismatches = Some(mismatches);
        return report;
    }
    let shown: Vec<&str> = mismatches
        .iter()
        .take(MISMATCHES_SHOWN_MAX)
        .map(String::as_str)
        .collect();
    report.status = SyncStatus::Failed;
    report.error = Some(format!(
        "{} {what}: {}{}",
        mismatches.len(),
        shown.join("; "),
        if mismatches.len() > shown.len() {
            "; ..."
        } else {
            ""
        }
    ));
    report.mismatches = Some(mismatches);
    report
}

fn relative(f: &landing_store::LandingFile) -> String {
    f.relative.to_string_lossy().into_owned()
}

/// Every object under `dir` of the remote, by path relative to the remote root.
fn list_remote(rclone: &Rclone, dir: &str) -> anyhow::Result<BTreeMap<String, Listed>> {
    list(rclone, dir, None)
}

/// The objects of the remote named in `paths_file` (a --files-from-raw list of paths relative
/// to the remote root): rclone lists only the directories that hold them.
fn list_remote_files(
    rclone: &Rclone,
    paths_file: &Path,
) -> anyhow::Result<BTreeMap<String, Listed>> {
    list(rclone, "", Some(paths_file))
}

fn list(
    rclone: &Rclone,
    dir: &str,
    paths_file: Option<&Path>,
) -> anyhow::Result<BTreeMap<String, Listed>> {
    let target = rclone.remote.join(dir);
    let paths_file = paths_file.map(|p| p.display().to_string());
    let mut args = vec![
        "lsjson",
        "--recursive",
        "--files-only",
        "--hash",
        "--hash-type",
        "md5",
        // Not read, and costly: on S3 an object's modification time and MIME type are in its
        // metadata, one HEAD request per object (2,000 files against moto: 9.0 s, 0.7 s
        // without). MD5s come with the listing (ETags), and are all the comparison uses.
        "--no-modtime",
        "--no-mimetype",
    ];
    if let Some(file) = &paths_file {
        args.extend(["--files-from-raw", file]);
    }
    args.push(&target);
    let out = rclone.run(&args)?;
    // 3: the directory does not exist (a local remote before the first push).
    if out.code == Some(3) {
        return Ok(BTreeMap::new());
    }
    if out.code != Some(0) {
        bail!("cannot list {target}: {}", out.stderr.trim());
    }
    let listed: Vec<Listed> =
        serde_json::from_slice(&out.stdout).context("rclone lsjson printed something else")?;
    Ok(listed
        .into_iter()
        .map(|l| {
            let path = if dir.is_empty() {
                l.path.clone()
            } else {
                format!("{dir}/{}", l.path)
            };
            (path, l)
        })
        .collect())
}

fn md5_file(path: &Path) -> io::Result<String> {
    let mut hasher = Md5::new();
    io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// The MD5 of a landing file, computed once and kept in the state DB (landing files never
/// change under their name).
fn local_md5(ledger: &Ledger, rel: &str, path: &Path, size: u64) -> anyhow::Result<String> {
    if let Some(md5) = ledger.file_md5(rel, size)? {
        return Ok(md5);
    }
    let md5 = md5_file(path).with_context(|| format!("cannot read {}", path.display()))?;
    ledger.record_file_md5(rel, size, &md5)?;
    Ok(md5)
}

/// A list of relative paths for rclone's --files-from-raw, in `.tmp/`.
fn write_list(store: &LandingStore, paths: &[String]) -> anyhow::Result<landing_store::TempFile> {
    let mut list = store.create_temp(TEMP_PREFIX, ".list")?;
    let mut text = String::new();
    for p in paths {
        text.push_str(p);
        text.push('\n');
    }
    list.file()
        .write_all(text.as_bytes())
        .context("cannot write the file list")?;
    Ok(list)
}

/// Compares local files that are already remote: same size, same MD5 where the remote knows
/// it, and a byte comparison (download) where it does not.
fn compare_existing(
    store: &LandingStore,
    ledger: &Ledger,
    rclone: &Rclone,
    pairs: &[(&landing_store::LandingFile, &Listed, u64)],
) -> anyhow::Result<Vec<String>> {
    let mut mismatches = Vec::new();
    let mut unknown = Vec::new();
    for (file, listed, size) in pairs {
        let rel = relative(file);
        if listed.size != *size as i64 {
            mismatches.push(format!(
                "{rel}: remote object has {} bytes, the landing file {size}",
                listed.size
            ));
            continue;
        }
        match listed.md5() {
            Some(remote) => {
                let local = local_md5(ledger, &rel, &file.path, *size)?;
                if remote != local {
                    mismatches.push(format!(
                        "{rel}: remote content differs (md5 {remote}, landing file {local})"
                    ));
                }
            }
            None => unknown.push(rel),
        }
    }
    if !unknown.is_empty() {
        mismatches.extend(check_by_download(store, rclone, &unknown)?);
    }
    Ok(mismatches)
}

/// `rclone check --download` of `paths` (relative to both roots): the ones missing remotely or
/// differing byte for byte.
fn check_by_download(
    store: &LandingStore,
    rclone: &Rclone,
    paths: &[String],
) -> anyhow::Result<Vec<String>> {
    let list = write_list(store, paths)?;
    let combined = store.create_temp(TEMP_PREFIX, ".combined")?;
    let root = store.root().display().to_string();
    let out = rclone.run(&[
        "check",
        "--one-way",
        "--download",
        "--files-from-raw",
        &list.path().display().to_string(),
        "--combined",
        &combined.path().display().to_string(),
        &root,
        &rclone.remote.join(""),
    ])?;
    if !matches!(out.code, Some(0 | 1)) {
        bail!("rclone check failed: {}", out.stderr.trim());
    }
    let text = fs::read_to_string(combined.path()).context("cannot read rclone's report")?;
    let mut mismatches = Vec::new();
    for line in text.lines() {
        let (mark, path) = line.split_at(line.len().min(2));
        match mark.trim() {
            "=" => {}
            "+" => mismatches.push(format!("{path}: missing on the remote")),
            "*" => mismatches.push(format!("{path}: remote content differs")),
            "!" => mismatches.push(format!("{path}: cannot be read for comparison")),
            _ => {}
        }
    }
    if out.code == Some(1) && mismatches.is_empty() {
        bail!(
            "rclone check reported differences it did not list: {}",
            out.stderr.trim()
        );
    }
    Ok(mismatches)
}

fn push(store: &LandingStore, ledger: &Ledger, rclone: &Rclone) -> anyhow::Result<SyncReport> {
    let mut local = Vec::new();
    let mut remote = BTreeMap::new();
    for dataset in store.datasets()? {
        local.extend(store.list(&dataset)?);
        remote.extend(list_remote(rclone, &dataset)?);
    }
    let mut missing = Vec::new();
    let mut existing = Vec::new();
    for file in &local {
        let size = fs::metadata(&file.path)
            .with_context(|| format!("cannot stat {}", file.path.display()))?
            .len();
        match remote.get(&relative(file)) {
            Some(listed) => existing.push((file, listed, size)),
            None => missing.push((file, size)),
        }
    }
    let mut mismatches = compare_existing(store, ledger, rclone, &existing)?;

    let mut bytes = 0;
    if !missing.is_empty() {
        let paths: Vec<String> = missing.iter().map(|(f, _)| relative(f)).collect();
        log::info!(
            "uploading {} landing file(s) to {}",
            paths.len(),
            rclone.remote.display()
        );
        let list = write_list(store, &paths)?;
        // --immutable: an object that appeared meanwhile is never replaced.
        rclone.run_ok(&[
            "copy",
            "--immutable",
            "--no-traverse",
            "--files-from-raw",
            &list.path().display().to_string(),
            &store.root().display().to_string(),
            &rclone.remote.join(""),
        ])?;
        // Read back what the remote now holds for them (and only them).
        let after = list_remote_files(rclone, list.path())?;
        let uploaded: Vec<_> = missing
            .iter()
            .map(|(f, size)| {
                after
                    .get(&relative(f))
                    .map(|l| (*f, l, *size))
                    .ok_or_else(|| anyhow!("{} is not on the remote after its upload", relative(f)))
            })
            .collect::<anyhow::Result<_>>()?;
        let wrong = compare_existing(store, ledger, rclone, &uploaded)?;
        if !wrong.is_empty() {
            bail!("uploads did not arrive intact: {}", wrong.join("; "));
        }
        bytes = missing.iter().map(|(_, s)| s).sum();
    }

    let snapshot = push_state(store, ledger, rclone)?;
    let report = SyncReport {
        uploaded: Some(missing.len() as u64),
        skipped: Some(existing.len() as u64),
        bytes: Some(bytes),
        state_snapshot: Some(snapshot),
        ..Default::default()
    };
    mismatches.sort();
    Ok(with_mismatches(
        report,
        "remote object(s) differ from their landing file and were left alone (never overwritten)",
        mismatches,
    ))
}

/// Uploads a snapshot of the state DB (SQLite backup API) under a new name.
fn push_state(store: &LandingStore, ledger: &Ledger, rclone: &Rclone) -> anyhow::Result<String> {
    let temp = store.create_temp(TEMP_PREFIX, ".state.sqlite")?;
    // The backup API writes a database of its own at that path.
    fs::remove_file(temp.path()).context("cannot prepare the state snapshot")?;
    ledger.snapshot_to(temp.path())?;
    let now = UtcDateTime::of(SystemTime::now());
    let name = format!(
        "{STATE_DIR}/{:04}/{:02}/state-{}.sqlite",
        now.year,
        now.month,
        now.compact()
    );
    rclone.run_ok(&[
        "copyto",
        "--immutable",
        &temp.path().display().to_string(),
        &rclone.remote.join(&name),
    ])?;
    Ok(name)
}

fn verify(store: &LandingStore, rclone: &Rclone) -> anyhow::Result<SyncReport> {
    let local: Vec<String> = store.list_all()?.iter().map(relative).collect();
    let mismatches = if local.is_empty() {
        Vec::new()
    } else {
        check_by_download(store, rclone, &local)?
    };
    let report = SyncReport {
        skipped: Some((local.len() - mismatches.len()) as u64),
        ..Default::default()
    };
    Ok(with_mismatches(
        report,
        "landing file(s) are not backed up intact",
        mismatches,
    ))
}

/// What a restored file must be besides its content address: the dataset's validator (PSD's
/// streaming CSV validator for `psd`, as extract-psd validates a download) within the
/// decompressed-size cap, and the ledger's row count for its address when the ledger has one.
struct RestoreChecks {
    csv_bytes_max: u64,
    /// Data rows by content address, per dataset, from the state DB's successful extractions.
    ledger_rows: BTreeMap<String, BTreeMap<String, u64>>,
}

impl RestoreChecks {
    fn new(ledger: &Ledger, datasets: &[String], csv_bytes_max: u64) -> anyhow::Result<Self> {
        let mut ledger_rows = BTreeMap::new();
        for dataset in datasets {
            let rows: BTreeMap<String, u64> = ledger
                .landed_rows(dataset)
                .context("cannot read the landed row counts of the state DB")?
                .into_iter()
                .collect();
            ledger_rows.insert(dataset.clone(), rows);
        }
        Ok(RestoreChecks {
            csv_bytes_max,
            ledger_rows,
        })
    }
}

/// Feeds the decompressed bytes of a file of `dataset` to its validator. Datasets without one
/// are checked by content address alone (docs/INTERFACES.md, `backup-sync`).
enum ContentCheck {
    Psd(Box<psd_format::CsvValidator>),
    AddressOnly,
}

impl ContentCheck {
    fn of(dataset: &str) -> ContentCheck {
        match dataset {
            "psd" => ContentCheck::Psd(Box::new(psd_format::CsvValidator::new())),
            _ => ContentCheck::AddressOnly,
        }
    }
}

/// A writer that hashes and validates what it is given, refusing more than `cap` bytes.
struct Checked {
    hasher: Sha256,
    content: ContentCheck,
    bytes: u64,
    cap: u64,
    invalid: Option<String>,
}

impl Write for Checked {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes += buf.len() as u64;
        if self.bytes > self.cap {
            return Err(io::Error::other(format!(
                "decompresses to more than {} bytes (--max-csv-bytes): refused as a gzip bomb",
                self.cap
            )));
        }
        self.hasher.update(buf);
        if self.invalid.is_none()
            && let ContentCheck::Psd(v) = &mut self.content
            && let Err(e) = v.feed(buf)
        {
            self.invalid = Some(e.to_string());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks a restored file: its path relative to `root` is `<dataset>/YYYY/MM/<sha256>.csv.gzip`,
/// the SHA-256 of its decompressed content is that name, the content is what the dataset's
/// validator accepts (within the size cap), and its data rows are the ledger's for that
/// address when the ledger knows it.
fn check_restored(root: &Path, path: &Path, checks: &RestoreChecks) -> Result<LandingPath, String> {
    let rel = path
        .strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned();
    let Some(landing) = LandingPath::parse(&rel) else {
        return Err(format!("{rel}: not a landing file name"));
    };
    let file = File::open(path).map_err(|e| format!("{rel}: {e}"))?;
    let mut decoder = flate2::read::MultiGzDecoder::new(io::BufReader::new(file));
    let mut checked = Checked {
        hasher: Sha256::new(),
        content: ContentCheck::of(&landing.dataset),
        bytes: 0,
        cap: checks.csv_bytes_max,
        invalid: None,
    };
    if let Err(e) = io::copy(&mut decoder, &mut checked) {
        return Err(if checked.bytes > checked.cap {
            format!("{rel}: {e}")
        } else {
            format!("{rel}: not a readable gzip ({e})")
        });
    }
    let got = ContentAddress::from_digest(&checked.hasher.finalize());
    if got != landing.address {
        return Err(format!("{rel}: content hashes to {got}"));
    }
    let summary = match checked.content {
        ContentCheck::Psd(v) => match checked.invalid {
            Some(why) => return Err(format!("{rel}: not a valid PSD CSV: {why}")),
            None => Some(
                v.finish()
                    .map_err(|e| format!("{rel}: not a valid PSD CSV: {e}"))?,
            ),
        },
        ContentCheck::AddressOnly => None,
    };
    if let (Some(summary), Some(expected)) = (
        summary,
        checks
            .ledger_rows
            .get(&landing.dataset)
            .and_then(|rows| rows.get(landing.address.as_str())),
    ) && summary.rows != *expected
    {
        return Err(format!(
            "{rel}: holds {} data rows, the state DB recorded {expected} when it landed",
            summary.rows
        ));
    }
    Ok(landing)
}

/// True when the two files hold the same bytes.
fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    if fs::metadata(a)?.len() != fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut a, mut b) = (
        io::BufReader::new(File::open(a)?),
        io::BufReader::new(File::open(b)?),
    );
    loop {
        let (x, y) = (a.fill_buf()?, b.fill_buf()?);
        let n = x.len().min(y.len());
        if n == 0 {
            return Ok(x.len() == y.len());
        }
        if x[..n] != y[..n] {
            return Ok(false);
        }
        a.consume(n);
        b.consume(n);
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            files_under(&entry.path(), out)?;
        } else {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// The datasets the remote holds: its top-level directories with dataset names.
fn remote_datasets(rclone: &Rclone) -> anyhow::Result<Vec<String>> {
    let root = rclone.remote.join("");
    let out = rclone.run(&["lsjson", "--dirs-only", &root])?;
    // 3: the directory does not exist (a local remote never pushed to).
    if out.code == Some(3) {
        return Ok(Vec::new());
    }
    if out.code != Some(0) {
        bail!("cannot list {root}: {}", out.stderr.trim());
    }
    let listed: Vec<Listed> =
        serde_json::from_slice(&out.stdout).context("rclone lsjson printed something else")?;
    let mut names: Vec<String> = listed
        .into_iter()
        .map(|l| l.path)
        .filter(|name| landing_store::is_dataset_name(name))
        .collect();
    names.sort();
    Ok(names)
}

/// A restore's staging directory under `.tmp/`, removed when the restore ends.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Downloads every dataset of the remote into a staging directory in `<to>/.tmp/` (the same
/// filesystem), then links each file that verifies into `<to>` as the landing store publishes
/// (fsync, read-only, a hard link that never replaces a name, directory fsync). A file that
/// fails the check is never linked; a killed restore leaves its staging directory, which the
/// next restore removes, and no partial file under a landing name.
fn restore(
    rclone: &Rclone,
    ledger: &Ledger,
    to: &Path,
    csv_bytes_max: u64,
) -> anyhow::Result<SyncReport> {
    let to = std::path::absolute(to).context("cannot resolve --to")?;
    let datasets = remote_datasets(rclone)?;
    if datasets.is_empty() {
        bail!(
            "{} holds no landing files: no dataset directory at its top",
            rclone.remote.display()
        );
    }
    let checks = RestoreChecks::new(ledger, &datasets, csv_bytes_max)?;
    for dataset in &datasets {
        if matches!(ContentCheck::of(dataset), ContentCheck::AddressOnly) {
            log::warn!(
                "dataset {dataset} has no content validator here: its files are checked by content address only"
            );
        }
    }
    let store = LandingStore::open(&to)?;
    let removed = store.clean_temp(RESTORE_PREFIX)?;
    if !removed.is_empty() {
        log::info!(
            "removed {} leftover staging dir(s) of an interrupted restore",
            removed.len()
        );
    }
    let staging = Staging(
        store
            .tmp_dir()
            .join(format!("{RESTORE_PREFIX}.{}", std::process::id())),
    );
    fs::create_dir(&staging.0).with_context(|| format!("cannot create {}", staging.0.display()))?;
    let mut files = Vec::new();
    for dataset in &datasets {
        let dir = staging.0.join(dataset);
        log::info!(
            "downloading {} into {}",
            rclone.remote.join(dataset),
            dir.display()
        );
        rclone.run_ok(&[
            "copy",
            &rclone.remote.join(dataset),
            &dir.display().to_string(),
        ])?;
        if dir.exists() {
            files_under(&dir, &mut files).context("cannot list the restored files")?;
        }
    }
    files.sort();
    let mut mismatches = Vec::new();
    let (mut linked, mut present, mut bytes) = (0u64, 0u64, 0u64);
    for path in &files {
        let landing = match check_restored(&staging.0, path, &checks) {
            Ok(l) => l,
            Err(m) => {
                mismatches.push(m);
                continue;
            }
        };
        let rel = path.strip_prefix(&staging.0).unwrap_or(path);
        let dest = to.join(rel);
        let size = fs::metadata(path)
            .with_context(|| format!("cannot stat {}", path.display()))?
            .len();
        if dest.exists() {
            if same_bytes(path, &dest)
                .with_context(|| format!("cannot compare with {}", dest.display()))?
            {
                present += 1;
            } else {
                mismatches.push(format!(
                    "{}: a different file is already there (left alone)",
                    rel.display()
                ));
            }
            continue;
        }
        let temp = store.adopt_temp(path)?;
        match store.publish(
            temp,
            &landing.dataset,
            landing.year,
            landing.month,
            &landing.address,
        )? {
            Published::New(_) => {
                linked += 1;
                bytes += size;
            }
            // Another writer linked that name meanwhile: keep it if it verifies by itself.
            Published::AlreadyPresent(f) => match check_restored(&to, &f.path, &checks) {
                Ok(_) => present += 1,
                Err(m) => mismatches.push(m),
            },
        }
    }
    log::info!(
        "checked {} downloaded file(s): {linked} linked, {present} already there, {} mismatch(es)",
        files.len(),
        mismatches.len()
    );
    let report = SyncReport {
        skipped: Some(linked + present),
        bytes: Some(bytes),
        ..Default::default()
    };
    Ok(with_mismatches(
        report,
        "restored file(s) do not match their content address, are not valid for their dataset, or differ from the file already there, and were not linked",
        mismatches,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_their_strings_on_the_wire_and_in_the_ledger() {
        let wire = |s: SyncStatus| serde_json::to_value(s).unwrap();
        assert_eq!(wire(SyncStatus::Ok), "ok");
        assert_eq!(wire(SyncStatus::Failed), "failed");
        assert_eq!(RunStatus::from(SyncStatus::Ok), RunStatus::Success);
        assert_eq!(RunStatus::from(SyncStatus::Failed), RunStatus::Failed);
    }
}
