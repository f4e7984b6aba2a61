//! The docs held to the repository, so they cannot rot where a newcomer reads first: every
//! bound `docs/INTERFACES.md` writes as `` `NAME` = VALUE UNIT `` equals the constant `NAME` of
//! the binary's `src/limits.rs`; every target of the Makefile's `.PHONY` is listed under "Make
//! targets"; every repository path the docs and the tool configuration files name exists; no
//! paragraph of the docs repeats a run of words of another (an orphaned older copy).
//!
//! Each check reports every finding at once, as `FILE:LINE: what is wrong`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use test_support::{CommandExt, repo_root};

/// The operators' and engineers' docs.
fn docs() -> Vec<PathBuf> {
    let root = repo_root();
    let mut docs = vec![root.join("README.md")];
    let mut more: Vec<PathBuf> = list_dir(&root.join("docs"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

fn list_dir(dir: &Path) -> Vec<PathBuf> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path()
        })
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

fn report(what: &str, findings: &[String]) {
    assert!(
        findings.is_empty(),
        "{what}: {} finding(s):\n{}",
        findings.len(),
        findings.join("\n")
    );
}

// ---- Bounds ---------------------------------------------------------------------------------

/// A constant's value, as far as a doc can state it.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// A `Duration`, in milliseconds.
    Millis(f64),
    Int(f64),
}

/// Every `const NAME: TYPE = EXPR;` of `crates/<crate>/src/limits.rs`, by crate.
fn limits() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for dir in list_dir(&repo_root().join("crates")) {
        let path = dir.join("src/limits.rs");
        let Ok(source) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut consts = BTreeMap::new();
        // Statements, comments dropped: a constant may span lines.
        let code: String = source
            .lines()
            .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
            .collect::<Vec<_>>()
            .join(" ");
        for statement in code.split(';') {
            let statement = statement.trim();
            let Some(pos) = statement.find("const ") else {
                continue;
            };
            let rest = &statement[pos + "const ".len()..];
            let (Some(colon), Some(equals)) = (rest.find(':'), rest.find('=')) else {
                continue;
            };
            let name = rest[..colon].trim().to_owned();
            let expr = rest[equals + 1..].trim().to_owned();
            consts.insert(name, expr);
        }
        assert!(
            !consts.is_empty(),
            "{}: no `const NAME: TYPE = VALUE;` found",
            relative(&path)
        );
        out.insert(
            dir.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            consts,
        );
    }
    assert!(out.len() >= 5, "limits.rs files found: {:?}", out.keys());
    out
}

/// `2 * 3600`, `16 << 20`, `86_400`, `(1 << 20)`.
fn eval_int(expr: &str) -> Option<f64> {
    let expr = expr.trim();
    if let Some(inner) = expr.strip_prefix('(').and_then(|e| e.strip_suffix(')')) {
        return eval_int(inner);
    }
    if let Some((a, b)) = expr.split_once("<<") {
        let (a, b) = (eval_int(a)?, eval_int(b)?);
        return Some(a * 2f64.powi(i32::try_from(b as i64).ok()?));
    }
    if expr.contains('*') {
        return expr.split('*').map(eval_int).product();
    }
    expr.replace('_', "").parse::<i64>().ok().map(|v| v as f64)
}

/// The value of a constant's expression: `Duration::from_secs(..)`, `from_millis(..)`, an
/// integer expression, or a string rclone reads (`"15s"`, `"3"`).
fn eval(name: &str, expr: &str) -> Option<Value> {
    let call = |f: &str| {
        expr.strip_prefix(f)
            .and_then(|e| e.strip_suffix(')'))
            .and_then(eval_int)
    };
    if let Some(secs) = call("Duration::from_secs(") {
        return Some(Value::Millis(secs * 1000.0));
    }
    if let Some(ms) = call("Duration::from_millis(") {
        return Some(Value::Millis(ms));
    }
    if let Some(text) = expr.strip_prefix('"').and_then(|e| e.strip_suffix('"')) {
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let number = text[..split].parse::<f64>().ok()?;
        return match &text[split..] {
            "" => Some(Value::Int(number)),
            unit => time_factor(unit).map(|f| Value::Millis(number * f)),
        };
    }
    let n = eval_int(expr)?;
    // An integer of time: its name says the unit.
    if name.ends_with("_MILLIS") || name.ends_with("_MS") {
        return Some(Value::Millis(n));
    }
    if name.contains("_SECS") {
        return Some(Value::Millis(n * 1000.0));
    }
    if name.ends_with("_MIB") {
        return Some(Value::Int(n * f64::from(1 << 20)));
    }
    Some(Value::Int(n))
}

fn time_factor(unit: &str) -> Option<f64> {
    Some(match unit {
        "ms" => 1.0,
        "s" => 1000.0,
        "min" | "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    })
}

fn size_factor(unit: &str) -> Option<f64> {
    Some(match unit {
        "bytes" | "byte" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => f64::from(1 << 20),
        "GiB" => f64::from(1 << 30),
        _ => return None,
    })
}

/// One `` `NAME` = VALUE UNIT `` of a doc.
struct Bound {
    line: usize,
    name: String,
    /// The binary whose `### `name`` section holds it, if any.
    section: Option<String>,
    number: f64,
    unit: String,
    written: String,
}

fn bounds(doc: &str) -> Vec<Bound> {
    let mut out = Vec::new();
    let mut search = 0;
    while let Some(found) = doc[search..].find("` = ") {
        let end = search + found;
        search = end + 1;
        let Some(start) = doc[..end].rfind('`') else {
            continue;
        };
        let name = &doc[start + 1..end];
        if name.is_empty()
            || !name.starts_with(|c: char| c.is_ascii_uppercase())
            || !name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        let rest = &doc[end + "` = ".len()..];
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        let number_text = rest[..number_len].trim_end_matches(['.', ',']);
        let Ok(number) = number_text.replace([',', '_'], "").parse::<f64>() else {
            continue;
        };
        let after = rest[number_text.len()..].trim_start_matches(' ');
        let unit: String = after
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        // The enclosing `### `binary`` section, if no `## ` heading closes it before `end`.
        let heading = doc[..end]
            .rfind("\n### `")
            .map(|h| h + 1)
            .or_else(|| doc.starts_with("### `").then_some(0))
            .filter(|h| !doc[*h..end].contains("\n## "));
        let section = heading.and_then(|h| {
            let line = &doc[h + "### `".len()..];
            line.split('`').next().map(str::to_owned)
        });
        out.push(Bound {
            line: line_of(doc, end),
            name: name.to_owned(),
            section,
            number,
            unit: unit.clone(),
            written: format!("`{name}` = {number_text} {unit}")
                .trim_end()
                .to_owned(),
        });
    }
    out
}

/// Whether `bound` states `value`, or why not.
fn states(bound: &Bound, value: &Value) -> Result<(), String> {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    match value {
        Value::Millis(ms) => match time_factor(&bound.unit) {
            Some(f) if close(bound.number * f, *ms) => Ok(()),
            Some(_) => Err(format!("the constant is {} s", ms / 1000.0)),
            None => Err(format!(
                "the constant is a time ({} s): write its unit (ms, s, min, h, d)",
                ms / 1000.0
            )),
        },
        Value::Int(n) => {
            let factor = size_factor(&bound.unit).unwrap_or(1.0);
            if time_factor(&bound.unit).is_some() {
                return Err(format!(
                    "the constant is {n}, not a time (name a `_SECS` or `_MILLIS` constant, or a Duration)"
                ));
            }
            if close(bound.number * factor, *n) {
                Ok(())
            } else {
                Err(format!("the constant is {n}"))
            }
        }
    }
}

#[test]
fn every_bound_interfaces_states_equals_the_limits_constant_it_names() {
    let path = repo_root().join("docs/INTERFACES.md");
    let doc = read(&path);
    let limits = limits();
    let found = bounds(&doc);
    let mut findings = Vec::new();
    for bound in &found {
        let at = format!("docs/INTERFACES.md:{}: {}", bound.line, bound.written);
        let own = bound
            .section
            .as_ref()
            .and_then(|s| limits.get(s).map(|c| (s.clone(), c)))
            .and_then(|(s, c)| c.get(&bound.name).map(|e| (s, e.clone())));
        let resolved =
            own.or_else(|| {
                let holders: Vec<_> = limits
                    .iter()
                    .filter_map(|(krate, c)| c.get(&bound.name).map(|e| (krate.clone(), e.clone())))
                    .collect();
                match holders.len() {
                    1 => holders.into_iter().next(),
                    0 => {
                        findings.push(format!(
                            "{at}: no crates/*/src/limits.rs has a constant {}",
                            bound.name
                        ));
                        None
                    }
                    _ => {
                        findings.push(format!(
                        "{at}: {} is a constant of several crates ({}); state it in the section of \
                         its binary",
                        bound.name,
                        holders.iter().map(|h| h.0.as_str()).collect::<Vec<_>>().join(", ")
                    ));
                        None
                    }
                }
            });
        let Some((krate, expr)) = resolved else {
            continue;
        };
        let source = format!("crates/{krate}/src/limits.rs");
        match eval(&bound.name, &expr) {
            None => findings.push(format!(
                "{at}: cannot evaluate {} = {expr} of {source}",
                bound.name
            )),
            Some(value) => {
                if let Err(why) = states(bound, &value) {
                    findings.push(format!(
                        "{at}, but {source} has {} = {expr}: {why}",
                        bound.name
                    ));
                }
            }
        }
    }
    assert!(
        found.len() >= 30,
        "only {} `NAME` = VALUE bounds found in docs/INTERFACES.md",
        found.len()
    );
    assert!(
        found.iter().any(|b| b.name == "BUILD_TIMEOUT"),
        "deploy-poll's BUILD_TIMEOUT is not stated in docs/INTERFACES.md"
    );
    report(
        "docs/INTERFACES.md states bounds that differ from limits.rs",
        &findings,
    );
}

#[test]
fn bounds_are_read_and_compared_with_their_units() {
    let doc = "### `deploy-poll`\n\nbuild `BUILD_TIMEOUT` = 2 h, `X_SECS` = 86,400 s, `Y` = 16 KiB.\n\n## 7\n`Z` = 3 retries";
    let found = bounds(doc);
    let got: Vec<_> = found
        .iter()
        .map(|b| {
            (
                b.name.as_str(),
                b.number,
                b.unit.as_str(),
                b.section.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("BUILD_TIMEOUT", 2.0, "h", Some("deploy-poll")),
            ("X_SECS", 86_400.0, "s", Some("deploy-poll")),
            ("Y", 16.0, "KiB", Some("deploy-poll")),
            ("Z", 3.0, "retries", None),
        ]
    );
    let value = |name: &str, expr: &str| eval(name, expr).unwrap();
    assert!(
        states(
            &found[0],
            &value("BUILD_TIMEOUT", "Duration::from_secs(2 * 3600)")
        )
        .is_ok()
    );
    assert!(
        states(
            &found[0],
            &value("BUILD_TIMEOUT", "Duration::from_secs(3 * 3600)")
        )
        .is_err()
    );
    assert!(states(&found[1], &value("X_SECS", "86_400")).is_ok());
    assert!(states(&found[2], &value("Y", "16 * 1024")).is_ok());
    assert!(states(&found[2], &value("Y", "16 << 20")).is_err());
    assert!(states(&found[3], &value("Z", "\"3\"")).is_ok());
    assert_eq!(value("T", "\"15s\""), Value::Millis(15_000.0));
    assert_eq!(value("SHUTDOWN_DRAIN_MILLIS", "500"), Value::Millis(500.0));
}

// ---- Make targets ---------------------------------------------------------------------------

/// The targets of the Makefile's `.PHONY` lines.
fn phony_targets() -> Vec<String> {
    let makefile = read(&repo_root().join("Makefile")).replace("\\\n", " ");
    let targets: Vec<String> = makefile
        .lines()
        .filter_map(|l| l.strip_prefix(".PHONY:"))
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect();
    assert!(targets.len() > 20, "Makefile .PHONY: {targets:?}");
    targets
}

#[test]
fn every_make_target_is_listed_in_interfaces() {
    let doc = read(&repo_root().join("docs/INTERFACES.md"));
    let start = doc
        .match_indices("\n## ")
        .map(|(i, _)| i)
        .find(|i| {
            doc[i + 1..]
                .lines()
                .next()
                .is_some_and(|l| l.contains("Make targets"))
        })
        .expect("docs/INTERFACES.md has no \"## N. Make targets\" section");
    let rest = &doc[start + 1..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    // Whitespace collapsed: `make\n  deps-bench` lists deps-bench.
    let section = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
    let targets = phony_targets();
    let mut findings = Vec::new();
    for target in &targets {
        if !section.contains(&format!("`make {target}`"))
            && !section.contains(&format!("`make {target} "))
        {
            findings.push(format!(
                "docs/INTERFACES.md:{}: \"Make targets\" does not list `make {target}` (Makefile .PHONY)",
                line_of(&doc, start + 1)
            ));
        }
    }
    for listed in section.split("`make ").skip(1) {
        let name: String = listed
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        if !targets.contains(&name) {
            findings.push(format!(
                "docs/INTERFACES.md:{}: \"Make targets\" lists `make {name}`, which the Makefile's .PHONY does not have",
                line_of(&doc, start + 1)
            ));
        }
    }
    report("the Make targets of docs/INTERFACES.md", &findings);
}

// ---- Paths ----------------------------------------------------------------------------------

/// Where the repository's own files are: a path a doc writes starting with one of these is a
/// path of the repository.
const REPO_PREFIXES: [&str; 14] = [
    "crates/",
    "scripts/",
    "docs/",
    "transform/",
    "systemd/",
    "third-party/",
    "tools/",
    "fuzz/",
    "secrets/",
    "ops/",
    ".config/",
    ".cargo/",
    ".ci/",
    ".gitlab-ci.yml",
];

/// Tool configuration files whose comments name files.
const CONFIG_FILES: [&str; 6] = [
    "Makefile",
    ".config/nextest.toml",
    ".sops.yaml",
    ".cargo/config.toml",
    "clippy.toml",
    "rust-toolchain.toml",
];

/// Every `(offset, path)` in `text` that starts with a repository prefix. Templates
/// (`crates/<name>/`, `scripts/bench-*.sh`, `{a,b}`) are left out.
fn named_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for prefix in REPO_PREFIXES {
        for (at, _) in text.match_indices(prefix) {
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || "/._-~$".contains(c)) {
                continue;
            }
            let path: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "_.-/<>*{}[]$".contains(*c))
                .collect();
            let path = path.trim_end_matches(['.', ':']);
            if path.contains(['<', '>', '*', '{', '}', '[', ']', '$']) || path.contains("...") {
                continue;
            }
            // An upper-case placeholder segment (`crates/NAME/`).
            if path
                .split('/')
                .any(|s| s.len() > 1 && s.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            {
                continue;
            }
            out.push((at, path.to_owned()));
        }
    }
    out.sort();
    out
}

/// Paths git ignores are made by builds and runs; a doc may name them before they exist.
fn ignored(path: &str) -> bool {
    Command::new("git")
        .current_dir(repo_root())
        .args(["check-ignore", "-q", "--no-index", path])
        .output_within(Duration::from_secs(30))
        .is_ok_and(|o| o.status.success())
}

#[test]
fn every_path_the_docs_name_exists() {
    let root = repo_root();
    let mut files = docs();
    files.extend(CONFIG_FILES.iter().map(|f| root.join(f)));
    let mut findings = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = read(file);
        for (at, path) in named_paths(&text) {
            checked += 1;
            let full = root.join(&path);
            let exists = if path.ends_with('/') {
                full.is_dir()
            } else {
                full.exists()
            };
            if !exists && !ignored(&path) {
                findings.push(format!(
                    "{}:{}: names {path}, which is not in the repository",
                    relative(file),
                    line_of(&text, at)
                ));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} repository paths found in the docs"
    );
    report("paths the docs name that do not exist", &findings);
}

#[test]
fn paths_are_found_and_templates_left_out() {
    let text = "see `scripts/demo.sh`, crates/<name>/src/main.rs, (docs/INTERFACES.md).\n\
                /opt/materia/tools/bin and .venv-tools/ and scripts/bench-*.sh and crates/NAME/x";
    let found: Vec<String> = named_paths(text).into_iter().map(|(_, p)| p).collect();
    assert_eq!(found, ["scripts/demo.sh", "docs/INTERFACES.md"]);
}

// ---- Repeated paragraphs --------------------------------------------------------------------

/// Words in a row that make a repetition.
const REPEATED_WORDS_MIN: usize = 30;

/// The prose paragraphs of a markdown text (code blocks and tables left out), with the line
/// each starts on.
fn paragraphs(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            fenced = !fenced;
        }
        if fenced || trimmed.starts_with("```") || trimmed.starts_with('|') || trimmed.is_empty() {
            out.extend(current.take());
            continue;
        }
        let entry = current.get_or_insert_with(|| (i + 1, String::new()));
        entry.1.push(' ');
        entry.1.push_str(trimmed);
    }
    out.extend(current);
    out
}

fn words(paragraph: &str) -> Vec<String> {
    paragraph
        .split_whitespace()
        .map(|w| w.to_lowercase())
        .collect()
}

/// Every run of [`REPEATED_WORDS_MIN`] words that two paragraphs share: `(where, where, run)`.
fn repeated(texts: &[(String, String)]) -> Vec<String> {
    let mut seen: BTreeMap<Vec<String>, (String, usize)> = BTreeMap::new();
    let mut findings = Vec::new();
    for (name, text) in texts {
        for (line, paragraph) in paragraphs(text) {
            let words = words(&paragraph);
            let mut reported = false;
            for window in words.windows(REPEATED_WORDS_MIN) {
                let here = (name.clone(), line);
                match seen.get(window) {
                    Some(first) if *first != here => {
                        if !reported {
                            findings.push(format!(
                                "{name}:{line}: repeats {}:{} (\"{} ...\")",
                                first.0,
                                first.1,
                                window[..12].join(" ")
                            ));
                            reported = true;
                        }
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(window.to_vec(), here);
                    }
                }
            }
        }
    }
    findings
}

#[test]
fn no_paragraph_of_the_docs_appears_twice() {
    let texts: Vec<(String, String)> = docs().iter().map(|p| (relative(p), read(p))).collect();
    let paragraphs_seen: usize = texts.iter().map(|(_, t)| paragraphs(t).len()).sum();
    assert!(
        paragraphs_seen > 200,
        "only {paragraphs_seen} paragraphs in the docs"
    );
    report("paragraphs that repeat another", &repeated(&texts));
}

#[test]
fn a_repeated_run_of_words_is_found_across_wrapping() {
    let words: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
    let one = format!("# A\n\n{}\n\nother\n", words.join(" "));
    let two = format!(
        "x\n\nintro {}\n{}\n\n```\n{}\n```\n",
        words[..20].join(" "),
        words[20..35].join(" "),
        words.join(" ")
    );
    let found = repeated(&[("one.md".into(), one.clone()), ("two.md".into(), two)]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("two.md:3: repeats one.md:3"),
        "{found:?}"
    );
    assert!(repeated(&[("one.md".into(), one)]).is_empty());
}
