//! `extract-prices`: downloads the IMF's monthly coffee prices, as FRED publishes them in one
//! CSV, into the content-addressed landing store (dataset `prices`). A thin binary over
//! `extract-core`: its flags, its names, and the FRED CSV validator.

mod limits;
mod validate;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use clap::Parser;
use extract_core::{Container, ContentValidator, ExtractStatus, Extractor, FetchLimits, Format};
use step_runtime::{CommonArgs, ResultExt, env_vars};

use crate::limits::{SERIES_ID_BYTES_MAX, SERIES_MAX};
use crate::validate::FredValidator;

/// The step's name in the ledger, locks and metrics (extractor `prices`).
pub const STEP: &str = "extract-prices";
/// The landing dataset: `LANDING_DIR/prices/YYYY/MM/<sha256>.csv.gzip`.
pub const DATASET: &str = "prices";
/// IMF primary commodity prices, US cents per pound: Other Mild Arabicas, Robustas.
pub const DEFAULT_SERIES: &str = "PCOFFOTMUSDM,PCOFFROBUSDM";
/// FRED's no-key CSV of one or more series; `--url` defaults to this with `id=<--series>`.
pub const FRED_CSV_URL: &str = "https://fred.stlouisfed.org/graph/fredgraph.csv";

/// Download the monthly coffee prices (FRED CSV) into the immutable, content-addressed landing
/// directory
///
/// Validates the header, dates and values before anything lands; records every run in the
/// state DB as step extract-prices. Exit codes: 0 landed or unchanged; 1 failed; 2 usage; 75
/// already running.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Source of the CSV: an http(s) URL, a file:// URL or a local path
    /// [default: https://fred.stlouisfed.org/graph/fredgraph.csv?id=<SERIES>]
    #[arg(long, env = env_vars::PRICES_URL, value_name = "URL|PATH")]
    pub url: Option<String>,

    /// The FRED series, comma-separated, in the order of the CSV's columns
    #[arg(long, env = env_vars::PRICES_SERIES, value_name = "ID,ID", default_value = DEFAULT_SERIES)]
    pub series: String,

    /// Cap on the CSV, in bytes; a larger one fails the run
    #[arg(long, env = env_vars::PRICES_MAX_BYTES, value_name = "BYTES",
          default_value_t = limits::CSV_BYTES_MAX_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_bytes: u64,

    /// Bound on the whole download, retries and waits included, in seconds
    #[arg(long, env = env_vars::PRICES_TIMEOUT_SECS, value_name = "SECS",
          default_value_t = limits::DOWNLOAD_TIMEOUT_SECS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout_secs: u64,

    /// Retries after a failed attempt (connection errors, HTTP 429 and 5xx), with backoff
    #[arg(long, env = env_vars::PRICES_RETRIES, value_name = "N",
          default_value_t = limits::RETRIES_DEFAULT, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub retries: u32,
}

/// `--series` as a list: 1 to [`SERIES_MAX`] distinct ids of `A-Z`, `0-9` and `_`.
pub fn parse_series(text: &str) -> anyhow::Result<Vec<String>> {
    let series: Vec<String> = text.split(',').map(|s| s.trim().to_string()).collect();
    ensure!(
        series.len() <= SERIES_MAX,
        "--series names {} series, more than {SERIES_MAX}",
        series.len()
    );
    for (i, id) in series.iter().enumerate() {
        ensure!(
            !id.is_empty()
                && id.len() <= SERIES_ID_BYTES_MAX
                && id
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "--series: {id:?} is not a FRED series id (A-Z, 0-9 and _, 1 to {SERIES_ID_BYTES_MAX} characters)"
        );
        ensure!(!series[..i].contains(id), "--series names {id} twice");
    }
    Ok(series)
}

/// `extract-prices`: the dataset `prices`, a plain CSV checked by [`FredValidator`]. Its
/// `--json` says `landed` for a new file and `unchanged` for a 304 or content already landed.
pub fn extractor(series: Vec<String>) -> Extractor {
    let series = Arc::new(series);
    Extractor {
        step: STEP,
        dataset: DATASET,
        format: Format {
            container: Container::Plain,
            validator: Arc::new(move || -> Box<dyn ContentValidator> {
                Box::new(FredValidator::new(&series))
            }),
            cap_flag: "--max-bytes",
        },
        wire: wire_status,
    }
}

/// The `status` of `--json` (docs/INTERFACES.md): `landed|unchanged|failed`.
fn wire_status(status: ExtractStatus) -> &'static str {
    match status {
        ExtractStatus::New => "landed",
        ExtractStatus::Unchanged | ExtractStatus::Duplicate => "unchanged",
        ExtractStatus::Failed => "failed",
    }
}

fn main() -> ExitCode {
    let args: Args = match step_runtime::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    step_runtime::run_step(STEP, &args.common, |ctx| {
        let series = parse_series(&args.series).or_usage()?;
        let url = args
            .url
            .clone()
            .unwrap_or_else(|| format!("{FRED_CSV_URL}?id={}", series.join(",")));
        let request = extract_core::Request {
            url,
            limits: FetchLimits {
                content_bytes_max: args.max_bytes,
                timeout: Duration::from_secs(args.timeout_secs),
                retries: args.retries,
            },
        };
        extract_core::run::run(ctx, &extractor(series), &request)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_statuses_and_the_default_url() {
        assert_eq!(run_ledger::dataset_of_step(STEP), Some(DATASET));
        assert_eq!(wire_status(ExtractStatus::New), "landed");
        assert_eq!(wire_status(ExtractStatus::Duplicate), "unchanged");
        assert_eq!(wire_status(ExtractStatus::Unchanged), "unchanged");
        assert_eq!(wire_status(ExtractStatus::Failed), "failed");
        let series = parse_series(DEFAULT_SERIES).unwrap();
        assert_eq!(
            format!("{FRED_CSV_URL}?id={}", series.join(",")),
            "https://fred.stlouisfed.org/graph/fredgraph.csv?id=PCOFFOTMUSDM,PCOFFROBUSDM"
        );
    }

    #[test]
    fn series_lists_are_checked() {
        assert_eq!(parse_series("A, B_2").unwrap(), ["A", "B_2"]);
        for bad in ["", "A,,B", "a", "A,A", "A;B", &"X".repeat(65)] {
            assert!(parse_series(bad).is_err(), "{bad:?}");
        }
        let many = vec!["A"; SERIES_MAX + 1].join(",");
        assert!(parse_series(&many).is_err());
    }
}
