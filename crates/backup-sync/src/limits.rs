//! Every bound of `backup-sync` in one place. Names end in their unit.

/// Default bound on each rclone call (`--timeout-secs`).
pub const RCLONE_TIMEOUT_SECS_DEFAULT: u64 = 3_600;
/// Largest `--timeout-secs` accepted: a day.
pub const RCLONE_TIMEOUT_SECS_MAX: u64 = 86_400;
/// rclone's own bounds on every call, as its flags take them: TCP connect, idle transfer,
/// retries of a whole operation and of one low-level request.
pub const CONNECT_TIMEOUT: &str = "15s";
pub const IDLE_TIMEOUT: &str = "60s";
pub const RETRIES: &str = "3";
pub const LOW_LEVEL_RETRIES: &str = "3";
/// Lines of rclone's log kept for an error message.
pub const STDERR_TAIL_LINES: usize = 12;
/// Bound on rclone's stdout (listings): about 300 bytes per object, 1 M objects.
pub const STDOUT_MAX_BYTES: usize = 300 << 20;
/// Mismatches listed in the report and the error (all are counted).
pub const MISMATCHES_SHOWN_MAX: usize = 100;
/// Default cap on a restored file's decompressed CSV (`restore --max-csv-bytes`, read from
/// `PSD_MAX_CSV_BYTES` like extract-psd's): the same 4 GiB, so a restore accepts what an
/// extract would have landed and refuses a gzip bomb.
pub const CSV_BYTES_MAX_DEFAULT: u64 = 4 << 30;
