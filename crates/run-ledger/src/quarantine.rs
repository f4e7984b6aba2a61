//! Landing files an operator quarantined: the escape hatch for a file that landed but breaks the
//! transform (landed by a release that validated less, or wrong in a way no check sees). The
//! file stays in the landing store, unchanged, and is still backed up; the transform skips it
//! until it is released. Rows are never deleted: a release stamps `released_at`, so the ledger
//! keeps who was held, why, and for how long.

use rusqlite::{Transaction, TransactionBehavior, params};

use crate::{Ledger, LedgerError};

/// A quarantine of one landing file, held or released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    pub dataset: String,
    /// Relative to the landing root, `/`-separated: `psd/2026/11/<sha256>.csv.gzip`.
    pub path: String,
    pub sha256: String,
    pub reason: String,
    pub quarantined_at: String,
    pub released_at: Option<String>,
    pub release_reason: Option<String>,
}

/// What [`Ledger::quarantine`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quarantined {
    /// The file is held from now on.
    New(Quarantine),
    /// The file was already held; its first reason stands.
    Already(Quarantine),
}

const COLUMNS: &str = "dataset, path, sha256, reason, quarantined_at, released_at, release_reason";

fn quarantine_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Quarantine> {
    Ok(Quarantine {
        dataset: r.get(0)?,
        path: r.get(1)?,
        sha256: r.get(2)?,
        reason: r.get(3)?,
        quarantined_at: r.get(4)?,
        released_at: r.get(5)?,
        release_reason: r.get(6)?,
    })
}

impl Ledger {
    /// Holds the landing file at `path` (relative to the landing root) out of the transform,
    /// for `reason`, from `at`. Holding a file already held changes nothing.
    pub fn quarantine(
        &self,
        dataset: &str,
        path: &str,
        sha256: &str,
        reason: &str,
        at: &str,
    ) -> Result<Quarantined, LedgerError> {
        // One immediate transaction: two commands at once see each other's hold, never both
        // "new", and the row read back is the one written.
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))?;
        if let Some(held) = self.held_at(path)? {
            return Ok(Quarantined::Already(held));
        }
        tx.execute(
            "INSERT INTO landing_quarantine (dataset, path, sha256, reason, quarantined_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![dataset, path, sha256, reason, at],
        )
        .map_err(|e| self.sql(e))?;
        let held = self
            .held_at(path)?
            .ok_or_else(|| self.sql(rusqlite::Error::QueryReturnedNoRows))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(Quarantined::New(held))
    }

    /// Releases the held quarantine of `path`, for `reason`, at `at`: the transform reads the
    /// file again from its next run. None when `path` is not held.
    pub fn release_quarantine(
        &self,
        path: &str,
        reason: Option<&str>,
        at: &str,
    ) -> Result<Option<Quarantine>, LedgerError> {
        // One statement: of two releases at once, only the one that changed the row reports it.
        Ok(self
            .rows(
                &format!(
                    "UPDATE landing_quarantine SET released_at = ?2, release_reason = ?3
                      WHERE path = ?1 AND released_at IS NULL RETURNING {COLUMNS}"
                ),
                params![path, at, reason],
                quarantine_row,
            )?
            .into_iter()
            .next())
    }

    /// Every landing file held now, oldest quarantine first. A state DB from before
    /// quarantines (schema 5, opened read-only) holds none.
    pub fn quarantined(&self) -> Result<Vec<Quarantine>, LedgerError> {
        if !self.has_quarantine_table()? {
            return Ok(Vec::new());
        }
        self.rows(
            &format!(
                "SELECT {COLUMNS} FROM landing_quarantine WHERE released_at IS NULL ORDER BY id"
            ),
            [],
            quarantine_row,
        )
    }

    fn held_at(&self, path: &str) -> Result<Option<Quarantine>, LedgerError> {
        Ok(self
            .rows(
                &format!(
                    "SELECT {COLUMNS} FROM landing_quarantine
                      WHERE path = ?1 AND released_at IS NULL"
                ),
                params![path],
                quarantine_row,
            )?
            .into_iter()
            .next())
    }

    fn has_quarantine_table(&self) -> Result<bool, LedgerError> {
        self.conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master
                  WHERE type = 'table' AND name = 'landing_quarantine'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "psd/2026/01/aaaa.csv.gzip";

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("state.sqlite")).unwrap();
        (dir, ledger)
    }

    #[test]
    fn a_file_is_held_once_then_released_and_its_history_kept() {
        let (_dir, ledger) = ledger();
        assert!(ledger.quarantined().unwrap().is_empty());
        let Quarantined::New(first) = ledger
            .quarantine("psd", PATH, "aaaa", "Value n/a in row 7", "t1")
            .unwrap()
        else {
            panic!("a first quarantine is new");
        };
        assert_eq!(first.reason, "Value n/a in row 7");
        assert_eq!(first.released_at, None);
        // Again: the first reason and time stand.
        let again = ledger
            .quarantine("psd", PATH, "aaaa", "other reason", "t2")
            .unwrap();
        assert_eq!(again, Quarantined::Already(first.clone()));
        assert_eq!(ledger.quarantined().unwrap(), vec![first]);

        let released = ledger
            .release_quarantine(PATH, Some("upstream fixed"), "t3")
            .unwrap()
            .unwrap();
        assert_eq!(released.released_at.as_deref(), Some("t3"));
        assert_eq!(released.release_reason.as_deref(), Some("upstream fixed"));
        assert!(ledger.quarantined().unwrap().is_empty());
        assert_eq!(ledger.release_quarantine(PATH, None, "t4").unwrap(), None);

        // Held again after a release: a new row; the released one is still there.
        assert!(matches!(
            ledger
                .quarantine("psd", PATH, "aaaa", "again", "t5")
                .unwrap(),
            Quarantined::New(_)
        ));
        let rows: i64 = ledger
            .conn
            .query_row("SELECT count(*) FROM landing_quarantine", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2);
    }

    #[test]
    fn commands_at_once_hold_and_release_a_file_exactly_once() {
        let (dir, _ledger) = ledger();
        let db = dir.path().join("state.sqlite");
        let race = |act: fn(&Ledger, usize) -> bool| -> usize {
            let barrier = std::sync::Barrier::new(8);
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|i| {
                        let (db, barrier) = (&db, &barrier);
                        s.spawn(move || {
                            let ledger = Ledger::open(db).unwrap();
                            barrier.wait();
                            act(&ledger, i)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .filter(|won| *won)
                    .count()
            })
        };
        for round in 0..5 {
            let held = race(|l, i| {
                matches!(
                    l.quarantine("psd", PATH, "aaaa", &format!("r{i}"), "t")
                        .unwrap(),
                    Quarantined::New(_)
                )
            });
            assert_eq!(held, 1, "round {round}: one hold is new, the others see it");
            let released = race(|l, _| l.release_quarantine(PATH, None, "t").unwrap().is_some());
            assert_eq!(released, 1, "round {round}: one release changes the row");
        }
        let ledger = Ledger::open(&db).unwrap();
        assert!(ledger.quarantined().unwrap().is_empty());
        let rows: i64 = ledger
            .conn
            .query_row("SELECT count(*) FROM landing_quarantine", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 5);
    }

    #[test]
    fn a_state_db_from_before_quarantines_holds_none_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        drop(Ledger::open(&path).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("DROP TABLE landing_quarantine; PRAGMA user_version = 5;")
            .unwrap();
        drop(conn);
        let ledger = Ledger::open_read_only(&path).unwrap();
        assert!(ledger.quarantined().unwrap().is_empty());
    }
}
