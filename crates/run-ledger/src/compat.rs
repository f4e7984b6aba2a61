//! Rolling back past a migration. deploy-poll rolls a failed release back to the previous one,
//! whose binaries then open a state DB that the new release has already migrated. Refusing it
//! as "newer" would stop the old release for good, so the rule is:
//!
//! - Migrations are additive: new tables, new nullable columns, new indexes. A binary of an
//!   older schema version uses the tables and columns it knows and never sees the rest.
//! - `schema_compat.readable_by` (migration 5) is the oldest schema version whose binaries may
//!   use the DB. Additive migrations leave it as it is. A migration that older binaries cannot
//!   live with (a changed meaning, a new NOT NULL column without default, a rewrite) sets it to
//!   its own version in the same migration; binaries older than that refuse the DB (`TooNew`)
//!   and an operator restores a state snapshot or rolls forward.
//! - A binary never downgrades a newer DB and never applies migrations it does not know.
//!
//! Binaries from before migration 5 know nothing of this and refuse any newer DB.

use rusqlite::OptionalExtension;

use crate::{Ledger, LedgerError, SCHEMA_VERSION};

impl Ledger {
    /// Whether this binary (schema `SCHEMA_VERSION`) may use a DB of a newer schema version.
    pub(crate) fn newer_schema_is_usable(&self) -> Result<bool, LedgerError> {
        let has_table: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_compat'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))?;
        if !has_table {
            return Ok(false);
        }
        let readable_by: Option<i64> = self
            .conn
            .query_row(
                "SELECT readable_by FROM schema_compat WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        Ok(readable_by.is_some_and(|v| v <= SCHEMA_VERSION))
    }
}

#[cfg(test)]
mod tests {
    use crate::migrations::MIGRATIONS;

    #[test]
    fn migrations_after_the_compat_table_are_additive_or_raise_readable_by() {
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(5) {
            let upper = migration.to_uppercase();
            let destructive = ["DROP ", "RENAME ", "DELETE FROM", "UPDATE "]
                .iter()
                .any(|word| upper.contains(word));
            let raises = upper.contains("SCHEMA_COMPAT");
            assert!(
                !destructive || raises,
                "migration {} changes what older binaries rely on without raising \
                 schema_compat.readable_by",
                i + 1
            );
        }
    }
}
