//! Human-readable logs on stderr, never stdout (stdout carries only `--json` data).
//!
//! On a terminal: `LEVEL message`, coloured unless `NO_COLOR` is set. Elsewhere (systemd, pipes,
//! files): one plain line per event, `2026-11-21T12:00:00Z INFO extract-psd: message`.

use std::io::{IsTerminal, Write};
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
        if record.level() > Level::Warn && !is_own_target(record.target(), self.step) {
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

/// The workspace's libraries; a step's own crate is recognised by its name.
const WORKSPACE_LIBRARIES: [&str; 7] = [
    "step_runtime",
    "run_ledger",
    "landing_store",
    "psd_format",
    "psd_gen",
    "lakehouse",
    "serving_reader",
];

/// True for log records of the step's own crate (`transform` for the step `transform`,
/// `extract_psd` for `extract-psd`) and of the workspace's libraries.
fn is_own_target(target: &str, step: &str) -> bool {
    let root = target.split("::").next().unwrap_or(target);
    root == step.replace('-', "_") || WORKSPACE_LIBRARIES.contains(&root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_hears_its_own_crate_and_the_libraries_but_not_dependencies() {
        assert!(is_own_target("transform::step", "transform"));
        assert!(is_own_target("extract_psd", "extract-psd"));
        assert!(is_own_target("run_ledger::migrate", "export-serving"));
        assert!(!is_own_target("transform::step", "extract-psd"));
        assert!(!is_own_target("reqwest::connect", "extract-psd"));
    }
}
