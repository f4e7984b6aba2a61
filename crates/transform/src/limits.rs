//! Every bound of `transform` in one place. Names end in their unit.

use std::time::Duration;

/// Default bound on the SQLMesh cycle (`--timeout-secs`).
pub const SQLMESH_TIMEOUT_SECS_DEFAULT: u64 = 3_600;
/// Largest `--timeout-secs` accepted: a day.
pub const SQLMESH_TIMEOUT_SECS_MAX: u64 = 86_400;
/// Lines of SQLMesh output kept for an error message.
pub const TAIL_LINES_MAX: usize = 25;
/// Wait for the lakehouse while reading back what SQLMesh built: SQLMesh has exited, so only
/// a stray writer can hold it.
pub const VERIFY_LOCK_WAIT: Duration = Duration::from_secs(30);
/// Bound on the project files hashed: a project directory pointed at the wrong place (a home
/// directory) fails instead of hashing the disk.
pub const PROJECT_FILES_MAX: usize = 2_000;
