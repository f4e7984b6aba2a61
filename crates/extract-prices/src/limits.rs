//! Every bound of `extract-prices` in one place. Names end in their unit. The bounds every
//! extractor shares are in `extract_core::limits`.

/// Default cap on the CSV (`--max-bytes`): 16 MiB, about 2000x FRED's two-series file.
pub const CSV_BYTES_MAX_DEFAULT: u64 = 16 << 20;
/// Default bound on the whole download, retries and waits included (`--timeout-secs`).
pub const DOWNLOAD_TIMEOUT_SECS_DEFAULT: u64 = 300;
/// Default number of retries after the first attempt (`--retries`).
pub const RETRIES_DEFAULT: u32 = 4;
/// Longest line of the CSV, line end included.
pub const LINE_BYTES_MAX: usize = 4096;
/// Most data rows: one a month for 2000 years.
pub const ROWS_MAX: u64 = 24_000;
/// Most series in one file (`--series`).
pub const SERIES_MAX: usize = 32;
/// Longest series id (FRED's are at most 30 characters).
pub const SERIES_ID_BYTES_MAX: usize = 64;
/// Longest value field.
pub const VALUE_BYTES_MAX: usize = 32;
