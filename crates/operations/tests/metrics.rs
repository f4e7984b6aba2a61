//! Metrics files are for node_exporter, which runs as its own user: they must be readable by
//! every user whatever the unit's `UMask=0027`.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use test_support::{CommandExt, stderr, workspace_bin};

/// Bound on the child process: a hang fails the test instead of the run.
const CHILD_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

#[test]
fn regression_metrics_files_are_world_readable_under_the_units_umask() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("textfile");
    std::fs::create_dir(&metrics).unwrap();
    std::fs::set_permissions(&metrics, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A run that fails at once (no such zip) still writes its metrics.
    let out = Command::new("sh")
        .args(["-c", "umask 0027 && exec \"$0\" \"$@\""])
        .arg(workspace_bin("extract-psd"))
        .args(["--url"])
        .arg(dir.path().join("missing.zip"))
        .env_clear()
        .env("LANDING_DIR", dir.path().join("landing"))
        .env("METRICS_DIR", &metrics)
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let file = metrics.join("materia_extract_psd.prom");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    // Before: 0640 (File::create under the umask), unreadable by node_exporter.
    assert_eq!(mode, 0o644, "{} has mode {mode:o}", file.display());
    let landing = std::fs::metadata(dir.path().join("landing/.state.sqlite")).unwrap();
    assert_eq!(
        landing.permissions().mode() & 0o007,
        0,
        "the umask still applies to everything else"
    );
}
