//! Every bound of `materia-status` in one place. Names end in their unit. (How long it waits
//! for a writer of the state DB is the ledger's: `run_ledger::BUSY_TIMEOUT_MS`.)

/// Characters of a failed run's error shown under its row of the table (`--json` has all).
pub const ERROR_CHARS_SHOWN_MAX: usize = 200;

/// Characters of a quarantine's `--reason` (one line; the ledger keeps it, the table shows it).
pub const QUARANTINE_REASON_CHARS_MAX: usize = 500;
