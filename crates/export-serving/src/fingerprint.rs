//! What "unchanged" means: a fingerprint of the serving content a generation would hold,
//! recorded in the generation's `_materia_export` and compared with the published file's.
//!
//! The fingerprint covers everything a reader of the file could see: the schema's name, each
//! relation's name, kind and columns (names and types, in order), its row count and two
//! independent order-insensitive sums of a 64-bit hash of every row (`hash(col, ...)`, with
//! and without a salt), plus the source path (`_materia_export.source_path`), the DuckDB release
//! and the format of the file this step writes. A difference in any of them is a new generation.

use std::collections::BTreeMap;
use std::path::Path;

use lakehouse::duckdb::Connection;

use crate::schema::{self, literal, quote};

/// The layout of the files this step writes; bump it when the written file changes, so that
/// a new release exports again instead of keeping a file of the old layout.
pub const FORMAT: &str = "materia-export/1";
/// The column of `_materia_export` that holds the generation's fingerprint.
pub const COLUMN: &str = "content_fingerprint";

/// The fingerprint of schema `s` of catalog `alias` as it is now: a lowercase SHA-256 hex.
pub fn of_source(
    conn: &Connection,
    alias: &str,
    s: &str,
    source: &schema::Catalogue,
    lakehouse: &Path,
) -> Result<String, lakehouse::duckdb::Error> {
    let library: String =
        conn.query_row("SELECT library_version FROM pragma_version()", [], |r| {
            r.get(0)
        })?;
    let mut text = format!(
        "{FORMAT}\nduckdb {library}\nschema {s}\nsource {}\n",
        lakehouse.display()
    );
    for (name, relation) in source {
        let columns = relation
            .columns
            .iter()
            .map(|(c, _)| quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        let (rows, plain, salted): (i64, String, String) = conn.query_row(
            &format!(
                "SELECT count(*), CAST(coalesce(sum(hash({columns})::HUGEINT), 0) AS VARCHAR),
                        CAST(coalesce(sum(hash(1, {columns})::HUGEINT), 0) AS VARCHAR)
                   FROM {}.{}.{}",
                quote(alias),
                quote(s),
                quote(name)
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        text.push_str(&format!(
            "relation {name:?} {:?} {:?} rows {rows} hash {plain} {salted}\n",
            relation.kind, relation.columns
        ));
    }
    conn.query_row(&format!("SELECT sha256({})", literal(&text)), [], |r| {
        r.get(0)
    })
}

/// What the published file says it holds, when it can be read and is sound.
#[derive(Debug, Clone)]
pub struct Published {
    pub fingerprint: String,
    /// Rows per table, as `_materia_export` records them and the tables hold.
    pub tables: BTreeMap<String, u64>,
    /// `_materia_export.exported_at` as ISO-8601 UTC.
    pub exported_at: String,
    pub catalogue: schema::Catalogue,
}

/// Reads the published file attached as catalog `alias`: its fingerprint, tables and catalogue.
/// An error means it cannot be trusted to stand for any content (an older layout without a
/// fingerprint, a damaged file, tables that do not match their record).
pub fn published(conn: &Connection, alias: &str, s: &str) -> anyhow::Result<Published> {
    use anyhow::Context;
    let export = format!(
        "{}.{}.{}",
        quote(alias),
        quote(s),
        serving_reader::EXPORT_TABLE
    );
    let (fingerprints, exported_at): (i64, Option<String>) = conn
        .query_row(
            &format!(
                "SELECT count(DISTINCT {COLUMN}), strftime(max(exported_at), '%Y-%m-%dT%H:%M:%S.%gZ')
                   FROM {export} WHERE {COLUMN} IS NOT NULL"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .context("no fingerprint in the published file's _materia_export")?;
    anyhow::ensure!(
        fingerprints == 1,
        "the published file's _materia_export holds {fingerprints} fingerprints, not one"
    );
    let (fingerprint, unset): (String, i64) = conn.query_row(
        &format!("SELECT max({COLUMN}), count(*) FILTER (WHERE {COLUMN} IS NULL) FROM {export}"),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    anyhow::ensure!(unset == 0, "rows of _materia_export without a fingerprint");
    let mut stmt = conn.prepare(&format!("SELECT table_name, row_count FROM {export}"))?;
    let tables: BTreeMap<String, u64> = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?
        .collect::<Result<_, _>>()?;
    let catalogue = schema::read(conn, alias, s, serving_reader::EXPORT_TABLE)?;
    let names: Vec<&String> = catalogue.keys().collect();
    let recorded: Vec<&String> = tables.keys().collect();
    anyhow::ensure!(
        names == recorded,
        "the published file holds tables {names:?}, its _materia_export records {recorded:?}"
    );
    for (name, rows) in &tables {
        let counted: i64 = conn.query_row(
            &format!(
                "SELECT count(*) FROM {}.{}.{}",
                quote(alias),
                quote(s),
                quote(name)
            ),
            [],
            |r| r.get(0),
        )?;
        anyhow::ensure!(
            counted as u64 == *rows,
            "{s}.{name} of the published file holds {counted} rows, its record says {rows}"
        );
    }
    Ok(Published {
        fingerprint,
        tables,
        exported_at: exported_at.unwrap_or_default(),
        catalogue,
    })
}
