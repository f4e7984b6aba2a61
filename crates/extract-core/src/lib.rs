//! What every extractor shares, so that an extractor is a thin binary: its flags, its
//! [`Extractor`] description and a [`ContentValidator`] for its format.
//!
//! - [`fetch`]: the download, over HTTP(S) with conditional requests, bounded retries honouring
//!   `Retry-After`, bounded redirects, time and size caps and progress, or from a local file;
//! - [`ingest`]: the bytes streamed through the extractor's validator into a verified landing
//!   gzip in the store's `.tmp/`, in bounded memory;
//! - [`zipentry`]: the streaming reader of a zip's first entry (the only module without the
//!   `fetch` feature, for the fuzz targets);
//! - [`run`]: one recorded run (ledger row, metrics, `--json` report).

pub mod zipentry;

#[cfg(feature = "fetch")]
pub mod fetch;
#[cfg(feature = "fetch")]
pub mod ingest;
#[cfg(feature = "fetch")]
pub mod limits;
#[cfg(feature = "fetch")]
pub mod run;

#[cfg(feature = "fetch")]
pub use fetch::{FetchLimits, Source, redact};
#[cfg(feature = "fetch")]
pub use ingest::{Container, ContentValidator, Format, ValidatorFactory};
#[cfg(feature = "fetch")]
pub use run::{ExtractReport, ExtractStatus, Extractor, Request};
