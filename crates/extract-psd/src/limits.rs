//! Every bound of `extract-psd` in one place. Names end in their unit. The bounds every
//! extractor shares are in `extract_core::limits`.

/// Default cap on the decompressed CSV (`--max-csv-bytes`): 4 GiB, about 20x the real file.
pub const CSV_BYTES_MAX_DEFAULT: u64 = 4 << 30;
/// Default bound on the whole download, retries and waits included (`--timeout-secs`).
pub const DOWNLOAD_TIMEOUT_SECS_DEFAULT: u64 = 900;
/// Default number of retries after the first attempt (`--retries`).
pub const RETRIES_DEFAULT: u32 = 4;
