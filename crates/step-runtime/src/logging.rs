//! Human-readable logs on stderr, never stdout (stdout carries only `--json` data).
//!
//! On a terminal: `LEVEL message`, coloured unless `NO_COLOR` is set. Elsewhere (systemd, pipes,
//! files): one plain line per event, `2026-11-21T12:00:00Z INFO extract-psd: message`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::OnceLock;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::env_vars;

struct StderrLogger {
    step: &'static str,
    terminal: bool,
    color: bool,
}

static LOGGER: OnceLock<StderrLogger> = OnceLock::new();

/// Installs the logger once per process; later calls are no-ops.
pub fn init(step: &'static str) {
    let terminal = std::io::stderr().is_terminal();
    let color = terminal && std::env::var_os(env_vars::NO_COLOR).is_none_or(|v| v.is_empty());
    let level = match std::env::var(env_vars::MATERIA_LOG)
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => LevelFilter::Info,
    };
    let logger = LOGGER.get_or_init(|| StderrLogger {
        step,
        terminal,
        color,
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// True when stderr is a terminal: progress bars are drawn only then.
pub fn stderr_is_terminal() -> bool {
    LOGGER
        .get()
        .map_or_else(|| std::io::stderr().is_terminal(), |l| l.terminal)
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Only our own crates log at info and below; dependencies are heard at warn and up.
        if record.level() > Level::Warn && !record.file().is_some_and(is_workspace_source) {
            return;
        }
        let line = if self.terminal {
            let level = record.level();
            if self.color {
                let code = match level {
                    Level::Error => "31",
                    Level::Warn => "33",
                    Level::Info => "32",
                    Level::Debug | Level::Trace => "2",
                };
                format!("\x1b[{code}m{level:>5}\x1b[0m {}\n", record.args())
            } else {
                format!("{level:>5} {}\n", record.args())
            }
        } else {
            format!(
                "{} {} {}: {}\n",
                humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
                record.level(),
                self.step,
                record.args()
            )
        };
        // A closed stderr must not turn into a panic or a failed run.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// True for the source files of this workspace's own crates, whichever they are: cargo passes
/// workspace members' sources to rustc relative to the workspace root (`crates/<name>/...`, the
/// layout of this workspace), every other crate's by an absolute path or under its registry.
/// So a new library or binary crate is heard at info without being listed anywhere.
fn is_workspace_source(file: &str) -> bool {
    Path::new(file).starts_with("crates")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_crates_are_heard_and_dependencies_are_not() {
        // This very file, as cargo compiled it: a workspace member's path.
        assert!(is_workspace_source(file!()), "{}", file!());
        assert!(is_workspace_source("crates/materia-web/src/main.rs"));
        assert!(is_workspace_source("crates/run-ledger/src/runs.rs"));
        for dependency in [
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/reqwest-0.13.1/src/connect.rs",
            "/root/.cargo/git/checkouts/some-crate-0123/abcdef0/src/lib.rs",
            ".cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rustls-0.23.1/src/conn.rs",
            "rustls-0.23.1/src/conn.rs",
            "/rustc/0123456789abcdef/library/std/src/io/mod.rs",
        ] {
            assert!(!is_workspace_source(dependency), "{dependency}");
        }
    }
}
