//! One run of an extractor: fetch, validate, publish, inside the step's ledger row.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, anyhow};
use landing_store::{LandingStore, Published};
use run_ledger::{Landed, LastGood, Ledger, RunOutcome, RunStatus};
use serde::Serialize;
use step_runtime::{
    FailureClass, Metric, Report, ResultExt, StepContext, StepError, UtcDateTime, run_recorded,
};

use crate::fetch::{
    FetchLimits, Fetched, NOT_MODIFIED_UNASKED, Source, Target, Validators, fetch, is_upstream,
};
use crate::ingest::{Format, Ingested};

/// What makes one extractor: its names, its format, and what its `--json` calls each status.
#[derive(Clone)]
pub struct Extractor {
    /// The step's name in the ledger, locks and metrics: `extract-<dataset>`, so its runs are
    /// rows of `extraction_runs` with `extractor = <dataset>`; also its temp-file prefix.
    pub step: &'static str,
    /// The landing dataset it writes: `LANDING_DIR/<dataset>/YYYY/MM/<sha256>.csv.gzip`.
    pub dataset: &'static str,
    /// The upstream container and the content's validator.
    pub format: Format,
    /// The `status` of `--json` for each outcome (its interface's words).
    pub wire: fn(ExtractStatus) -> &'static str,
}

/// The request of one run: where from, and its bounds.
#[derive(Debug, Clone)]
pub struct Request {
    /// An http(s) URL, a file:// URL or a local path.
    pub url: String,
    pub limits: FetchLimits,
}

/// How a run of an extractor ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtractStatus {
    /// A new file landed.
    New,
    /// Upstream answered 304: the last good run's file is current.
    Unchanged,
    /// Downloaded, but that content is already in landing: nothing was written.
    Duplicate,
    #[default]
    Failed,
}

impl From<ExtractStatus> for RunStatus {
    fn from(status: ExtractStatus) -> RunStatus {
        match status {
            ExtractStatus::New => RunStatus::Success,
            ExtractStatus::Unchanged | ExtractStatus::Duplicate => RunStatus::Unchanged,
            ExtractStatus::Failed => RunStatus::Failed,
        }
    }
}

impl ExtractStatus {
    /// The status's own name (`new`, `unchanged`, `duplicate`, `failed`), which `extract-psd`
    /// shows as it is.
    pub fn as_str(self) -> &'static str {
        match self {
            ExtractStatus::New => "new",
            ExtractStatus::Unchanged => "unchanged",
            ExtractStatus::Duplicate => "duplicate",
            ExtractStatus::Failed => "failed",
        }
    }
}

/// The `--json` result (docs/INTERFACES.md, `extract-psd` and `extract-prices`).
#[derive(Debug, Default, Serialize)]
pub struct ExtractReport {
    /// The status as the extractor's interface words it ([`Extractor::wire`]).
    #[serde(rename = "status")]
    pub shown: &'static str,
    #[serde(skip)]
    pub status: ExtractStatus,
    pub path: Option<String>,
    pub sha256: Option<String>,
    pub rows: Option<u64>,
    /// Bytes of the decompressed CSV.
    pub bytes: Option<u64>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub error: Option<String>,
    /// Why a failed run failed: `upstream` (the source could not be reached, timed out or
    /// answered with an error status: not this release's fault), `operational` (bad data, a
    /// local fault), `usage` or `busy`; null when the run did not fail.
    pub error_class: Option<&'static str>,
    /// Bytes of the landing gzip, when one was written.
    pub landed_bytes: Option<u64>,
    /// HTTP attempts made (1 without retries).
    pub attempts: Option<u32>,
    /// The landing path relative to `LANDING_DIR`, as the ledger records it.
    #[serde(skip)]
    pub relative: Option<String>,
    /// The ledger row's `detail`.
    #[serde(skip)]
    pub detail: Option<String>,
}

impl Report for ExtractReport {
    fn failed(error: String) -> Self {
        Self::failed_as(FailureClass::Operational, error)
    }

    fn failed_as(class: FailureClass, error: String) -> Self {
        ExtractReport {
            shown: ExtractStatus::Failed.as_str(),
            status: ExtractStatus::Failed,
            error: Some(error),
            error_class: Some(class.as_str()),
            ..Default::default()
        }
    }

    fn metrics(&self) -> Vec<Metric> {
        let mut out = vec![Metric::new(
            "new_file",
            "1 if the last run landed a new file",
            f64::from(u8::from(self.status == ExtractStatus::New)),
        )];
        if let Some(rows) = self.rows {
            out.push(Metric::new(
                "rows",
                "Data rows of the last file seen",
                rows as f64,
            ));
        }
        if let Some(bytes) = self.bytes {
            out.push(Metric::new(
                "csv_bytes",
                "Decompressed CSV bytes of the last file seen",
                bytes as f64,
            ));
        }
        out
    }

    fn outcome(&self) -> RunOutcome {
        RunOutcome {
            detail: self.detail.clone(),
            landed: Some(Landed {
                etag: self.etag.clone(),
                last_modified: self.last_modified.clone(),
                sha256: self.sha256.clone(),
                path: self.relative.clone(),
                rows: self.rows,
                bytes: self.bytes,
            }),
            ..RunOutcome::new(self.status.into())
        }
    }
}

/// One recorded run of `extractor`: the ledger row, metrics and the report around [`extract`].
pub fn run(
    ctx: &StepContext,
    extractor: &Extractor,
    request: &Request,
) -> Result<ExtractReport, StepError> {
    let source = Source::parse(&request.url).or_usage()?;
    let ledger = Ledger::open(&ctx.config.state_db)?;
    run_recorded(ctx, &ledger, || {
        let mut report = extract(ctx, extractor, request, &source, &ledger)?;
        report.shown = (extractor.wire)(report.status);
        Ok(report)
    })
}

fn extract(
    ctx: &StepContext,
    extractor: &Extractor,
    request: &Request,
    source: &Source,
    ledger: &Ledger,
) -> Result<ExtractReport, StepError> {
    let clock = Instant::now();
    let landing_dir = &ctx.config.landing_dir;
    let store = LandingStore::open(landing_dir)?;
    let removed = store.clean_temp(extractor.step)?;
    if !removed.is_empty() {
        log::info!(
            "removed {} leftover temp file(s) of an interrupted run",
            removed.len()
        );
    }

    let last = ledger.last_good_extraction(extractor.dataset)?;
    let sent = match &last {
        // Conditional requests only while the content they vouch for is still in landing:
        // a 304 for a file that is gone would leave the store without it.
        Some(good)
            if good
                .path
                .as_ref()
                .is_some_and(|p| landing_dir.join(p).is_file()) =>
        {
            Validators {
                etag: good.etag.clone(),
                last_modified: good.last_modified.clone(),
            }
        }
        Some(good) if good.etag.is_some() || good.last_modified.is_some() => {
            log::warn!(
                "the file of the last good run is not in landing; downloading unconditionally"
            );
            Validators::default()
        }
        _ => Validators::default(),
    };
    let user_agent = format!("materia-{}/{}", extractor.step, env!("CARGO_PKG_VERSION"));
    let target = Target {
        store: &store,
        format: &extractor.format,
        temp_prefix: extractor.step,
        user_agent: &user_agent,
    };
    log::info!("fetching {}", source.display());
    let fetched = fetch(source, &target, &sent, request.limits).map_err(|e| {
        if is_upstream(&e) {
            StepError::new(FailureClass::Upstream, e)
        } else {
            StepError::from(e)
        }
    })?;
    match fetched {
        Fetched::NotModified {
            validators,
            attempts,
        } => {
            // fetch refuses a 304 to a request without validators, and validators are sent
            // only while the last good run's file is in landing; should that ever not hold, a
            // failed run, never a panic nor an `unchanged` naming a file that is gone.
            let last = match last {
                Some(good) if !sent.is_empty() => good,
                _ => return Err(anyhow!(NOT_MODIFIED_UNASKED).into()),
            };
            log::info!("upstream unchanged (HTTP 304); nothing to do");
            Ok(not_modified(landing_dir, last, validators, attempts))
        }
        Fetched::Content {
            ingested,
            validators,
            attempts,
        } => land(
            ctx,
            extractor.dataset,
            &store,
            ingested,
            validators,
            attempts,
            clock,
        ),
    }
}

/// The report of a 304: the last good run's file is still the current one.
fn not_modified(
    landing_dir: &Path,
    last: LastGood,
    validators: Validators,
    attempts: u32,
) -> ExtractReport {
    ExtractReport {
        shown: ExtractStatus::Unchanged.as_str(),
        status: ExtractStatus::Unchanged,
        path: last
            .path
            .as_ref()
            .map(|p| landing_dir.join(p).display().to_string()),
        sha256: last.sha256,
        etag: validators.etag,
        last_modified: validators.last_modified,
        attempts: Some(attempts),
        relative: last.path,
        detail: Some("not modified (HTTP 304)".into()),
        ..Default::default()
    }
}

/// Publishes downloaded content under its address, unless that content is already in landing.
fn land(
    ctx: &StepContext,
    dataset: &str,
    store: &LandingStore,
    ingested: Ingested,
    validators: Validators,
    attempts: u32,
    clock: Instant,
) -> Result<ExtractReport, StepError> {
    let address = ingested.address.clone();
    let (rows, csv_bytes, gzip_bytes) = (
        ingested.content.rows,
        ingested.content.bytes,
        ingested.gzip_bytes,
    );
    log::info!(
        "downloaded {} bytes in {attempts} attempt(s); content sha256 {address}",
        ingested.body_bytes
    );
    let existing = store.find(dataset, &address)?;
    let (published, is_new) = match existing {
        Some(file) => (file, false),
        None => {
            // The landing month is the UTC month of the extraction.
            let at = UtcDateTime::of(ctx.started);
            match store
                .publish(ingested.gzip, dataset, at.year, at.month, &address)
                .context("cannot publish")?
            {
                Published::New(file) => (file, true),
                Published::AlreadyPresent(file) => (file, false),
            }
        }
    };
    let relative = published.relative.display().to_string();
    let secs = clock.elapsed().as_secs_f64();
    if is_new {
        log::info!(
            "landed {relative}: {rows} rows, {csv_bytes} CSV bytes, {gzip_bytes} gzip bytes, in {secs:.1}s"
        );
    } else {
        log::info!("content already landed as {relative} ({rows} rows); nothing new written");
    }
    let status = if is_new {
        ExtractStatus::New
    } else {
        ExtractStatus::Duplicate
    };
    Ok(ExtractReport {
        shown: status.as_str(),
        status,
        path: Some(published.path.display().to_string()),
        sha256: Some(address.to_string()),
        rows: Some(rows),
        bytes: Some(csv_bytes),
        etag: validators.etag,
        last_modified: validators.last_modified,
        error: None,
        error_class: None,
        landed_bytes: is_new.then_some(gzip_bytes),
        attempts: Some(attempts),
        relative: Some(relative),
        detail: (!is_new).then(|| "duplicate: this content is already in landing".to_string()),
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn statuses_keep_their_strings_on_the_wire_and_in_the_ledger() {
        let wire = |s: ExtractStatus| serde_json::to_value(s).unwrap();
        assert_eq!(wire(ExtractStatus::New), "new");
        assert_eq!(wire(ExtractStatus::Unchanged), "unchanged");
        assert_eq!(wire(ExtractStatus::Duplicate), "duplicate");
        assert_eq!(wire(ExtractStatus::Failed), "failed");
        for s in [
            ExtractStatus::New,
            ExtractStatus::Unchanged,
            ExtractStatus::Duplicate,
            ExtractStatus::Failed,
        ] {
            assert_eq!(wire(s), s.as_str());
        }
        let ledger = |s: ExtractStatus| RunStatus::from(s).as_str();
        assert_eq!(ledger(ExtractStatus::New), "success");
        assert_eq!(ledger(ExtractStatus::Unchanged), "unchanged");
        assert_eq!(ledger(ExtractStatus::Duplicate), "unchanged");
        assert_eq!(ledger(ExtractStatus::Failed), "failed");
    }

    #[test]
    fn utc_month_of_unix_times() {
        let utc_month = |t| {
            let at = UtcDateTime::of(t);
            (at.year, at.month)
        };
        assert_eq!(utc_month(SystemTime::UNIX_EPOCH), (1970, 1));
        // 2026-11-30T23:59:59Z and one second later.
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_199);
        assert_eq!(utc_month(t), (2026, 11));
        assert_eq!(utc_month(t + Duration::from_secs(1)), (2026, 12));
    }
}
