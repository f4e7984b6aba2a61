//! The SQLMesh project's audits as plain queries, so that the step counts what an audit flags
//! with the audit's own SQL (one definition, in `transform/audits/`).

use std::fs;
use std::path::Path;

use anyhow::{Context, bail};

/// `SELECT count(*)` of the rows `audit` (`<project>/audits/<audit>.sql`) flags in `model`.
///
/// An audit file is SQL comments, one `AUDIT (...);` block, then the query, which names the
/// audited model `@this_model`.
pub fn count_sql(project: &Path, audit: &str, model: &str) -> anyhow::Result<String> {
    let path = project.join("audits").join(format!("{audit}.sql"));
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let code: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect();
    let code = code.join("\n");
    let Some(header) = code.find("AUDIT") else {
        bail!("{} has no AUDIT (...); block", path.display());
    };
    let Some(end) = code[header..].find(");") else {
        bail!("{}: the AUDIT block does not end with );", path.display());
    };
    let query = code[header + end + 2..].trim().trim_end_matches(';').trim();
    if !query.contains("@this_model") {
        bail!("{}: the query does not name @this_model", path.display());
    }
    Ok(format!(
        "SELECT count(*) FROM ({})",
        query.replace("@this_model", model)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> std::path::PathBuf {
        test_support::repo_root().join("transform")
    }

    #[test]
    fn the_balance_identity_audit_counts_rows_that_break_it() {
        let sql = count_sql(&project(), "balance_identity", "serving.commodity_balance").unwrap();
        assert!(sql.starts_with("SELECT count(*) FROM (SELECT *"), "{sql}");
        assert!(
            !sql.contains("@this_model") && !sql.contains("AUDIT"),
            "{sql}"
        );
        let conn = lakehouse::duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE SCHEMA serving;
             CREATE TABLE serving.commodity_balance AS SELECT * FROM (VALUES
                 (10.0, 2.0, 5.0, 3.0),   -- holds
                 (11.0, 2.0, 5.0, 3.0),   -- breaks it by 1
                 (7.0, 2.0, 5.0, NULL),   -- holds, no imports
                 (NULL, 2.0, 5.0, 3.0))   -- not checked
               AS t(total_supply, beginning_stocks, production, imports);",
        )
        .unwrap();
        let n: i64 = conn.query_row(&sql, [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn a_missing_or_malformed_audit_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(count_sql(dir.path(), "x", "m").is_err());
        fs::create_dir(dir.path().join("audits")).unwrap();
        fs::write(dir.path().join("audits/x.sql"), "SELECT 1").unwrap();
        let err = count_sql(dir.path(), "x", "m").unwrap_err();
        assert!(err.to_string().contains("no AUDIT"), "{err}");
        fs::write(
            dir.path().join("audits/x.sql"),
            "AUDIT (name x);\nSELECT * FROM t",
        )
        .unwrap();
        let err = count_sql(dir.path(), "x", "m").unwrap_err();
        assert!(err.to_string().contains("@this_model"), "{err}");
    }
}
