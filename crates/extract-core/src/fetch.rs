//! Getting the upstream file: over HTTP(S) with conditional requests, bounded retries and time
//! bounds, or from a local file. Either way the bytes go through one [`Ingest`] per attempt.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow};
use landing_store::LandingStore;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

use crate::ingest::{Container, Format, Ingest, IngestError, Ingested};
use crate::limits::{
    BACKOFF_BASE, CONNECT_TIMEOUT, FILE_CHUNK_BYTES, PROGRESS_LOG_INTERVAL, READ_IDLE_TIMEOUT,
    REDIRECTS_MAX, RETRY_WAIT_MAX, ZIP_OVERHEAD_BYTES_MAX,
};

/// Where the upstream file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Http(reqwest::Url),
    File(PathBuf),
}

impl Source {
    /// `http(s)://` URLs, `file://` URLs and plain paths; anything else is a usage error.
    pub fn parse(s: &str) -> anyhow::Result<Source> {
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            // Errors name the problem, not the URL: it may hold credentials.
            let url = reqwest::Url::parse(s).context("invalid --url")?;
            return Ok(Source::Http(url));
        }
        if lower.starts_with("file://") {
            let url = reqwest::Url::parse(s).with_context(|| format!("invalid URL {s:?}"))?;
            let path = url
                .to_file_path()
                .map_err(|()| anyhow!("file URL {s:?} does not name a local path"))?;
            return Ok(Source::File(path));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            anyhow::bail!(
                "unsupported URL scheme {scheme:?} in {s:?}: use http(s)://, file:// or a path"
            );
        }
        anyhow::ensure!(!s.is_empty(), "--url is empty");
        Ok(Source::File(PathBuf::from(s)))
    }
}

/// A URL fit for logs and errors: no user, password or query string (they may carry secrets).
pub fn redact(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let had_query = shown.query().is_some();
    shown.set_query(None);
    shown.set_fragment(None);
    if had_query {
        format!("{shown}?<redacted>")
    } else {
        shown.to_string()
    }
}

impl Source {
    /// How the source is shown in logs and errors.
    pub fn display(&self) -> String {
        match self {
            Source::Http(url) => redact(url),
            Source::File(path) => path.display().to_string(),
        }
    }
}

/// Validators sent with the request, from the last good run.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    /// True when there is nothing to send: the request is unconditional.
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// The bounds of one fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// Cap on the (decompressed) content.
    pub content_bytes_max: u64,
    pub timeout: Duration,
    pub retries: u32,
}

/// What is fetched and where it goes: the extractor's format, the store, the temp-file prefix
/// the step owns in `.tmp/`, and the HTTP `User-Agent`.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub store: &'a LandingStore,
    pub format: &'a Format,
    pub temp_prefix: &'a str,
    pub user_agent: &'a str,
}

impl Target<'_> {
    /// The largest body the content cap allows: a zip may add its headers.
    fn body_bytes_max(&self, limits: FetchLimits) -> u64 {
        match self.format.container {
            Container::Zip => limits
                .content_bytes_max
                .saturating_add(ZIP_OVERHEAD_BYTES_MAX),
            Container::Plain => limits.content_bytes_max,
        }
    }

    /// Why a body of `len` bytes is refused before it is read.
    fn too_big(&self, len: u64) -> String {
        let flag = self.format.cap_flag;
        match self.format.container {
            Container::Zip => {
                format!("{len} bytes, more than a zip of a CSV within {flag} can be")
            }
            Container::Plain => format!("{len} bytes, more than the cap of {flag}"),
        }
    }

    fn ingest(&self, limits: FetchLimits) -> Result<Ingest, IngestError> {
        Ingest::start(
            self.store,
            self.temp_prefix,
            self.format,
            limits.content_bytes_max,
            self.body_bytes_max(limits),
        )
    }
}

/// What a fetch ended in.
pub enum Fetched {
    /// New bytes, validated, in `.tmp/`.
    Content {
        ingested: Ingested,
        validators: Validators,
        attempts: u32,
    },
    /// Upstream answered 304 Not Modified.
    NotModified {
        validators: Validators,
        attempts: u32,
    },
}

/// Fetches `source` into `target`'s store, sending `sent` with an HTTP request.
pub fn fetch(
    source: &Source,
    target: &Target<'_>,
    sent: &Validators,
    limits: FetchLimits,
) -> anyhow::Result<Fetched> {
    match source {
        Source::File(path) => fetch_file(path, target, limits),
        Source::Http(url) => fetch_http(url, target, sent, limits),
    }
}

fn fetch_file(path: &Path, target: &Target<'_>, limits: FetchLimits) -> anyhow::Result<Fetched> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    anyhow::ensure!(
        len <= target.body_bytes_max(limits),
        "{} is {}",
        path.display(),
        target.too_big(len)
    );
    let mut ingest = target.ingest(limits).map_err(IngestError::into_inner)?;
    let mut progress = Progress::new(Some(len));
    loop {
        let mut chunk = vec![0; FILE_CHUNK_BYTES];
        let n = file
            .read(&mut chunk)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        chunk.truncate(n);
        progress.advance(n as u64);
        if ingest.push(chunk).is_err() {
            break;
        }
    }
    progress.done();
    let ingested = ingest.finish().map_err(IngestError::into_inner)?;
    Ok(Fetched::Content {
        ingested,
        validators: Validators::default(),
        attempts: 1,
    })
}

/// The error of a 304 to a request without validators (upstream protocol error).
pub const NOT_MODIFIED_UNASKED: &str = "upstream answered HTTP 304 Not Modified to an unconditional request (no If-None-Match or If-Modified-Since was sent)";

/// The context that marks a fetch error as upstream's: the source could not be reached, did not
/// answer in time, or answered with an error status. `extract::run` finds it with
/// `downcast_ref` and records the run with `FailureClass::Upstream`; anything else (bad data,
/// a local fault) is the step's own failure.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamUnavailable;

impl std::fmt::Display for UpstreamUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream unavailable")
    }
}

/// True when `error` is upstream's (see [`UpstreamUnavailable`]).
pub fn is_upstream(error: &anyhow::Error) -> bool {
    error.downcast_ref::<UpstreamUnavailable>().is_some()
}

/// How one HTTP attempt ended, when it did not succeed.
enum AttemptError {
    /// Worth another attempt after the wait (Retry-After, if upstream gave one). Always
    /// upstream's: connection errors, time-outs, HTTP 429 and 5xx.
    Retry {
        error: anyhow::Error,
        retry_after: Option<Duration>,
    },
    /// Not worth retrying, and upstream's: a 4xx, a redirect loop, the time bound reached.
    Upstream(anyhow::Error),
    /// Not worth retrying: bad data or a local fault.
    Fatal(anyhow::Error),
}

fn fetch_http(
    url: &reqwest::Url,
    target: &Target<'_>,
    sent: &Validators,
    limits: FetchLimits,
) -> anyhow::Result<Fetched> {
    let deadline = Instant::now() + limits.timeout;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    // reqwest is built without a crypto provider of its own (Cargo.toml): use ring's. Another
    // call in the same process may have installed it already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .user_agent(target.user_agent)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_IDLE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(REDIRECTS_MAX))
        .build()
        .context("cannot build the HTTP client")?;

    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let result = runtime.block_on(attempt_once(&client, url, target, sent, limits, deadline));
        let (error, retry_after) = match result {
            Ok(fetched) => {
                return Ok(match fetched {
                    Fetched::Content {
                        ingested,
                        validators,
                        ..
                    } => Fetched::Content {
                        ingested,
                        validators,
                        attempts: attempt,
                    },
                    Fetched::NotModified { validators, .. } => Fetched::NotModified {
                        validators,
                        attempts: attempt,
                    },
                });
            }
            Err(AttemptError::Fatal(error)) => return Err(error),
            Err(AttemptError::Upstream(error)) => return Err(error.context(UpstreamUnavailable)),
            Err(AttemptError::Retry { error, retry_after }) => (error, retry_after),
        };
        if attempt > limits.retries {
            return Err(error
                .context(format!("giving up after {attempt} attempts"))
                .context(UpstreamUnavailable));
        }
        let backoff = BACKOFF_BASE.saturating_mul(1 << (attempt - 1).min(16));
        let wait = retry_after.unwrap_or(backoff).min(RETRY_WAIT_MAX);
        let remaining = deadline.saturating_duration_since(Instant::now());
        if wait >= remaining {
            return Err(error
                .context(format!(
                    "not retrying: waiting {}s would pass the {}s time bound (--timeout-secs)",
                    wait.as_secs(),
                    limits.timeout.as_secs()
                ))
                .context(UpstreamUnavailable));
        }
        log::warn!(
            "attempt {attempt} failed: {error:#}; retrying in {}s",
            wait.as_secs_f64().ceil()
        );
        std::thread::sleep(wait);
    }
}

fn timed_out(limits: FetchLimits) -> anyhow::Error {
    anyhow!(
        "download did not finish within {}s (--timeout-secs)",
        limits.timeout.as_secs()
    )
}

/// Classifies a transport error: connection-level faults are retried, a redirect loop is not.
fn transport(error: reqwest::Error, deadline: Instant, limits: FetchLimits) -> AttemptError {
    // reqwest puts the full URL, credentials included, into its messages.
    let error = error.without_url();
    if Instant::now() >= deadline {
        return AttemptError::Upstream(anyhow!(error).context(timed_out(limits)));
    }
    if error.is_redirect() {
        return AttemptError::Upstream(anyhow!(
            "too many redirects (more than {REDIRECTS_MAX}): {error}"
        ));
    }
    if error.is_builder() {
        return AttemptError::Fatal(anyhow!(error));
    }
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "transfer failed"
    };
    AttemptError::Retry {
        error: anyhow!(error_chain(&error)).context(what),
        retry_after: None,
    }
}

/// reqwest's Display omits the cause ("error decoding response body"); operators need it.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

async fn attempt_once(
    client: &reqwest::Client,
    url: &reqwest::Url,
    target: &Target<'_>,
    sent: &Validators,
    limits: FetchLimits,
    deadline: Instant,
) -> Result<Fetched, AttemptError> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(AttemptError::Upstream(timed_out(limits)));
    }
    let mut request = client
        .get(url.clone())
        .timeout(remaining)
        .header(header::ACCEPT_ENCODING, "identity");
    if let Some(etag) = &sent.etag {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    if let Some(lm) = &sent.last_modified {
        request = request.header(header::IF_MODIFIED_SINCE, lm);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| transport(e, deadline, limits))?;
    let status = response.status();
    let headers = response.headers().clone();
    let validators = Validators {
        etag: header_text(&headers, header::ETAG),
        last_modified: header_text(&headers, header::LAST_MODIFIED),
    };
    if status == StatusCode::NOT_MODIFIED {
        // A 304 answers only a conditional request (RFC 9110, 15.4.5). To one that carried no
        // validators it vouches for no content at all: a protocol error, not "unchanged".
        if sent.is_empty() {
            return Err(AttemptError::Upstream(anyhow!(
                "{NOT_MODIFIED_UNASKED} for {}",
                redact(url)
            )));
        }
        // A 304 may omit the validators; the ones sent still describe the content.
        return Ok(Fetched::NotModified {
            validators: Validators {
                etag: validators.etag.or_else(|| sent.etag.clone()),
                last_modified: validators
                    .last_modified
                    .or_else(|| sent.last_modified.clone()),
            },
            attempts: 1,
        });
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(AttemptError::Retry {
            error: anyhow!("upstream answered HTTP {status} for {}", redact(url)),
            retry_after: parse_retry_after(&headers),
        });
    }
    if !status.is_success() {
        return Err(AttemptError::Upstream(anyhow!(
            "upstream answered HTTP {status} for {}",
            redact(url)
        )));
    }
    if let Some(len) = response.content_length()
        && len > target.body_bytes_max(limits)
    {
        return Err(AttemptError::Fatal(anyhow!(
            "upstream announces {}",
            target.too_big(len)
        )));
    }

    let mut ingest = target
        .ingest(limits)
        .map_err(|e| AttemptError::Fatal(e.into_inner()))?;
    let mut progress = Progress::new(response.content_length());
    let mut received = 0u64;
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                received += bytes.len() as u64;
                progress.advance(bytes.len() as u64);
                if ingest.push(bytes.to_vec()).is_err() {
                    break; // the pipeline stopped on bad data: finish() says why
                }
            }
            Ok(None) => break,
            Err(e) => {
                progress.done();
                drop(ingest);
                let e = transport(e, deadline, limits);
                return Err(match e {
                    AttemptError::Retry { error, retry_after } => AttemptError::Retry {
                        error: error
                            .context(format!("download interrupted after {received} bytes")),
                        retry_after,
                    },
                    fatal => fatal,
                });
            }
        }
    }
    progress.done();
    let ingested = ingest
        .finish()
        .map_err(|e| AttemptError::Fatal(e.into_inner()))?;
    Ok(Fetched::Content {
        ingested,
        validators,
        attempts: 1,
    })
}

/// A progress bar on a terminal; elsewhere a log line every [`PROGRESS_LOG_INTERVAL`].
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: Option<u64>,
    done: u64,
    last_log: Instant,
}

impl Progress {
    fn new(total: Option<u64>) -> Progress {
        let bar = step_runtime::logging::stderr_is_terminal().then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                total,
                indicatif::ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            bar,
            total,
            done: 0,
            last_log: Instant::now(),
        }
    }

    fn advance(&mut self, n: u64) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
        } else if self.last_log.elapsed() >= PROGRESS_LOG_INTERVAL {
            self.last_log = Instant::now();
            match self.total {
                Some(t) => log::info!("downloaded {} of {} bytes", self.done, t),
                None => log::info!("downloaded {} bytes", self.done),
            }
        }
    }

    fn done(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_parses_urls_file_urls_and_paths_and_refuses_other_schemes() {
        assert!(matches!(
            Source::parse("https://example.org/a.zip").unwrap(),
            Source::Http(_)
        ));
        assert_eq!(
            Source::parse("file:///tmp/a.zip").unwrap(),
            Source::File("/tmp/a.zip".into())
        );
        assert_eq!(
            Source::parse("data/a.zip").unwrap(),
            Source::File("data/a.zip".into())
        );
        assert!(Source::parse("ftp://example.org/a.zip").is_err());
        assert!(Source::parse("").is_err());
    }

    #[test]
    fn redaction_drops_credentials_and_query() {
        let url = reqwest::Url::parse("https://user:pw@example.org/a.zip?token=t#frag").unwrap();
        assert_eq!(redact(&url), "https://example.org/a.zip?<redacted>");
        let url = reqwest::Url::parse("https://example.org/a.zip").unwrap();
        assert_eq!(redact(&url), "https://example.org/a.zip");
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        h.insert(
            header::RETRY_AFTER,
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let d = parse_retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&h), None);
    }
}
