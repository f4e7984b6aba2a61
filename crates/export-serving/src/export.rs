//! One run of export-serving: copy the serving schema into a new file, check it, publish it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use lakehouse::OpenError;
use lakehouse::duckdb::Connection;
use run_ledger::{Ledger, RunOutcome, RunStatus};
use serde::Serialize;
use serving_reader::EXPORT_TABLE;
use step_runtime::{
    FailureClass, Metric, Report, ResultExt, StepContext, StepError, UtcDateTime, absolute,
    iso8601, run_recorded,
};

use crate::Args;
use crate::fingerprint;
use crate::generations::{self, Paths};
use crate::limits::PUBLISHED_LOCK_WAIT;
use crate::schema::{self, literal, quote};

/// The step's name in the ledger, locks and metrics.
pub const STEP: &str = "export-serving";
/// Catalog names of the files attached next to the lakehouse.
const OUT: &str = "materia_out";
const PUBLISHED: &str = "materia_published";

/// How a run of `export-serving` ended (`status` of `--json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportStatus {
    /// A new generation was published.
    Exported,
    /// The serving content is the published file's: it was kept as it is.
    Unchanged,
    #[default]
    Failed,
}

impl From<ExportStatus> for RunStatus {
    fn from(status: ExportStatus) -> RunStatus {
        match status {
            ExportStatus::Exported => RunStatus::Success,
            ExportStatus::Unchanged => RunStatus::Unchanged,
            ExportStatus::Failed => RunStatus::Failed,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct ExportReport {
    pub status: ExportStatus,
    /// The serving path the generation was published as.
    pub path: Option<String>,
    /// Rows per published table.
    pub tables: Option<BTreeMap<String, u64>>,
    pub exported_at: Option<String>,
    /// Size of the published file.
    pub bytes: Option<u64>,
    /// Previous generations kept for rollback.
    pub kept: Option<Vec<String>>,
    /// The serving content's fingerprint (`_materia_export.content_fingerprint`).
    pub fingerprint: Option<String>,
    pub error: Option<String>,
}

impl Report for ExportReport {
    fn failed(error: String) -> Self {
        ExportReport {
            status: ExportStatus::Failed,
            error: Some(error),
            ..Default::default()
        }
    }

    fn metrics(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        if let Some(tables) = &self.tables {
            out.push(Metric::new(
                "tables",
                "Tables in the published serving file",
                tables.len() as f64,
            ));
            out.push(Metric::new(
                "rows",
                "Rows over all tables of the published serving file",
                tables.values().sum::<u64>() as f64,
            ));
        }
        if let Some(bytes) = self.bytes {
            out.push(Metric::new(
                "bytes",
                "Size of the published serving file",
                bytes as f64,
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

pub fn run(ctx: &StepContext, args: &Args) -> Result<ExportReport, StepError> {
    // Another DuckDB release than the readers' (Python, the web app) would publish files they
    // may not read.
    lakehouse::check_library().or_usage()?;
    let ledger = Ledger::open(&ctx.config.state_db)?;
    let options = Options::of(args);
    run_recorded(ctx, &ledger, || export(ctx, &options))
}

fn describe(report: &ExportReport) -> String {
    let tables = report
        .tables
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    let what = match report.status {
        ExportStatus::Unchanged => "unchanged: kept the published",
        _ => "published",
    };
    format!(
        "{what} {} as {}; kept {} previous",
        tables,
        report.path.as_deref().unwrap_or("?"),
        report.kept.as_ref().map_or(0, Vec::len)
    )
}

fn sql_error(what: &str) -> impl FnOnce(lakehouse::duckdb::Error) -> anyhow::Error + '_ {
    move |e| anyhow::Error::new(e).context(what.to_owned())
}

/// How a run publishes: the flags, once parsed.
struct Options<'a> {
    /// The schema published (same name in the lakehouse and the serving file).
    schema: &'a str,
    /// Previous generations kept.
    keep: u32,
    allow_breaking: bool,
    /// How long to wait while a writer holds the lakehouse.
    lock_wait: Duration,
}

impl<'a> Options<'a> {
    fn of(args: &'a Args) -> Options<'a> {
        Options {
            schema: &args.schema,
            keep: args.keep,
            allow_breaking: args.allow_breaking,
            lock_wait: Duration::from_secs(args.lock_wait_secs),
        }
    }
}

/// One run, in order: the paths, the work directory, then [`publish_generation`]; a failed
/// run removes what it built, a killed one leaves it to the next run.
fn export(ctx: &StepContext, options: &Options<'_>) -> Result<ExportReport, StepError> {
    let lakehouse = absolute(&ctx.config.lakehouse)?;
    let serving = absolute(&ctx.config.serving)?;
    if lakehouse == serving {
        return Err(StepError::usage(anyhow!(
            "the serving path and the lakehouse are the same file ({}); set SERVING_DUCKDB_PATH",
            serving.display()
        )));
    }
    let paths = Paths::new(&serving).or_usage()?;
    std::fs::create_dir_all(&paths.dir)
        .with_context(|| format!("cannot create {}", paths.dir.display()))?;
    let removed = paths.reset_work()?;
    if removed > 0 {
        log::info!("removed {removed} leftover(s) of an interrupted run");
    }
    let result = publish_generation(&paths, &lakehouse, options);
    if result.is_err()
        && let Err(e) = paths.remove_work()
    {
        log::warn!("{e:#}");
    }
    result
}

/// The sequence that makes a generation: read the source, refuse breaking changes, copy,
/// seal, read back, publish by one rename.
fn publish_generation(
    paths: &Paths,
    lakehouse: &Path,
    options: &Options<'_>,
) -> Result<ExportReport, StepError> {
    let s = options.schema;
    let serving = &paths.serving;
    let next = paths.work.join(format!("{}.duckdb", std::process::id()));
    let exported_at = SystemTime::now();

    // The lakehouse, attached read-only once no writer holds it, and what its schema holds.
    let (conn, alias) = attach_source(lakehouse, &paths.work, options.lock_wait)?;
    let source = schema::read(&conn, &alias, s, EXPORT_TABLE)
        .map_err(sql_error("cannot read the lakehouse's catalog"))?;
    if source.is_empty() {
        return Err(anyhow!(
            "schema {s} of {} has no tables or views; has the transform run?",
            lakehouse.display()
        )
        .into());
    }
    // The content a new generation would hold; when the published file holds just that, it
    // stays as it is (same inode: readers do not reopen), and no generation is made.
    let fingerprint = fingerprint::of_source(&conn, &alias, s, &source, lakehouse).map_err(
        sql_error("cannot fingerprint the lakehouse's serving content"),
    )?;
    if let Some(report) = keep_unchanged(&conn, paths, &source, &fingerprint, s)? {
        return Ok(report);
    }
    // Nothing that readers of the published file use may vanish, before anything is written.
    check_breaking(&conn, serving, &source, options)?;
    // Every relation copied into the new file, with `_materia_export`; checkpointed, detached.
    let tables = copy_into(
        &conn,
        &alias,
        &source,
        &next,
        s,
        lakehouse,
        exported_at,
        &fingerprint,
    )?;
    drop(conn);
    // The closed file stands alone, read-only, on disk, and reads back as written.
    generations::require_no_sidecars(&next)?;
    generations::seal(&next)?;
    generations::fsync_dir(&paths.work)?;
    check_written(&next, s, &tables, &source)?;
    // One rename makes it the serving file; the previous one is kept, older ones pruned.
    let kept = paths.publish(&next, options.keep, &UtcDateTime::of(exported_at).compact())?;
    paths.remove_work()?;

    let bytes = std::fs::metadata(serving).map(|m| m.len()).ok();
    log::info!(
        "published {} tables ({} rows) as {}",
        tables.len(),
        tables.values().sum::<u64>(),
        serving.display()
    );
    Ok(ExportReport {
        status: ExportStatus::Exported,
        path: Some(serving.display().to_string()),
        tables: Some(tables),
        exported_at: Some(iso8601(exported_at)),
        bytes,
        kept: Some(kept.iter().map(|p| p.display().to_string()).collect()),
        fingerprint: Some(fingerprint),
        error: None,
    })
}

/// The report of a run that keeps the published file, when that file holds exactly the content
/// `fingerprint` stands for; `None` (export) when it is missing, unreadable, of an older layout,
/// damaged or of other content.
fn keep_unchanged(
    conn: &Connection,
    paths: &Paths,
    source: &schema::Catalogue,
    fingerprint: &str,
    s: &str,
) -> Result<Option<ExportReport>, StepError> {
    let serving = &paths.serving;
    if !serving.is_file() {
        return Ok(None);
    }
    let attach = format!(
        "ATTACH {} AS {PUBLISHED} (READ_ONLY)",
        literal(&serving.display().to_string())
    );
    let published =
        lakehouse::retry_while_locked(serving, PUBLISHED_LOCK_WAIT, || conn.execute_batch(&attach))
            .map_err(anyhow::Error::new)
            .and_then(|()| {
                let read = fingerprint::published(conn, PUBLISHED, s);
                conn.execute_batch(&format!("DETACH {PUBLISHED}"))
                    .map_err(sql_error("cannot detach the published file"))?;
                read
            });
    let published = match published {
        Ok(p) => p,
        Err(e) => {
            log::info!("exporting: the published file stands for no known content ({e:#})");
            return Ok(None);
        }
    };
    let same_relations = published.catalogue.len() == source.len()
        && source.iter().all(|(name, relation)| {
            published
                .catalogue
                .get(name)
                .is_some_and(|p| p.columns == relation.columns)
        });
    if published.fingerprint != fingerprint || !same_relations {
        log::info!("exporting: the serving content differs from the published file's");
        return Ok(None);
    }
    paths.remove_work()?;
    let kept = paths.kept()?;
    log::info!(
        "unchanged: {} already holds this content ({} tables, {} rows); kept as it is",
        serving.display(),
        published.tables.len(),
        published.tables.values().sum::<u64>()
    );
    Ok(Some(ExportReport {
        status: ExportStatus::Unchanged,
        path: Some(serving.display().to_string()),
        tables: Some(published.tables),
        exported_at: Some(published.exported_at),
        bytes: std::fs::metadata(serving).map(|m| m.len()).ok(),
        kept: Some(kept.iter().map(|p| p.display().to_string()).collect()),
        fingerprint: Some(fingerprint.to_owned()),
        error: None,
    }))
}

/// An in-memory DuckDB that spills into `work` and has the lakehouse attached read-only under
/// its own catalog name (returned), waiting up to `lock_wait` while a writer holds it.
fn attach_source(
    lakehouse: &Path,
    work: &Path,
    lock_wait: Duration,
) -> Result<(Connection, String), StepError> {
    let conn = Connection::open_in_memory().context("cannot start DuckDB")?;
    // Spill into the work directory: never `<file>.tmp/` beside a published path.
    conn.execute_batch(&format!(
        "SET temp_directory = {}",
        literal(&work.join("spill").display().to_string())
    ))
    .map_err(sql_error("cannot configure DuckDB"))?;

    // SQLMesh's views name their tables with the lakehouse's catalog, which DuckDB derives
    // from the file name: attach under that same name.
    let alias = lakehouse
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .ok_or_else(|| StepError::usage(anyhow!("{} names no file", lakehouse.display())))?;
    let attach = format!(
        "ATTACH {} AS {} (READ_ONLY)",
        literal(&lakehouse.display().to_string()),
        quote(&alias)
    );
    lakehouse::retry_while_locked(lakehouse, lock_wait, || conn.execute_batch(&attach)).map_err(
        |e| match e {
            OpenError::Locked { .. } => StepError::new(FailureClass::Busy, e),
            OpenError::Missing { path } => anyhow!(
                "the lakehouse {} does not exist; run the transform first",
                path.display()
            )
            .into(),
            other => other.into(),
        },
    )?;
    Ok((conn, alias))
}

/// Copies every relation of `source` (schema `s` of the catalog `alias`) into a new file at
/// `next`, as tables, checking each copy's rows against the source, then writes
/// `_materia_export`, checkpoints and detaches. Returns the rows per table.
#[allow(clippy::too_many_arguments)]
fn copy_into(
    conn: &Connection,
    alias: &str,
    source: &schema::Catalogue,
    next: &Path,
    s: &str,
    lakehouse: &Path,
    exported_at: SystemTime,
    fingerprint: &str,
) -> Result<BTreeMap<String, u64>, StepError> {
    conn.execute_batch(&format!(
        "ATTACH {} AS {OUT}; CREATE SCHEMA {OUT}.{};",
        literal(&next.display().to_string()),
        quote(s)
    ))
    .map_err(sql_error("cannot create the new serving file"))?;
    let mut tables = BTreeMap::new();
    for (name, relation) in source {
        let from = format!("{}.{}.{}", quote(alias), quote(s), quote(name));
        // CREATE TABLE AS answers with the number of rows it inserted.
        let copied: i64 = conn
            .query_row(
                &format!(
                    "CREATE TABLE {OUT}.{}.{} AS SELECT * FROM {from}",
                    quote(s),
                    quote(name)
                ),
                [],
                |r| r.get(0),
            )
            .map_err(sql_error(&format!("cannot copy {s}.{name}")))?;
        let copied = copied as u64;
        let counted: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {from}"), [], |r| r.get(0))
            .map_err(sql_error(&format!("cannot count {s}.{name}")))?;
        if copied != counted as u64 {
            return Err(anyhow!(
                "{s}.{name} ({}) copied {copied} rows but the source holds {counted}",
                relation.kind
            )
            .into());
        }
        log::debug!("copied {s}.{name} ({}): {copied} rows", relation.kind);
        tables.insert(name.clone(), copied);
    }

    let at = UtcDateTime::of(exported_at).sql_timestamp();
    let values = tables
        .iter()
        .map(|(name, rows)| {
            format!(
                "(TIMESTAMP {}, {}, {}, {rows}, {})",
                literal(&at),
                literal(&lakehouse.display().to_string()),
                literal(name),
                literal(fingerprint)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    conn.execute_batch(&format!(
        "CREATE TABLE {OUT}.{q}.{EXPORT_TABLE} (exported_at TIMESTAMP NOT NULL, source_path VARCHAR NOT NULL,
             table_name VARCHAR NOT NULL, row_count BIGINT NOT NULL, {} VARCHAR NOT NULL);
         INSERT INTO {OUT}.{q}.{EXPORT_TABLE} VALUES {values};
         CHECKPOINT {OUT};
         DETACH {OUT};",
        fingerprint::COLUMN,
        q = quote(s)
    ))
    .map_err(sql_error("cannot finish the new serving file"))?;
    Ok(tables)
}

/// Refuses (unless `--allow-breaking`) when a table or column of the published file is missing
/// from what would replace it.
fn check_breaking(
    conn: &Connection,
    serving: &Path,
    source: &schema::Catalogue,
    options: &Options<'_>,
) -> Result<(), StepError> {
    if !serving.exists() {
        return Ok(());
    }
    let s = options.schema;
    let attach = format!(
        "ATTACH {} AS {PUBLISHED} (READ_ONLY)",
        literal(&serving.display().to_string())
    );
    let published =
        lakehouse::retry_while_locked(serving, PUBLISHED_LOCK_WAIT, || conn.execute_batch(&attach))
            .map_err(anyhow::Error::new)
            .and_then(|()| {
                let read = schema::read(conn, PUBLISHED, s, EXPORT_TABLE)
                    .map_err(sql_error("cannot read the published file's catalog"));
                conn.execute_batch(&format!("DETACH {PUBLISHED}"))
                    .map_err(sql_error("cannot detach the published file"))?;
                read
            });
    let published = match published {
        Ok(p) => p,
        Err(e) if options.allow_breaking => {
            log::warn!("cannot read the published file ({e:#}); replacing it (--allow-breaking)");
            return Ok(());
        }
        Err(e) => {
            return Err(e
                .context("cannot check the published file for breaking changes; --allow-breaking replaces it anyway")
                .into());
        }
    };
    for change in schema::type_changes(s, &published, source) {
        log::warn!("column type changes: {change}");
    }
    let breaking = schema::breaking_changes(s, &published, source);
    if breaking.is_empty() {
        return Ok(());
    }
    if options.allow_breaking {
        for b in &breaking {
            log::warn!("{b} (--allow-breaking)");
        }
        return Ok(());
    }
    Err(anyhow!(
        "refusing to publish: {}; readers of {} use them (--allow-breaking publishes anyway)",
        breaking.join("; "),
        serving.display()
    )
    .into())
}

/// Reopens the closed file read-only, as readers will, and checks that it holds exactly the
/// expected tables with the expected rows, and a `_materia_export` that says so.
fn check_written(
    next: &Path,
    s: &str,
    tables: &BTreeMap<String, u64>,
    source: &schema::Catalogue,
) -> anyhow::Result<()> {
    let conn = lakehouse::open_read_only(next, Duration::ZERO)
        .with_context(|| format!("cannot reopen {} read-only", next.display()))?;
    let catalog: String = conn
        .query_row("SELECT current_database()", [], |r| r.get(0))
        .context("cannot read the new file's catalog name")?;
    let written = schema::read(&conn, &catalog, s, EXPORT_TABLE)
        .context("cannot read the new file's catalog")?;
    let want: Vec<&String> = source.keys().collect();
    let have: Vec<&String> = written.keys().collect();
    anyhow::ensure!(
        want == have,
        "the new file holds tables {have:?}, expected {want:?}"
    );
    for (name, relation) in &written {
        anyhow::ensure!(
            relation.kind == "BASE TABLE",
            "{s}.{name} is a {} in the new file, not a table",
            relation.kind
        );
        let want_columns: Vec<&String> = source[name].columns.iter().map(|(c, _)| c).collect();
        let have_columns: Vec<&String> = relation.columns.iter().map(|(c, _)| c).collect();
        anyhow::ensure!(
            want_columns == have_columns,
            "{s}.{name} has columns {have_columns:?} in the new file, expected {want_columns:?}"
        );
        let rows: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM {}.{}", quote(s), quote(name)),
                [],
                |r| r.get(0),
            )
            .with_context(|| format!("cannot count {s}.{name} in the new file"))?;
        anyhow::ensure!(
            rows as u64 == tables[name],
            "{s}.{name} reads back {rows} rows, {} were written",
            tables[name]
        );
    }
    let mut stmt = conn
        .prepare(&format!(
            "SELECT table_name, row_count FROM {}.{EXPORT_TABLE}",
            quote(s)
        ))
        .context("cannot read back _materia_export")?;
    let recorded: BTreeMap<String, u64> = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .and_then(|rows| rows.collect::<Result<_, _>>())
        .context("cannot read back _materia_export")?;
    anyhow::ensure!(
        &recorded == tables,
        "_materia_export reads back {recorded:?}, expected {tables:?}"
    );
    drop(stmt);
    drop(conn);
    generations::require_no_sidecars(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_their_strings_on_the_wire_and_in_the_ledger() {
        let wire = |s: ExportStatus| serde_json::to_value(s).unwrap();
        assert_eq!(wire(ExportStatus::Exported), "exported");
        assert_eq!(wire(ExportStatus::Unchanged), "unchanged");
        assert_eq!(wire(ExportStatus::Failed), "failed");
        assert_eq!(
            RunStatus::from(ExportStatus::Unchanged),
            RunStatus::Unchanged
        );
        assert_eq!(RunStatus::from(ExportStatus::Exported), RunStatus::Success);
        assert_eq!(RunStatus::from(ExportStatus::Failed), RunStatus::Failed);
    }
}
