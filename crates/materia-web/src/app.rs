//! What every request shares: the serving generation in use (through a
//! [`serving_reader::Follower`]), the embedded assets, and the read-only view of the state DB.
//!
//! A request takes the current generation once, as an `Arc`, and answers from it alone; that
//! generation lives until the last request holding it ends. When the serving path names a new
//! file, one background read prepares it while requests go on with the one in use, then it is
//! swapped in. A file that cannot be read is retried after [`limits::GENERATION_RETRY_SECS`];
//! the last good generation keeps answering meanwhile, and `/healthz` reports the problem.
//!
//! When the serving file cannot be read and no generation was read yet (a restart onto a
//! damaged file), the newest readable generation that export-serving kept in
//! `<serving>.previous/` answers instead, until the serving path can be read again. The
//! fallback is logged, `/healthz` stays 503 (the serving file is unreadable), and `/status`
//! names the generation in use.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serving_reader::{FileId, Follower, Prepared, ReadError};

use crate::assets::Assets;
use crate::data::Data;
use crate::limits;

pub type Generation = Arc<Prepared<Data>>;

#[derive(Debug, Clone)]
pub struct Config {
    pub serving: PathBuf,
    pub state_db: PathBuf,
    /// The landing directory: `/status` lists the extractor of every dataset in it.
    pub landing_dir: PathBuf,
    pub max_serving_age: Duration,
}

/// The last failed read of the serving path: which file (none: the path was missing), when,
/// and why.
#[derive(Debug, Clone)]
struct Failure {
    file: Option<FileId>,
    at: Instant,
    message: String,
}

pub struct App {
    pub config: Config,
    pub assets: Assets,
    follower: Follower<Data>,
    refreshing: AtomicBool,
    failure: Mutex<Option<Failure>>,
    /// Set on SIGTERM: responses ask clients to close their connection.
    closing: AtomicBool,
    /// The last read of the state DB's last confirmation of upstream, and when it was read.
    confirmation: Mutex<Option<(Instant, Option<Confirmation>)>>,
    /// State DB reads (`/status`) running at once.
    pub status_reads: Arc<tokio::sync::Semaphore>,
    /// A generation from `.previous/`, answering while the serving file cannot be read.
    fallback: Mutex<Option<Fallback>>,
    /// The threads that render answers.
    pub renders: crate::render::RenderPool,
}

/// A generation read from `<serving>.previous/` and the file name it has there.
#[derive(Clone)]
pub struct Fallback {
    pub generation: Generation,
    pub file_name: String,
}

/// When the pipeline last confirmed upstream (the state DB's newest extract run that ended
/// `success` or `unchanged`).
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmation {
    pub at: SystemTime,
    pub iso: String,
}

/// What `/healthz` answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    Ok {
        exported_at: String,
        /// Age of the serving file's export.
        age_secs: u64,
        /// The last confirmation of upstream, when the state DB has one.
        confirmed_at: Option<String>,
        confirmed_age_secs: Option<u64>,
    },
    Unavailable(String),
    Stale(String),
}

impl App {
    pub fn new(config: Config) -> App {
        let assets = Assets::new();
        let follower = Follower::new(
            config.serving.clone(),
            limits::secs(limits::GENERATION_READ_TIMEOUT_SECS),
            Box::new(Data::read),
        );
        App {
            config,
            assets,
            follower,
            refreshing: AtomicBool::new(false),
            failure: Mutex::new(None),
            closing: AtomicBool::new(false),
            confirmation: Mutex::new(None),
            status_reads: Arc::new(tokio::sync::Semaphore::new(limits::STATUS_READS_MAX)),
            renders: crate::render::RenderPool::new(limits::RENDERS_MAX),
            fallback: Mutex::new(None),
        }
    }

    /// The generation to answer from, if one could be read. Starts a background read when the
    /// path names another file (one `stat` per call).
    pub fn generation(self: &Arc<Self>) -> Option<Generation> {
        self.follow();
        self.follower
            .current()
            .or_else(|| self.fallback().map(|f| f.generation))
    }

    /// The generation from `.previous/` in use, if the serving file could not be read.
    pub fn fallback(&self) -> Option<Fallback> {
        self.fallback
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Checks the serving path and starts a read of a new file, at most one at a time.
    pub fn follow(self: &Arc<Self>) {
        match self.follower.changed() {
            Ok(None) => {}
            Ok(Some(file)) => {
                if self.worth_trying(Some(file)) {
                    self.spawn_refresh();
                }
            }
            Err(e) => {
                if self.worth_trying(None) {
                    self.record_failure(None, &e);
                }
            }
        }
    }

    fn spawn_refresh(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        /// Lets the next refresh start even if this one panicked.
        struct Done(Arc<App>);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.refreshing.store(false, Ordering::Release);
            }
        }
        let done = Done(self.clone());
        tokio::task::spawn_blocking(move || done.0.refresh_now());
    }

    /// Reads the generation the path names now, if it is new (blocking).
    pub fn refresh_now(&self) {
        let before = self.follower.current().map(|g| g.file);
        let started = Instant::now();
        match self.follower.refresh() {
            Ok(generation) => {
                *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = None;
                if let Some(f) = self
                    .fallback
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                {
                    log::info!(
                        "the serving file is readable again; {} from .previous is no longer served",
                        f.file_name
                    );
                }
                if before != Some(generation.file) {
                    let rows: u64 = generation
                        .generation
                        .tables
                        .iter()
                        .map(|t| t.row_count)
                        .sum();
                    log::info!(
                        "serving the generation exported at {} ({} tables, {rows} rows), read in {} ms",
                        generation.data.exported_at_iso,
                        generation.generation.tables.len(),
                        started.elapsed().as_millis()
                    );
                }
            }
            Err(e) => {
                let file = serving_reader::stat(self.follower.path()).ok();
                self.record_failure(file, &e);
                if self.follower.current().is_none() && self.fallback().is_none() {
                    self.fall_back();
                }
            }
        }
    }

    /// Reads the newest readable generation in `<serving>.previous/` and answers from it
    /// (blocking). Newest by modification time, then by name (`<retired-at>.duckdb`).
    fn fall_back(&self) {
        let serving = self.follower.path();
        let Some(name) = serving.file_name() else {
            return;
        };
        let dir = serving.with_file_name(format!("{}.previous", name.to_string_lossy()));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut files: Vec<(SystemTime, String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".duckdb"))
            .filter_map(|e| {
                let modified = e.metadata().ok()?.modified().ok()?;
                Some((
                    modified,
                    e.file_name().to_string_lossy().into_owned(),
                    e.path(),
                ))
            })
            .collect();
        files.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
        for (_, file_name, path) in files.into_iter().take(limits::FALLBACK_CANDIDATES_MAX) {
            let follower = Follower::new(
                path,
                limits::secs(limits::GENERATION_READ_TIMEOUT_SECS),
                Box::new(Data::read),
            );
            match follower.refresh() {
                Ok(generation) => {
                    log::warn!(
                        "the serving file cannot be read; serving the previous generation {file_name} \
                         (exported at {}) from {} until it can",
                        generation.data.exported_at_iso,
                        dir.display()
                    );
                    *self.fallback.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(Fallback {
                            generation,
                            file_name,
                        });
                    return;
                }
                Err(e) => log::warn!("previous generation {file_name} cannot be read either: {e}"),
            }
        }
    }

    fn record_failure(&self, file: Option<FileId>, e: &ReadError) {
        let message = e.to_string();
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        let repeated = failure
            .as_ref()
            .is_some_and(|f| f.file == file && f.message == message);
        if !repeated {
            if self.follower.current().is_some() {
                log::warn!("{message}; still serving the generation read before");
            } else {
                log::warn!("{message}");
            }
        }
        *failure = Some(Failure {
            file,
            at: Instant::now(),
            message,
        });
    }

    /// False while the same file (or the same missing path) failed less than the retry time ago.
    fn worth_trying(&self, file: Option<FileId>) -> bool {
        let failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        failure.as_ref().is_none_or(|f| {
            f.file != file || f.at.elapsed() >= limits::secs(limits::GENERATION_RETRY_SECS)
        })
    }

    fn failure_message(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|f| f.message.clone())
    }

    /// The health of what the path names now, and of the generation in use.
    pub fn health(self: &Arc<Self>) -> Health {
        let current = self.generation();
        let now = match serving_reader::stat(self.follower.path()) {
            Ok(id) => id,
            Err(e) => return Health::Unavailable(e.to_string()),
        };
        let Some(generation) = current else {
            return Health::Unavailable(self.failure_message().unwrap_or_else(|| {
                format!(
                    "{} is being read for the first time",
                    self.follower.path().display()
                )
            }));
        };
        if generation.file != now
            && let Some(message) = self.failure_message()
        {
            return Health::Unavailable(format!(
                "{message} (still serving the generation exported at {})",
                generation.data.exported_at_iso
            ));
        }
        let now = SystemTime::now();
        let age = now
            .duration_since(generation.data.exported_at)
            .unwrap_or_default();
        // Fresh means the pipeline confirmed upstream recently (a 304 or an unchanged download
        // counts): an unchanged serving file is not stale while USDA changes nothing. Without a
        // readable state DB, the export is the last sign of life there is.
        let confirmation = self.confirmation();
        let (basis, basis_age) = match &confirmation {
            Some(c) => (
                format!("the pipeline last confirmed upstream at {}", c.iso),
                now.duration_since(c.at).unwrap_or_default(),
            ),
            None => (
                format!(
                    "the serving file was exported at {} (no confirmation of upstream in the state DB {})",
                    generation.data.exported_at_iso,
                    self.config.state_db.display()
                ),
                age,
            ),
        };
        if basis_age > self.config.max_serving_age {
            return Health::Stale(format!(
                "{basis}, {} ago, longer than --max-serving-age {}",
                materia_status::short(Duration::from_secs(basis_age.as_secs())),
                materia_status::short(self.config.max_serving_age)
            ));
        }
        Health::Ok {
            exported_at: generation.data.exported_at_iso.clone(),
            age_secs: age.as_secs(),
            confirmed_at: confirmation.as_ref().map(|c| c.iso.clone()),
            confirmed_age_secs: confirmation.map(|_| basis_age.as_secs()),
        }
    }

    /// The last confirmation of upstream, read from the state DB at most once per
    /// [`limits::CONFIRMATION_CACHE_SECS`]; `None` when the state DB cannot be read or holds
    /// none (logged once per read).
    fn confirmation(&self) -> Option<Confirmation> {
        let mut cached = self
            .confirmation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((read_at, value)) = cached.as_ref()
            && read_at.elapsed() < limits::secs(limits::CONFIRMATION_CACHE_SECS)
        {
            return value.clone();
        }
        let read = run_ledger::Ledger::open_read_only(&self.config.state_db)
            .and_then(|ledger| ledger.last_confirmation());
        let value = match read {
            Ok(Some(iso)) => match materia_status::parse_time(&iso) {
                Some(at) => Some(Confirmation { at, iso }),
                None => {
                    log::warn!("the state DB's last confirmation {iso:?} is not a time");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                log::debug!("no confirmation of upstream: {e}");
                None
            }
        };
        *cached = Some((Instant::now(), value.clone()));
        value
    }

    pub fn serving_path(&self) -> &std::path::Path {
        self.follower.path()
    }

    pub fn start_closing(&self) {
        self.closing.store(true, Ordering::Release);
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}
