//! Every bound of `deploy-poll` in one place. Names end in their unit.

use std::time::Duration;

/// Time bounds of a deploy's commands.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(300);
pub const GIT_TIMEOUT: Duration = Duration::from_secs(300);
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(2 * 3600);
pub const SOPS_TIMEOUT: Duration = Duration::from_secs(60);
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(300);
/// The default health check waits for a whole supervisor cycle, which rebuilds the lakehouse
/// when the release changed a model (minutes per landing file).
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(3600);
/// Lines of a child's stderr kept for an error message.
pub const TAIL_LINES_MAX: usize = 20;
/// Bound on a child's stdout (`git tag --list`, a decrypted .env).
pub const STDOUT_MAX_BYTES: usize = 16 << 20;
/// `--interval-secs` accepted: from 10 s to a day.
pub const INTERVAL_SECS_MIN: u64 = 10;
pub const INTERVAL_SECS_MAX: u64 = 86_400;
/// `--keep-releases`: default, and the range accepted (the current and the previous release
/// always stay).
pub const KEEP_RELEASES_DEFAULT: u32 = 3;
pub const KEEP_RELEASES_MIN: u32 = 2;
pub const KEEP_RELEASES_MAX: u32 = 100;
