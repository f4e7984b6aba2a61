//! Prometheus textfile metrics for node_exporter's textfile collector.
//!
//! Each run rewrites `METRICS_DIR/materia_<step>.prom` whole: written to a hidden temp file in the
//! same directory (the collector reads only `*.prom`), fsynced, then renamed over the old one, so
//! a scrape never sees half a file.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Mode of a textfile: world-readable, for a collector running as its own user.
pub const TEXTFILE_MODE: u32 = 0o644;

/// One gauge: `materia_<step>_<name>`.
#[derive(Debug, Clone)]
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    pub value: f64,
}

impl Metric {
    pub fn new(name: &'static str, help: &'static str, value: f64) -> Self {
        Metric { name, help, value }
    }
}

/// `extract-psd` -> `extract_psd`.
pub fn snake_case(step: &str) -> String {
    step.replace('-', "_")
}

pub fn textfile_path(dir: &Path, step: &str) -> PathBuf {
    dir.join(format!("materia_{}.prom", snake_case(step)))
}

/// Renders metrics in the Prometheus text exposition format.
pub fn render(step: &str, metrics: &[Metric]) -> String {
    let prefix = format!("materia_{}", snake_case(step));
    let mut out = String::new();
    for m in metrics {
        let _ = writeln!(out, "# HELP {prefix}_{} {}", m.name, m.help);
        let _ = writeln!(out, "# TYPE {prefix}_{} gauge", m.name);
        let _ = writeln!(out, "{prefix}_{} {}", m.name, format_value(m.value));
    }
    out
}

fn format_value(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Reads one sample of a previous textfile, to carry values such as the last success forward.
pub fn read_previous(dir: &Path, step: &str, name: &str) -> Option<f64> {
    let text = fs::read_to_string(textfile_path(dir, step)).ok()?;
    let key = format!("materia_{}_{name} ", snake_case(step));
    text.lines()
        .find_map(|line| line.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
}

/// Atomically replaces the step's textfile.
pub fn write_textfile(dir: &Path, step: &str, metrics: &[Metric]) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create metrics directory {}", dir.display()))?;
    let path = textfile_path(dir, step);
    let tmp = dir.join(format!(
        ".materia_{}.prom.{}.tmp",
        snake_case(step),
        std::process::id()
    ));
    let result = (|| -> anyhow::Result<()> {
        let mut file = File::create(&tmp)?;
        // node_exporter runs as another user: readable by all whatever the umask (the units
        // have UMask=0027, which would make the file 0640).
        file.set_permissions(fs::Permissions::from_mode(TEXTFILE_MODE))?;
        file.write_all(render(step, metrics).as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e.context(format!("cannot write metrics file {}", path.display())));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_and_sample_for_each_metric() {
        let text = render(
            "extract-psd",
            &[Metric::new("exit_code", "exit code of the last run", 0.0)],
        );
        assert_eq!(
            text,
            "# HELP materia_extract_psd_exit_code exit code of the last run\n\
             # TYPE materia_extract_psd_exit_code gauge\n\
             materia_extract_psd_exit_code 0\n"
        );
    }

    #[test]
    fn rewrite_replaces_whole_file_and_previous_values_are_readable() {
        let dir = tempfile::tempdir().unwrap();
        write_textfile(dir.path(), "extract-psd", &[Metric::new("a", "h", 1.5)]).unwrap();
        assert_eq!(read_previous(dir.path(), "extract-psd", "a"), Some(1.5));
        write_textfile(dir.path(), "extract-psd", &[Metric::new("b", "h", 2.0)]).unwrap();
        assert_eq!(read_previous(dir.path(), "extract-psd", "a"), None);
        assert_eq!(read_previous(dir.path(), "extract-psd", "b"), Some(2.0));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            names,
            vec!["materia_extract_psd.prom".to_string()],
            "no temp file left"
        );
    }
}
