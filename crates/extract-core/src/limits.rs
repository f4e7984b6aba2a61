//! Every bound the extractors share. Names end in their unit. An extractor's own defaults
//! (content cap, whole-download bound, retries) are in its binary's `limits.rs`.

use std::time::Duration;

/// The downloaded zip may exceed the content it holds only by its headers (stored entries).
pub const ZIP_OVERHEAD_BYTES_MAX: u64 = 1 << 20;
/// TCP + TLS connect bound per attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence allowed between two reads of the body.
pub const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// First backoff wait; doubled after each failed attempt.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest backoff or `Retry-After` wait honoured between two attempts.
pub const RETRY_WAIT_MAX: Duration = Duration::from_secs(300);
/// Redirects followed before the download fails.
pub const REDIRECTS_MAX: usize = 10;
/// Decompressed bytes per block handed to the hashing and compression threads; also the size
/// of one gzip member of the landing file.
pub const BLOCK_BYTES: usize = 1 << 20;
/// Blocks queued per stage; with [`BLOCK_BYTES`] this bounds the pipeline's memory.
pub const BLOCKS_QUEUED_MAX: usize = 4;
/// Raw download chunks queued ahead of the inflater.
pub const RAW_CHUNKS_QUEUED_MAX: usize = 32;
/// Compression threads, at most; fewer on machines with fewer cores.
pub const COMPRESS_THREADS_MAX: usize = 4;
/// libdeflate level of the landing gzip: as small as `gzip -6`, faster.
pub const GZIP_LEVEL: i32 = 6;
/// How often a progress line is logged when stderr is not a terminal.
pub const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Bytes read from a local file per chunk.
pub const FILE_CHUNK_BYTES: usize = 256 * 1024;
