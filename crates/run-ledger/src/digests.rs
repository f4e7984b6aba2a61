//! Digests of landing files as stored, computed once (backup-sync compares them with the
//! remote's on every push; landing files never change under their name).

use rusqlite::{OptionalExtension, params};

use crate::{Ledger, LedgerError};

impl Ledger {
    /// The MD5 of a landing file (relative path) recorded when it had `size` bytes.
    pub fn file_md5(&self, path: &str, size: u64) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row(
                "SELECT md5 FROM file_digests WHERE path = ?1 AND size = ?2",
                params![path, size as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    pub fn record_file_md5(&self, path: &str, size: u64, md5: &str) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO file_digests (path, size, md5) VALUES (?1, ?2, ?3)",
                params![path, size as i64, md5],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }
}
