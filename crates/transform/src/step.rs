//! One run of the transform: decide whether SQLMesh has work, run it, check what it built.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use lakehouse::duckdb::Connection;
use landing_store::{LandingFile, LandingStore};
use run_ledger::{Ledger, RunOutcome, RunStatus};
use serde::Serialize;
use step_runtime::{
    FailureClass, Metric, Report, ResultExt, StepContext, StepError, absolute, run_recorded,
};

use crate::fingerprint::{fingerprint, project_digest};
use crate::sqlmesh::{Cycle, Failure, Invocation};
use crate::{Args, audit, limits, manifest};

/// The step's name in the ledger, locks and metrics.
pub const STEP: &str = "transform";
/// The datasets the SQLMesh project builds, each with a query over what it built that gives, per
/// landing file, `landing_sha256`, the rows read from it and the distinct keys kept (a key
/// repeated by upstream counts all its rows once): after a build each of their files must be
/// there whole, the rows read equal to the rows it landed with. Other datasets are
/// fingerprinted (their files are in the manifest); those in [`OPTIONAL`] are read by their
/// models, the rest by nothing yet.
const MODELLED: [(&str, &str); 1] = [(
    "psd",
    "SELECT landing_sha256, rows_read, distinct_keys FROM history.psd_files",
)];
/// Datasets the project reads when they have files and does without when they have none
/// (`@landing_lines` in `transform/macros/landing.py`): an extractor that has not landed yet
/// never stops the PSD path.
const OPTIONAL: [&str; 1] = ["prices"];
/// Where the landing manifest is written for SQLMesh, in the work directory.
const MANIFEST_FILE: &str = "landing-manifest.json";
/// Where the landed rows of every file are written for the history's row check.
const LANDED_ROWS_FILE: &str = "landed-rows.json";
/// Where cycle.py reports what the history did.
const RESULT_FILE: &str = "cycle-result.json";
/// The serving tables the web app reads; each must exist and have rows after a build.
const SERVING_TABLES: [&str; 5] = [
    "commodity_balance",
    "global_balance",
    "estimate_revisions",
    "value_history",
    "releases",
];
/// The audit whose flagged rows are counted (reported, not fatal), and the model it audits.
const IDENTITY_AUDIT: (&str, &str) = ("balance_identity", "serving.commodity_balance");

/// How a run of `transform` ended (`status` of `--json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransformStatus {
    /// SQLMesh ran and the result checked out.
    Transformed,
    /// Nothing new since the last success: SQLMesh was not started.
    Unchanged,
    #[default]
    Failed,
}

impl From<TransformStatus> for RunStatus {
    fn from(status: TransformStatus) -> RunStatus {
        match status {
            TransformStatus::Transformed => RunStatus::Success,
            TransformStatus::Unchanged => RunStatus::Unchanged,
            TransformStatus::Failed => RunStatus::Failed,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct TransformReport {
    pub status: TransformStatus,
    /// Landing files read (quarantined ones are not).
    pub landing_files: Option<usize>,
    /// Landing files skipped because an operator quarantined them (`materia-status quarantine`).
    pub quarantined_files: Option<usize>,
    /// Landing files read, per dataset.
    pub datasets: Option<BTreeMap<String, usize>>,
    /// Rows per serving table after the run.
    pub tables: Option<BTreeMap<String, u64>>,
    /// Rows of `serving.commodity_balance` where supply != stocks + production + imports.
    pub balance_identity_violations: Option<u64>,
    /// `incremental` (only the new landing files were read) or `full` (every one), after a build.
    pub mode: Option<String>,
    /// Why the run rebuilt in full (`mode` `full`).
    pub full_reason: Option<String>,
    /// Landing files applied to the history by this run.
    pub files_applied: Option<u64>,
    /// Rows read from landing files by this run.
    pub rows_read: Option<u64>,
    /// History ranges this run stored (new keys, changed values, removed keys).
    pub changes_stored: Option<u64>,
    /// Rows of the history after the run.
    pub history_rows: Option<u64>,
    /// Seconds spent applying landing files to the history, and in SQLMesh's plan.
    pub append_secs: Option<f64>,
    pub plan_secs: Option<f64>,
    pub fingerprint: Option<String>,
    pub error: Option<String>,
}

impl Report for TransformReport {
    fn failed(error: String) -> Self {
        TransformReport {
            status: TransformStatus::Failed,
            error: Some(error),
            ..Default::default()
        }
    }

    fn metrics(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        if let Some(n) = self.landing_files {
            out.push(Metric::new(
                "landing_files",
                "Landing files the lakehouse was built from",
                n as f64,
            ));
        }
        if let Some(n) = self.quarantined_files {
            out.push(Metric::new(
                "quarantined_files",
                "Landing files skipped because an operator quarantined them",
                n as f64,
            ));
        }
        if let Some(n) = self.rows_read {
            out.push(Metric::new(
                "rows_read",
                "Rows read from landing files by the run",
                n as f64,
            ));
        }
        if let Some(n) = self.changes_stored {
            out.push(Metric::new(
                "changes_stored",
                "History ranges stored by the run (new keys, changed values, removed keys)",
                n as f64,
            ));
        }
        if let Some(mode) = &self.mode {
            out.push(Metric::new(
                "full_rebuild",
                "1 if the run rebuilt the history from every landing file, 0 if incremental",
                if mode == "full" { 1.0 } else { 0.0 },
            ));
        }
        if let Some(n) = self.balance_identity_violations {
            out.push(Metric::new(
                "balance_identity_violations",
                "Balance rows where total supply differs from stocks + production + imports",
                n as f64,
            ));
        }
        out
    }

    fn outcome(&self) -> RunOutcome {
        RunOutcome {
            detail: Some(describe(self)),
            input_fingerprint: self.fingerprint.clone(),
            ..RunOutcome::new(self.status.into())
        }
    }
}

pub fn run(ctx: &StepContext, args: &Args) -> Result<TransformReport, StepError> {
    // Another DuckDB release than SQLMesh's would write files one side cannot read.
    lakehouse::check_library().or_usage()?;
    let ledger = Ledger::open(&ctx.config.state_db)?;
    run_recorded(ctx, &ledger, || transform(ctx, args, &ledger))
}

fn describe(report: &TransformReport) -> String {
    let files = report.landing_files.unwrap_or(0);
    let held = match report.quarantined_files.unwrap_or(0) {
        0 => String::new(),
        n => format!(" ({n} quarantined skipped)"),
    };
    match report.status {
        TransformStatus::Unchanged => format!(
            "nothing new: {files} landing files{held} and the project unchanged since the last success"
        ),
        _ => {
            let tables = report
                .tables
                .as_ref()
                .map(|t| {
                    t.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let mode = match (report.mode.as_deref(), report.full_reason.as_deref()) {
                (Some("full"), Some(reason)) => format!("full rebuild ({reason})"),
                (Some(mode), _) => mode.to_owned(),
                (None, _) => "not built".to_owned(),
            };
            format!(
                "{mode}: {} files applied, {} rows read, {} changes stored (history {} rows) in {:.1}s + plan {:.1}s; built from {files} landing files{held}; {tables}; balance identity violations {}",
                report.files_applied.unwrap_or(0),
                report.rows_read.unwrap_or(0),
                report.changes_stored.unwrap_or(0),
                report.history_rows.unwrap_or(0),
                report.append_secs.unwrap_or(0.0),
                report.plan_secs.unwrap_or(0.0),
                report.balance_identity_violations.unwrap_or(0)
            )
        }
    }
}

fn transform(
    ctx: &StepContext,
    args: &Args,
    ledger: &Ledger,
) -> Result<TransformReport, StepError> {
    let project = absolute(&args.project)?;
    if !project.join("config.py").is_file() {
        return Err(StepError::usage(anyhow!(
            "{} is not the SQLMesh project (no config.py); set --project",
            project.display()
        )));
    }
    let sqlmesh = absolute(&args.sqlmesh)?;
    if !sqlmesh.is_file() {
        return Err(StepError::usage(anyhow!(
            "sqlmesh not found at {}; set --sqlmesh or create the virtualenv (make venv)",
            sqlmesh.display()
        )));
    }
    if !sqlmesh.with_file_name("python").is_file() {
        return Err(StepError::usage(anyhow!(
            "no python beside {}: --sqlmesh must name the sqlmesh of a virtualenv",
            sqlmesh.display()
        )));
    }
    let landing_dir = absolute(&ctx.config.landing_dir)?;
    let lakehouse = absolute(&ctx.config.lakehouse)?;

    let store = LandingStore::open(&landing_dir)?;
    let (landing, held) = skip_quarantined(store.list_all()?, ledger)?;
    let mut per_dataset: BTreeMap<String, usize> = BTreeMap::new();
    for file in &landing {
        *per_dataset.entry(file.dataset().to_owned()).or_default() += 1;
    }
    for (dataset, _) in MODELLED {
        if per_dataset.contains_key(dataset) {
            continue;
        }
        let quarantined = held.iter().filter(|f| f.dataset() == dataset).count();
        if quarantined > 0 {
            return Err(anyhow!(
                "every landing file under {} ({quarantined}) is quarantined; release one with \
                 `materia-status unquarantine FILE` or land a new one with {}",
                landing_dir.join(dataset).display(),
                run_ledger::extractor_step(dataset)
            )
            .into());
        }
        return Err(anyhow!(
            "no landing files under {}; run {} first",
            landing_dir.join(dataset).display(),
            run_ledger::extractor_step(dataset)
        )
        .into());
    }
    for (dataset, files) in &per_dataset {
        if !MODELLED.iter().any(|(d, _)| d == dataset) && !OPTIONAL.contains(&dataset.as_str()) {
            log::warn!(
                "dataset {dataset}: {files} landing file(s) that no model of the SQLMesh project reads yet"
            );
        }
    }
    let fingerprint = fingerprint(&landing, &held, &project, &lakehouse)?;
    let previous = ledger.last_good_fingerprint(STEP)?;
    if !args.force
        && !args.full_rebuild
        && lakehouse.is_file()
        && previous.as_deref() == Some(fingerprint.as_str())
    {
        log::info!(
            "nothing new: {} landing files and the project are as at the last success",
            landing.len()
        );
        return Ok(TransformReport {
            status: TransformStatus::Unchanged,
            landing_files: Some(landing.len()),
            quarantined_files: Some(held.len()),
            datasets: Some(per_dataset),
            fingerprint: Some(fingerprint),
            ..Default::default()
        });
    }

    let work_dir = lakehouse
        .parent()
        .map_or_else(|| PathBuf::from(".sqlmesh"), |p| p.join(".sqlmesh"));
    // SQLMesh reads exactly the files fingerprinted here, in landing order.
    let manifest_path = work_dir.join(MANIFEST_FILE);
    manifest::write(
        &manifest_path,
        &manifest::build(&landing_dir, &landing, ledger)?,
    )?;
    let landed_rows_path = work_dir.join(LANDED_ROWS_FILE);
    write_landed_rows(&landed_rows_path, ledger, &per_dataset)?;
    let digest = project_digest(&project)?;
    let result_path = work_dir.join(RESULT_FILE);
    let invocation = Invocation {
        sqlmesh: &sqlmesh,
        project: &project,
        landing_dir: &landing_dir,
        manifest: &manifest_path,
        landed_rows: &landed_rows_path,
        project_digest: &digest,
        full_rebuild: args.full_rebuild,
        result: &result_path,
        lakehouse: &lakehouse,
        work_dir: &work_dir,
        timeout: Duration::from_secs(args.timeout_secs),
    };
    // The history (incremental or full), plan --auto-apply, then janitor (drops physical
    // tables of versions no environment uses any more), in one Python process.
    let cycle: Cycle = invocation.run_cycle().map_err(|f| match f {
        Failure::Locked(e) => StepError::new(FailureClass::Busy, e),
        Failure::Other(e) => StepError::from(e),
    })?;
    match cycle.full_reason.as_deref() {
        Some(reason) if cycle.mode == "full" => {
            log::warn!("full rebuild: {reason}");
        }
        _ => log::info!(
            "incremental: {} new landing files applied",
            cycle.files_applied
        ),
    }

    let (tables, violations) = verify(&lakehouse, &project, ledger, &landing)?;
    if violations > 0 {
        log::warn!(
            "{violations} balance rows break total_supply = beginning_stocks + production + imports"
        );
    }
    Ok(TransformReport {
        status: TransformStatus::Transformed,
        landing_files: Some(landing.len()),
        quarantined_files: Some(held.len()),
        datasets: Some(per_dataset),
        tables: Some(tables),
        balance_identity_violations: Some(violations),
        mode: Some(cycle.mode),
        full_reason: cycle.full_reason,
        files_applied: Some(cycle.files_applied),
        rows_read: Some(cycle.rows_read),
        changes_stored: Some(cycle.changes_stored),
        history_rows: Some(cycle.history_rows),
        append_secs: Some(cycle.append_secs),
        plan_secs: Some(cycle.plan_secs),
        fingerprint: Some(fingerprint),
        error: None,
    })
}

/// Writes `{"<dataset>": {"<sha256>": rows}}` for every dataset read: the rows the ledger
/// recorded when each file landed (temp file, then rename).
fn write_landed_rows(
    path: &Path,
    ledger: &Ledger,
    datasets: &BTreeMap<String, usize>,
) -> anyhow::Result<()> {
    let mut all: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for dataset in datasets.keys() {
        all.insert(dataset, ledger.landed_rows(dataset)?.into_iter().collect());
    }
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let text = serde_json::to_string(&all).context("cannot serialise the landed rows")?;
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Splits `landing` into the files the transform reads and those an operator quarantined
/// (each logged, with its reason), in their order.
fn skip_quarantined(
    landing: Vec<LandingFile>,
    ledger: &Ledger,
) -> anyhow::Result<(Vec<LandingFile>, Vec<LandingFile>)> {
    let quarantines = ledger.quarantined()?;
    if quarantines.is_empty() {
        return Ok((landing, Vec::new()));
    }
    let (held, read): (Vec<LandingFile>, Vec<LandingFile>) = landing.into_iter().partition(|f| {
        let relative = f.relative.to_string_lossy();
        quarantines.iter().any(|q| q.path == relative)
    });
    for file in &held {
        let relative = file.relative.to_string_lossy();
        if let Some(q) = quarantines.iter().find(|q| q.path == relative) {
            log::warn!(
                "skipping quarantined landing file {relative} (since {}: {})",
                q.quarantined_at,
                q.reason
            );
        }
    }
    Ok((read, held))
}

fn count(conn: &Connection, sql: &str) -> anyhow::Result<u64> {
    let n: i64 = conn
        .query_row(sql, [], |r| r.get(0))
        .with_context(|| format!("lakehouse query failed: {sql}"))?;
    Ok(n as u64)
}

/// Checks what SQLMesh built: every landing file of a modelled dataset has all its rows there
/// (as the ledger recorded them when they landed), every serving table has rows. Returns
/// serving row counts and the number of balance identity violations.
fn verify(
    lakehouse: &Path,
    project: &Path,
    ledger: &Ledger,
    landing: &[LandingFile],
) -> Result<(BTreeMap<String, u64>, u64), StepError> {
    let conn =
        lakehouse::open_read_only(lakehouse, limits::VERIFY_LOCK_WAIT).map_err(|e| match e {
            lakehouse::OpenError::Locked { .. } => StepError::new(FailureClass::Busy, e),
            other => StepError::from(other),
        })?;
    for (dataset, query) in MODELLED {
        let files: Vec<&LandingFile> = landing.iter().filter(|f| f.dataset() == dataset).collect();
        verify_rows(&conn, ledger, dataset, query, &files)?;
    }
    let mut tables = BTreeMap::new();
    for table in SERVING_TABLES {
        tables.insert(
            table.to_owned(),
            count(&conn, &format!("SELECT count(*) FROM serving.{table}"))?,
        );
    }
    let (audit, model) = IDENTITY_AUDIT;
    let violations = count(&conn, &audit::count_sql(project, audit, model)?)?;
    Ok((tables, violations))
}

/// Every file of `dataset` has rows in what `query` reads (`landing_sha256`, rows read,
/// distinct keys kept), and they account for as many rows read from the file as the ledger
/// recorded when it landed. A file read in part falls short; repeated keys, resolved by the
/// models, do not.
fn verify_rows(
    conn: &Connection,
    ledger: &Ledger,
    dataset: &str,
    query: &str,
    files: &[&LandingFile],
) -> Result<(), StepError> {
    // landing_sha256 -> (rows read, distinct keys kept)
    let mut built: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut stmt = conn
        .prepare(query)
        .with_context(|| format!("cannot read the rows built from {dataset}: {query}"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the rows built from {dataset}: {query}"))?;
    built.extend(
        rows.into_iter()
            .map(|(sha, read, keys)| (sha, (read as u64, keys as u64))),
    );
    let landed: BTreeMap<String, u64> = ledger.landed_rows(dataset)?.into_iter().collect();
    for file in files {
        let sha = file.address.as_str();
        let (read, keys) = built.get(sha).copied().unwrap_or((0, 0));
        if let Some(&want) = landed.get(sha)
            && read != want
        {
            return Err(anyhow!(
                "the lakehouse read {read} rows of landing file {} ({keys} distinct keys) but it landed with {want} rows",
                file.relative.display()
            )
            .into());
        }
        if keys == 0 {
            return Err(anyhow!(
                "the lakehouse holds no rows of landing file {}",
                file.relative.display()
            )
            .into());
        }
        if keys < read {
            log::warn!(
                "landing file {} repeats keys: {read} rows, {keys} distinct keys kept",
                file.relative.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_their_strings_on_the_wire_and_in_the_ledger() {
        let wire = |s: TransformStatus| serde_json::to_value(s).unwrap();
        assert_eq!(wire(TransformStatus::Transformed), "transformed");
        assert_eq!(wire(TransformStatus::Unchanged), "unchanged");
        assert_eq!(wire(TransformStatus::Failed), "failed");
        let ledger = |s: TransformStatus| RunStatus::from(s).as_str();
        assert_eq!(ledger(TransformStatus::Transformed), "success");
        assert_eq!(ledger(TransformStatus::Unchanged), "unchanged");
        assert_eq!(ledger(TransformStatus::Failed), "failed");
    }
}
