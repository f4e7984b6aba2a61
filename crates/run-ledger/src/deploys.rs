//! deploy-poll's bookkeeping: release tags whose deploy failed, never tried again.

use rusqlite::{OptionalExtension, params};

use crate::{Ledger, LedgerError};

impl Ledger {
    /// Remembers that deploying `tag` failed, for good.
    pub fn mark_bad_tag(&self, tag: &str, reason: &str, at: &str) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO deploy_bad_tags (tag, reason, recorded_at) VALUES (?1, ?2, ?3)",
                params![tag, reason, at],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// Every tag recorded as bad.
    pub fn bad_tags(&self) -> Result<Vec<String>, LedgerError> {
        self.rows("SELECT tag FROM deploy_bad_tags ORDER BY tag", [], |r| {
            r.get(0)
        })
    }

    /// Forgets that deploying `tag` failed, so deploy-poll may try it again (an operator's
    /// decision: `materia-status clear-bad TAG`). Returns the reason it was marked with, or
    /// `None` when it was not marked.
    pub fn clear_bad_tag(&self, tag: &str) -> Result<Option<String>, LedgerError> {
        let reason: Option<String> = self
            .conn
            .query_row(
                "DELETE FROM deploy_bad_tags WHERE tag = ?1 RETURNING reason",
                params![tag],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        Ok(reason)
    }
}
