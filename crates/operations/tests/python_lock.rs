//! Hash-locked Python (issue 22): `transform/requirements.txt` and `tools/requirements.txt` pin
//! every package with its sha256, and `make venv` installs with `--require-hashes`, so a wheel
//! whose hash differs from the lock stops the venv (and `make release`, which deploys run)
//! with pip's message naming it. Offline: a wheel built here, served from a local directory.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use test_support::{CommandExt, repo_root, stderr};

/// Bound on every child; the venv here holds one tiny wheel.
const CHILD_LIMIT: Duration = Duration::from_secs(300);

#[test]
fn every_pin_of_both_locks_carries_a_hash() {
    for lock in [
        "transform/requirements.txt",
        "tools/requirements.txt",
        "tools/requirements-sops.txt",
        "infra/requirements.txt",
    ] {
        let text = std::fs::read_to_string(repo_root().join(lock)).unwrap();
        // A requirement with its continuation lines, as pip reads it.
        let joined = text.replace("\\\n", " ");
        let mut pins = 0;
        for line in joined
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            pins += 1;
            assert!(line.contains("=="), "{lock}: not pinned: {line}");
            assert!(line.contains("--hash=sha256:"), "{lock}: no hash: {line}");
        }
        assert!(pins >= 1, "{lock} has no requirement");
    }
    let makefile = std::fs::read_to_string(repo_root().join("Makefile")).unwrap();
    assert!(makefile.contains(
        "PIP_INSTALL := pip install --quiet --disable-pip-version-check --require-hashes"
    ));
}

/// A wheel named `materiatest-1.0-py3-none-any.whl` in `dir`; returns its sha256.
fn wheel(dir: &Path) -> String {
    let script = r#"
import hashlib, sys, zipfile
path = sys.argv[1] + "/materiatest-1.0-py3-none-any.whl"
with zipfile.ZipFile(path, "w") as z:
    z.writestr("materiatest/__init__.py", "VALUE = 1\n")
    z.writestr("materiatest-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: materiatest\nVersion: 1.0\n")
    z.writestr("materiatest-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr("materiatest-1.0.dist-info/RECORD", "")
print(hashlib.sha256(open(path, "rb").read()).hexdigest())
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `make venv` of the repository's Makefile, into `dir/venv`, from the lock `dir/req.txt`,
/// with pip limited to the wheels in `dir/wheels` (no network).
fn make_venv(dir: &Path) -> Output {
    Command::new("make")
        .arg("--no-print-directory")
        .arg("venv")
        .arg(format!("VENV={}", dir.join("venv").display()))
        .arg(format!(
            "VENV_REQUIREMENTS={}",
            dir.join("req.txt").display()
        ))
        .current_dir(repo_root())
        .env("PIP_NO_INDEX", "1")
        .env("PIP_FIND_LINKS", dir.join("wheels"))
        .output_within(CHILD_LIMIT)
        .unwrap()
}

#[test]
fn a_wheel_whose_hash_differs_from_the_lock_stops_the_venv_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("wheels")).unwrap();
    let good = wheel(&dir.path().join("wheels"));
    let tampered = format!(
        "{}{}",
        &good[..63],
        if good.ends_with('0') { "1" } else { "0" }
    );
    std::fs::write(
        dir.path().join("req.txt"),
        format!("materiatest==1.0 \\\n    --hash=sha256:{tampered}\n"),
    )
    .unwrap();
    let out = make_venv(dir.path());
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("DO NOT MATCH THE HASHES"), "{text}");
    assert!(
        text.contains("materiatest"),
        "the wheel is not named: {text}"
    );
    assert!(
        text.contains(&format!("Expected sha256 {tampered}")),
        "{text}"
    );
    assert!(text.contains("could not be installed as locked"), "{text}");
    assert!(
        !dir.path().join("venv/.installed").exists(),
        "marked installed"
    );

    // A package the lock does not hash at all is refused the same way.
    std::fs::write(dir.path().join("req.txt"), "materiatest==1.0\n").unwrap();
    let out = make_venv(dir.path());
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("materiatest"), "{text}");
    assert!(!dir.path().join("venv/.installed").exists());

    // The lock's own hash installs.
    std::fs::write(
        dir.path().join("req.txt"),
        format!("materiatest==1.0 \\\n    --hash=sha256:{good}\n"),
    )
    .unwrap();
    let out = make_venv(dir.path());
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    assert!(dir.path().join("venv/.installed").exists());
}
