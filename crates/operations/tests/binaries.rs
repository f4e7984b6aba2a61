//! The binaries are declared once (`step_runtime::binaries::BINARIES`); everything that cannot
//! read that declaration is checked against it here: the crates with a `main.rs`, the
//! Makefile's `BINARIES`, the supervisor's cycle, `materia-status`'s rows and the systemd units.
//! A new binary fails these tests until it is declared and each of them knows it.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use step_runtime::binaries::{BINARIES, Role, cycle, steps};
use test_support::{CommandExt, json_line, repo_root, stderr, workspace_bin};

fn declared() -> BTreeSet<String> {
    BINARIES.iter().map(|b| b.name.to_owned()).collect()
}

#[test]
fn every_crate_with_a_main_is_a_declared_binary() {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(repo_root().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        assert!(
            !manifest.contains("[[bin]]"),
            "{}: binaries are crates/<name>/src/main.rs, named after their crate",
            dir.display()
        );
        if dir.join("src/main.rs").is_file() {
            found.insert(dir.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert_eq!(
        found,
        declared(),
        "declare every binary in crates/step-runtime/src/binaries.rs (and nothing else)"
    );
}

#[test]
fn the_makefile_builds_and_releases_every_declared_binary() {
    // What `make release` runs, without running it (`make -n`): the build of every binary of
    // the workspace, then one loop that installs each binary into ./bin and one that starts each
    // once. Each loop must name exactly the declared binaries, whatever computes its list.
    let mut make = Command::new("make");
    make.current_dir(repo_root())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .args([
            "-n",
            "--no-print-directory",
            "release",
            "BIN_DIR=/nonexistent/bin",
            "CARGO=cargo",
        ]);
    let out = make.output_within(Duration::from_secs(60)).unwrap();
    assert!(out.status.success(), "make -n release: {}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("cargo build")
            && l.contains("--workspace")
            && l.contains("--bins")),
        "make release does not build every binary (`cargo build ... --workspace --bins`):\n{text}"
    );
    let loops: Vec<BTreeSet<String>> = text
        .lines()
        .filter_map(|l| l.strip_prefix("for b in "))
        .map(|rest| {
            rest.split(';')
                .next()
                .unwrap()
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .collect();
    assert_eq!(
        loops.len(),
        2,
        "make release: one `for b in ...` loop installing the binaries into bin/, one starting \
         each:\n{text}"
    );
    for listed in loops {
        assert_eq!(
            listed,
            declared(),
            "a `for b in ...` loop of make release (left: what it lists, right: \
             crates/step-runtime/src/binaries.rs)"
        );
    }
    assert!(
        text.contains(r#"install -m 0755 "/nonexistent/bin/$b" "bin/$b.new""#),
        "make release installs each binary from BIN_DIR into bin/:\n{text}"
    );
}

#[test]
fn the_supervisor_runs_the_declared_cycle_in_order() {
    let script = std::fs::read_to_string(repo_root().join("scripts/supervisor.sh")).unwrap();
    let lists: Vec<&str> = script
        .lines()
        .filter_map(|l| l.strip_prefix("steps=\""))
        .filter_map(|l| l.strip_suffix('"'))
        .collect();
    assert_eq!(
        lists.len(),
        1,
        "one steps=\"...\" line in scripts/supervisor.sh"
    );
    let supervised: Vec<&str> = lists[0].split_whitespace().collect();
    let declared: Vec<&str> = cycle().collect();
    assert_eq!(supervised, declared, "the supervisor's cycle");
    // No step is named anywhere else in the script's code (comments may name them).
    for line in script.lines().filter(|l| !l.trim_start().starts_with('#')) {
        if line.starts_with("steps=\"") {
            continue;
        }
        for step in &declared {
            assert!(
                !line.contains(step),
                "scripts/supervisor.sh names {step} outside its steps list: {line}"
            );
        }
    }
}

#[test]
fn materia_status_lists_every_declared_step_before_its_first_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.sqlite");
    drop(run_ledger::Ledger::open(&db).unwrap());
    let mut status = Command::new(workspace_bin("materia-status"));
    status
        .env_clear()
        .env("LANDING_DIR", dir.path().join("no-landing"))
        .args(["--json", "--state-db", db.to_str().unwrap()]);
    let out = status.output_within(Duration::from_secs(60)).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let json = json_line(&out);
    let rows: Vec<(&str, &str)> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    let want: Vec<(&str, &str)> = steps().map(|s| (s, "never")).collect();
    assert_eq!(rows, want);
}

#[test]
fn every_timer_step_and_service_has_a_systemd_unit_that_runs_it() {
    let mut exec_starts = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("systemd")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "service") {
            let unit = std::fs::read_to_string(&path).unwrap();
            exec_starts.extend(
                unit.lines()
                    .filter(|l| l.starts_with("ExecStart="))
                    .map(str::to_owned),
            );
        }
    }
    for binary in BINARIES {
        let needs_unit = matches!(binary.role, Role::Timer | Role::Service);
        if needs_unit {
            let runs_it = format!("/bin/{}", binary.name);
            assert!(
                exec_starts
                    .iter()
                    .any(|l| l.contains(&runs_it) && !l.contains(&format!("{runs_it}-"))),
                "no systemd/*.service has an ExecStart running {}: {exec_starts:?}",
                binary.name
            );
        }
    }
    assert!(
        exec_starts
            .iter()
            .any(|l| l.contains("scripts/supervisor.sh")),
        "the cycle steps run under the supervisor's unit"
    );
}

#[test]
fn the_workflow_registry_lists_exactly_the_declared_extractors() {
    let registry = workflows::load(&repo_root().join(workflows::FILE_NAME)).unwrap();
    let listed: BTreeSet<String> = registry.iter().map(|w| w.binary.clone()).collect();
    let declared: BTreeSet<String> = step_runtime::binaries::extractors()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        listed, declared,
        "workflows.toml and the Role::Extractor binaries of binaries.rs"
    );
    for w in &registry {
        assert_eq!(
            run_ledger::dataset_of_step(&w.binary),
            Some(w.dataset.as_str())
        );
    }
    // materia-status reads the same registry the same way.
    let out = Command::new(workspace_bin("materia-status"))
        .env_clear()
        .current_dir(repo_root())
        .args(["--extractors"])
        .output_within(Duration::from_secs(60))
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let in_order: Vec<String> = registry.iter().map(|w| w.binary.clone()).collect();
    assert_eq!(printed, in_order);
}
