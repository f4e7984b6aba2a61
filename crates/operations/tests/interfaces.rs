//! `docs/INTERFACES.md` against the code: every environment variable the binaries and scripts
//! read is documented, every declared binary has its section naming every field of its
//! `--json` object, every `--help` is a reviewed snapshot, and the sections reserved for work
//! that has not landed go when it does. A new binary, flag or variable fails here until the
//! reference says what it is.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use step_runtime::binaries::BINARIES;
use test_support::{CommandExt, json_line, repo_root, stderr, workspace_bin};

fn reference() -> String {
    std::fs::read_to_string(repo_root().join("docs/INTERFACES.md")).unwrap()
}

fn documented(doc: &str, name: &str) -> bool {
    doc.contains(&format!("`{name}`"))
}

/// The `pub const NAME: &str = "VALUE";` lines of `step_runtime::env_vars`.
fn env_var_constants() -> Vec<(String, String)> {
    let source =
        std::fs::read_to_string(repo_root().join("crates/step-runtime/src/env_vars.rs")).unwrap();
    source
        .lines()
        .filter_map(|l| l.strip_prefix("pub const "))
        .map(|l| {
            let (name, rest) = l.split_once(": &str = \"").unwrap_or_else(|| {
                panic!("env_vars.rs: every constant is `pub const NAME: &str = \"NAME\";`: {l}")
            });
            let value = rest.strip_suffix("\";").unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

fn run(binary: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(workspace_bin(binary));
    cmd.env_clear().args(args);
    cmd.output_within(Duration::from_secs(60)).unwrap()
}

/// `--help` of `binary` (and of `binary sub` for `sub` in `subcommand`).
fn help(binary: &str, subcommand: Option<&str>) -> String {
    let mut args: Vec<&str> = subcommand.into_iter().collect();
    args.push("--help");
    let out = run(binary, &args);
    assert!(out.status.success(), "{binary} {args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists under `Commands:` (clap's own `help` left out).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// The `[env: NAME=...]` variables of a help text.
fn help_variables(help: &str) -> Vec<String> {
    help.split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split('=').next())
        .map(str::to_owned)
        .collect()
}

/// The section of the reference under `### `<name>``, up to the next heading.
fn section<'a>(doc: &'a str, name: &str) -> Option<&'a str> {
    let heading = format!("### `{name}`\n");
    let start = doc.find(&heading)? + heading.len();
    let rest = &doc[start..];
    let end = rest
        .find("\n### ")
        .into_iter()
        .chain(rest.find("\n## "))
        .min()
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

#[test]
fn every_environment_variable_constant_is_documented() {
    let doc = reference();
    let constants = env_var_constants();
    assert!(constants.len() >= 25, "env_vars.rs parsed to {constants:?}");
    for (name, value) in &constants {
        assert_eq!(name, value, "env_vars::{name} names another variable");
        assert!(
            documented(&doc, value),
            "docs/INTERFACES.md does not document {value} (section 2)"
        );
    }
}

#[test]
fn every_variable_of_every_help_text_is_a_constant_and_documented() {
    let doc = reference();
    let constants: BTreeSet<String> = env_var_constants().into_iter().map(|(_, v)| v).collect();
    let mut seen = 0;
    for binary in BINARIES {
        let top = help(binary.name, None);
        let mut texts = vec![top.clone()];
        for sub in subcommands(&top) {
            texts.push(help(binary.name, Some(&sub)));
        }
        for text in &texts {
            for variable in help_variables(text) {
                seen += 1;
                assert!(
                    constants.contains(&variable),
                    "{} reads {variable}, which is not a constant of step_runtime::env_vars",
                    binary.name
                );
                assert!(
                    documented(&doc, &variable),
                    "{} reads {variable}, which docs/INTERFACES.md does not document",
                    binary.name
                );
            }
        }
    }
    assert!(
        seen > 20,
        "only {seen} [env: ...] entries found in the help texts"
    );
}

#[test]
fn every_variable_a_script_reads_with_a_default_is_documented() {
    let doc = reference();
    let mut scripts: Vec<_> = std::fs::read_dir(repo_root().join("scripts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.push(repo_root().join(".ci/run"));
    let mut seen = BTreeSet::new();
    for script in scripts.iter().filter(|p| p.is_file()) {
        let text = std::fs::read_to_string(script).unwrap();
        for rest in text.split("${").skip(1) {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let operator = rest[name.len()..].chars().next();
            let reads_environment = matches!(operator, Some(':' | '-' | '?' | '='));
            if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_uppercase()) {
                continue;
            }
            if reads_environment {
                assert!(
                    documented(&doc, &name),
                    "{} reads {name}, which docs/INTERFACES.md does not document",
                    script.strip_prefix(repo_root()).unwrap().display()
                );
                seen.insert(name);
            }
        }
    }
    assert!(
        seen.contains("SUPERVISOR_STEP_TIMEOUT_SECS") && seen.len() > 15,
        "{seen:?}"
    );
}

#[test]
fn every_binary_has_a_section_naming_every_field_of_its_json() {
    let doc = reference();
    for binary in BINARIES {
        let name = binary.name;
        let text = section(&doc, name).unwrap_or_else(|| {
            panic!("docs/INTERFACES.md has no \"### `{name}`\" section under Binaries")
        });
        let top = help(name, None);
        if !top.contains("--json") {
            continue;
        }
        // A run that fails at once (its state DB cannot be made under /dev/null) still prints
        // its whole report, every field null but status and error.
        let mut args: Vec<String> = subcommands(&top).into_iter().take(1).collect();
        args.extend(["--json", "--state-db", "/dev/null/state.sqlite"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(name, &args);
        assert_ne!(out.status.code(), Some(0), "{name} {args:?} should fail");
        let json = json_line(&out);
        let fields = json.as_object().unwrap();
        assert!(fields.contains_key("status") && fields.contains_key("error"));
        for field in fields.keys() {
            assert!(
                documented(text, field),
                "the `{name}` section of docs/INTERFACES.md does not name its --json field `{field}`"
            );
        }
    }
}

/// Where `--help` snapshots live: `help-<binary>.txt`, `help-<binary>-<subcommand>.txt`.
fn snapshot_dir() -> std::path::PathBuf {
    repo_root().join("crates/operations/tests/snapshots")
}

/// Set to `1` to rewrite the snapshots from the binaries (the test then fails, naming what it
/// rewrote, so that the diff is reviewed before it is committed).
const UPDATE_SNAPSHOTS: &str = "MATERIA_UPDATE_SNAPSHOTS";

#[test]
fn every_help_text_is_a_reviewed_snapshot() {
    let update = std::env::var_os(UPDATE_SNAPSHOTS).is_some_and(|v| v == "1");
    let dir = snapshot_dir();
    let mut expected = BTreeSet::new();
    let mut differ = Vec::new();
    for binary in BINARIES {
        let top = help(binary.name, None);
        let mut texts = vec![(format!("help-{}.txt", binary.name), top.clone())];
        for sub in subcommands(&top) {
            texts.push((
                format!("help-{}-{sub}.txt", binary.name),
                help(binary.name, Some(&sub)),
            ));
        }
        for (file, text) in texts {
            let path = dir.join(&file);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                if update {
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(&path, &text).unwrap();
                }
                differ.push(file.clone());
            }
            expected.insert(file);
        }
    }
    let stale: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run with {UPDATE_SNAPSHOTS}=1)", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| !expected.contains(f))
        .collect();
    if update {
        for file in &stale {
            std::fs::remove_file(dir.join(file)).unwrap();
        }
    }
    assert!(
        expected.len() > BINARIES.len(),
        "only {} help texts for {} binaries",
        expected.len(),
        BINARIES.len()
    );
    assert!(
        differ.is_empty() && stale.is_empty(),
        "--help differs from its snapshot in {}: {differ:?}; snapshots of no binary: {stale:?}. {}",
        dir.display(),
        if update {
            "Rewritten: review `git diff` and commit them."
        } else {
            "If the change is meant, rerun with MATERIA_UPDATE_SNAPSHOTS=1 and review the diff."
        }
    );
}

/// `<!-- reserved: NAME -->` markers: a docs section held for a binary (`NAME` as in
/// `binaries.rs`) or a file (a path from the repository root) that has not landed yet.
fn reserved_markers(doc: &str) -> Vec<&str> {
    doc.split("<!-- reserved:")
        .skip(1)
        .filter_map(|rest| rest.split("-->").next())
        .map(str::trim)
        .collect()
}

#[test]
fn reserved_sections_go_when_what_they_reserve_lands() {
    assert_eq!(
        reserved_markers("a <!-- reserved: web --> b <!-- reserved: .gitlab-ci.yml -->"),
        ["web", ".gitlab-ci.yml"],
        "markers are read"
    );
    for doc in ["docs/INTERFACES.md", "docs/ARCHITECTURE.md", "README.md"] {
        let text = std::fs::read_to_string(repo_root().join(doc)).unwrap();
        for name in reserved_markers(&text) {
            assert!(
                !name.is_empty(),
                "{doc}: a `<!-- reserved: -->` marker names nothing"
            );
            assert!(
                !BINARIES.iter().any(|b| b.name == name),
                "{doc} still reserves a section for {name}, which is now a declared binary: \
                 write the section and remove the marker"
            );
            assert!(
                !repo_root().join(name).exists(),
                "{doc} still reserves a section for {name}, which now exists: write the section \
                 and remove the marker"
            );
        }
    }
}

#[test]
fn the_repository_cites_no_reference_outside_itself() {
    let out = Command::new("git")
        .current_dir(repo_root())
        .args(["ls-files", "-z"])
        .output_within(Duration::from_secs(60))
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let files = String::from_utf8(out.stdout).unwrap();
    let mut checked = 0;
    for file in files.split('\0').filter(|f| !f.is_empty()) {
        let Ok(text) = std::fs::read_to_string(repo_root().join(file)) else {
            continue; // binary files
        };
        checked += 1;
        // Spelt in pieces, so that this file does not match itself.
        let citations = [
            concat!("contracts", ".md"),
            concat!("contract", " section"),
            concat!("shared/", "contracts"),
        ];
        for outside in citations {
            assert!(
                !text.to_lowercase().contains(outside),
                "{file} cites {outside:?}: point at docs/INTERFACES.md instead"
            );
        }
    }
    assert!(checked > 100, "only {checked} text files checked");
}
