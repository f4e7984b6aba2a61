//! Every bound materia-web keeps, in one place: connections, requests, reads of the serving
//! file and of the state DB, memory for prepared answers, and shutdown.

use std::time::Duration;

/// Connections served at once (`--max-connections`); the next ones are answered 503 with
/// `Retry-After` and closed. With HTTP/1.1 this also bounds requests in flight.
pub const CONNECTIONS_MAX: usize = 512;
/// Connections being answered 503 at once; past this a new connection is closed unanswered.
pub const REJECTIONS_MAX: usize = 128;
/// `Retry-After` of a 503 sent because the server is saturated, in seconds.
pub const SATURATED_RETRY_AFTER_SECS: u64 = 1;
/// `Retry-After` of a 503 sent because no serving generation can be read, in seconds.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 10;

/// A client must send a request's line and headers within this time, and an idle keep-alive
/// connection is closed after it (slowloris).
pub const HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// A rejected connection gets this long to send its request before it is closed.
pub const REJECTION_HEADER_READ_TIMEOUT_SECS: u64 = 2;
/// Request line plus headers, in bytes; more is answered 431.
pub const HEADER_BYTES_MAX: usize = 16 * 1024;
/// Headers per request; more is answered 431.
pub const HEADERS_MAX: usize = 64;
/// The request target (path and query), in bytes; more is answered 414.
pub const URI_BYTES_MAX: usize = 2048;
/// Time to produce an answer; past it the answer is 503 with `Retry-After`.
pub const REQUEST_TIMEOUT_SECS: u64 = 10;
/// A connection's whole life: then it is asked to close after its current response (slow
/// readers, clients that never leave), and dropped [`CONNECTION_CLOSE_GRACE_SECS`] later.
pub const CONNECTION_LIFETIME_SECS: u64 = 300;
pub const CONNECTION_CLOSE_GRACE_SECS: u64 = 30;

/// SIGTERM: for this long new responses carry `Connection: close` while requests already on
/// the wire are still read, before idle connections are closed.
pub const SHUTDOWN_DRAIN_MILLIS: u64 = 500;
/// SIGTERM: in-flight requests get this long to finish, then the process exits anyway.
pub const SHUTDOWN_GRACE_SECS: u64 = 20;
/// Pause after a failed `accept` (out of file descriptors), in milliseconds.
pub const ACCEPT_ERROR_PAUSE_MILLIS: u64 = 100;

/// How often the serving path is checked for a new generation when no request comes.
pub const GENERATION_POLL_MILLIS: u64 = 1000;
/// Bound on reading one generation (its record and every table), in seconds.
pub const GENERATION_READ_TIMEOUT_SECS: u64 = 120;
/// DuckDB's memory limit while it reads a generation, in MiB.
pub const GENERATION_READ_MEMORY_MIB: u64 = 256;
/// Generations in `<serving>.previous/` tried, newest first, when the serving file cannot be
/// read at start.
pub const FALLBACK_CANDIDATES_MAX: usize = 8;
/// A file that could not be read is tried again after this long, in seconds.
pub const GENERATION_RETRY_SECS: u64 = 5;

/// How long `/healthz` reuses its read of the state DB's last confirmation of upstream, so a
/// flood of health requests reads SQLite at most once per this many seconds.
pub const CONFIRMATION_CACHE_SECS: u64 = 5;

/// State DB reads (the `/status` page) running at once; more wait, within the request time-out.
/// A read whose request timed out still counts until it ends.
pub const STATUS_READS_MAX: usize = 2;
/// Threads that render (and gzip) answers; more renders wait, within the request time-out, and
/// a queued render whose request has gone is skipped. The async workers never render, so
/// `/healthz` and cached answers are not queued behind heavy ones.
pub const RENDERS_MAX: usize = 2;

/// Prepared answers kept per generation: the bytes of their bodies, and how many.
pub const ANSWER_CACHE_BYTES_MAX: usize = 32 * 1024 * 1024;
pub const ANSWER_CACHE_ENTRIES_MAX: usize = 4096;
/// Bodies shorter than this are sent uncompressed.
pub const COMPRESS_BYTES_MIN: usize = 512;

/// Revisions per answer: the default and the most a client may ask for (`limit`).
pub const REVISIONS_LIMIT_DEFAULT: usize = 100;
pub const REVISIONS_LIMIT_MAX: usize = 10_000;
/// Revisions on the pages of a commodity or a country.
pub const PAGE_REVISIONS: usize = 20;
/// (Market year, attribute) rows of the front page's "what changed this release" panel, and the
/// countries named on each.
pub const PAGE_CHANGE_GROUPS: usize = 12;
pub const PAGE_CHANGE_COUNTRIES: usize = 3;
/// Rows of the top producers and exporters tables.
pub const PAGE_TOP_COUNTRIES: usize = 10;
/// Market years accepted in a request (`market_year`); others are answered 400.
pub const MARKET_YEAR_MIN: i32 = 1900;
pub const MARKET_YEAR_MAX: i32 = 2100;
/// Length of a commodity or country code in a request, in characters.
pub const CODE_CHARS_MAX: usize = 16;

/// Worker threads of the runtime (at most; fewer on fewer cores) and blocking threads (reads
/// of the serving file and the state DB).
pub const WORKER_THREADS_MAX: usize = 4;
pub const BLOCKING_THREADS_MAX: usize = 8;

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
