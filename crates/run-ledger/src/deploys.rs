//! deploy-poll's bookkeeping: release tags whose deploy failed, never tried again.

use rusqlite::params;

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
}
