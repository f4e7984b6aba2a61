//! `extract-psd`: downloads the USDA PSD bulk zip into the content-addressed landing store.
//! A thin binary over `extract-core`: its flags, its names, and the PSD validator.

mod limits;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use extract_core::{Container, ContentValidator, ExtractStatus, Extractor, FetchLimits, Format};
use step_runtime::{CommonArgs, env_vars};

/// The step's name in the ledger, locks and metrics.
pub const STEP: &str = "extract-psd";

/// `extract-psd`: the dataset `psd`, a zip of one CSV checked by `psd_format::CsvValidator`.
pub fn extractor() -> Extractor {
    Extractor {
        step: STEP,
        dataset: "psd",
        format: Format {
            container: Container::Zip,
            validator: Arc::new(psd_validator),
            cap_flag: "--max-csv-bytes",
        },
        wire: ExtractStatus::as_str,
    }
}

/// The PSD CSV validator (header, 12 fields a row, CSV quoting, at least one row).
struct PsdValidator(psd_format::CsvValidator);

impl ContentValidator for PsdValidator {
    fn feed(&mut self, block: &[u8]) -> anyhow::Result<()> {
        Ok(self.0.feed(block)?)
    }

    fn finish(self: Box<Self>) -> anyhow::Result<u64> {
        Ok(self.0.finish()?.rows)
    }
}

fn psd_validator() -> Box<dyn ContentValidator> {
    Box::new(PsdValidator(psd_format::CsvValidator::new()))
}

/// The USDA FAS PSD Online bulk file of every commodity and country.
pub const DEFAULT_URL: &str = "https://apps.fas.usda.gov/psdonline/downloads/psd_alldata_csv.zip";

/// Download the USDA PSD bulk file into the immutable, content-addressed landing directory
///
/// Validates the zip, its CSV header and every row before anything lands; records every run in
/// the state DB. Exit codes: 0 new, unchanged or duplicate; 1 failed; 2 usage; 75 already running.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Source of the bulk zip: an http(s) URL, a file:// URL or a local path
    #[arg(long, env = env_vars::PSD_URL, value_name = "URL|PATH", default_value = DEFAULT_URL)]
    pub url: String,

    /// Cap on the decompressed CSV, in bytes; a larger one fails the run (zip bombs)
    #[arg(long, env = env_vars::PSD_MAX_CSV_BYTES, value_name = "BYTES",
          default_value_t = limits::CSV_BYTES_MAX_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_csv_bytes: u64,

    /// Bound on the whole download, retries and waits included, in seconds
    #[arg(long, env = env_vars::PSD_TIMEOUT_SECS, value_name = "SECS",
          default_value_t = limits::DOWNLOAD_TIMEOUT_SECS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout_secs: u64,

    /// Retries after a failed attempt (connection errors, HTTP 429 and 5xx), with backoff
    #[arg(long, env = env_vars::PSD_RETRIES, value_name = "N",
          default_value_t = limits::RETRIES_DEFAULT, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub retries: u32,
}

fn main() -> ExitCode {
    let args: Args = match step_runtime::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let request = extract_core::Request {
        url: args.url.clone(),
        limits: FetchLimits {
            content_bytes_max: args.max_csv_bytes,
            timeout: Duration::from_secs(args.timeout_secs),
            retries: args.retries,
        },
    };
    step_runtime::run_step(STEP, &args.common, |ctx| {
        extract_core::run::run(ctx, &extractor(), &request)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_is_the_extractor_of_its_dataset() {
        let extractor = extractor();
        assert_eq!(run_ledger::dataset_of_step(STEP), Some(extractor.dataset));
        assert_eq!(extractor.step, STEP);
    }
}
