//! Every bound of `export-serving` in one place. Names end in their unit.

use std::time::Duration;

/// Default of `--keep`: previous generations kept for rollback.
pub const KEEP_DEFAULT: u32 = 1;
/// Largest `--keep` accepted.
pub const KEEP_MAX: u32 = 100;
/// Default of `--lock-wait-secs`: how long to wait while a writer (SQLMesh) holds the lakehouse.
pub const LOCK_WAIT_SECS_DEFAULT: u64 = 300;
/// Largest `--lock-wait-secs` accepted: a day.
pub const LOCK_WAIT_SECS_MAX: u64 = 86_400;
/// Bound on waiting for the published file when reading its schema (readers never block it;
/// only a stray read-write open would).
pub const PUBLISHED_LOCK_WAIT: Duration = Duration::from_secs(10);
