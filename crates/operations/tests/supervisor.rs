//! `scripts/supervisor.sh` under dash: one real cycle end to end, and scripted steps for the
//! failure, time-bound, back-off and signal cases.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use test_support::{CommandExt, repo_root, stderr, venv};

/// Bound on every child process of these tests: a hang fails the test instead of the run.
const CHILD_LIMIT: Duration = Duration::from_secs(900);

fn bin_dir() -> PathBuf {
    let dir = test_support::bin_dir();
    for b in [
        "extract-psd",
        "extract-prices",
        "transform",
        "export-serving",
        "materia-status",
        "psd-gen",
    ] {
        assert!(
            dir.join(b).is_file(),
            "{b} is not built in {}: run `cargo build --release --workspace --bins`",
            dir.display()
        );
    }
    dir
}

fn supervisor(dir: &Path, bin: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("dash");
    cmd.arg(repo_root().join("scripts/supervisor.sh"))
        .args(args)
        .current_dir(repo_root())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", dir)
        .env("MATERIA_BIN_DIR", bin)
        .env("MATERIA_WORKFLOWS", repo_root().join("workflows.toml"))
        .env("LANDING_DIR", dir.join("landing"))
        .env("DUCKDB_PATH", dir.join("lakehouse.duckdb"))
        .env("SERVING_DUCKDB_PATH", dir.join("analytics.duckdb"))
        .env("METRICS_DIR", dir.join("metrics"));
    cmd
}

/// A directory of scripted steps: each logs its name to `calls`, then runs `body`; and the real
/// `materia-status`, which tells the supervisor which extractors are due.
fn scripted(dir: &Path, bodies: &[(&str, &str)]) -> PathBuf {
    scripted_with(dir, &["extract-psd", "extract-prices"], bodies)
}

fn scripted_with(dir: &Path, extractors: &[&str], bodies: &[(&str, &str)]) -> PathBuf {
    let bin = dir.join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let status = bin.join("materia-status");
    if !status.exists() {
        std::os::unix::fs::symlink(test_support::workspace_bin("materia-status"), status).unwrap();
    }
    for step in extractors
        .iter()
        .copied()
        .chain(["transform", "export-serving"])
    {
        let body = bodies
            .iter()
            .find(|(s, _)| *s == step)
            .map_or("exit 0", |(_, b)| b);
        let path = bin.join(step);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho {step} >> '{}'\n{body}\n",
                dir.join("calls").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn once_runs_a_real_cycle_and_the_dr_drill_rebuilds_it_identically() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("psd.zip");
    let spec = psd_gen::Spec {
        rows: 5_000,
        seed: 7,
        snapshot: 0,
    };
    psd_gen::write_zip(&spec, std::fs::File::create(&zip).unwrap(), 6).unwrap();
    let prices = dir.path().join("fredgraph.csv");
    std::fs::write(
        &prices,
        "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n2020-10-01,120.5,70\n2020-11-01,.,71.5\n",
    )
    .unwrap();
    // docs/INTERFACES.md, `scripts/supervisor.sh`: from the repository root, after `make test`,
    // only the variables of section 1 and PSD_URL (the binaries and SQLMesh are found where
    // `make` put them).
    let mut contract = Command::new("dash");
    contract
        .arg("scripts/supervisor.sh")
        .arg("--once")
        .current_dir(repo_root())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", std::env::var_os("HOME").unwrap())
        .env("LANDING_DIR", dir.path().join("landing"))
        .env("DUCKDB_PATH", dir.path().join("lakehouse.duckdb"))
        .env("SERVING_DUCKDB_PATH", dir.path().join("analytics.duckdb"))
        .env("METRICS_DIR", dir.path().join("metrics"))
        .env("PSD_URL", &zip);
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        contract.env("CARGO_TARGET_DIR", target);
    }
    let uses_defaults = !repo_root().join("bin/extract-psd").exists()
        && repo_root().join(".venv/bin/sqlmesh").exists()
        && std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(&std::env::var_os("HOME").unwrap()).join(".cache/materia/target")
            })
            .join("release")
            == bin_dir();
    if !uses_defaults {
        // A ./bin from `make release` or a virtualenv elsewhere: name them.
        contract
            .env("MATERIA_BIN_DIR", bin_dir())
            .env("MATERIA_SQLMESH", venv().join("bin/sqlmesh"));
    }
    let out = contract
        .env("PRICES_URL", &prices)
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    for step in [
        "extract-psd",
        "extract-prices",
        "transform",
        "export-serving",
    ] {
        assert!(log.contains(&format!("supervisor: {step}: ok")), "{log}");
    }
    // The web app's file is there and complete.
    let conn =
        lakehouse::open_read_only(&dir.path().join("analytics.duckdb"), Duration::ZERO).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM serving.global_balance", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(n > 0);
    let prices_served: i64 = conn
        .query_row("SELECT count(*) FROM serving.coffee_prices", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(prices_served, 3, "the two series' months with a value");
    for step in [
        "extract_psd",
        "extract_prices",
        "transform",
        "export_serving",
    ] {
        let text = std::fs::read_to_string(dir.path().join(format!("metrics/materia_{step}.prom")))
            .unwrap();
        assert!(
            text.contains(&format!("materia_{step}_exit_code 0")),
            "{text}"
        );
    }

    let status = Command::new(bin_dir().join("materia-status"))
        .env_clear()
        .env("LANDING_DIR", dir.path().join("landing"))
        .args(["--json", "--max-age", "export-serving=1h"])
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["status"], "ok");
    let steps = json["steps"].as_array().unwrap();
    for step in [
        "extract-psd",
        "extract-prices",
        "transform",
        "export-serving",
    ] {
        let s = steps.iter().find(|s| s["step"] == step).unwrap();
        assert_eq!(s["status"], "success", "{s}");
    }

    // A second release lands in the next cycle; then the disaster-recovery drill rebuilds the
    // serving file from the backup alone and finds every table identical, revisions included.
    let spec = psd_gen::Spec {
        snapshot: 2,
        ..spec
    };
    psd_gen::write_zip(&spec, std::fs::File::create(&zip).unwrap(), 6).unwrap();
    // PSD ran a moment ago: due again at once only with a registry that says every minute.
    let every_minute = dir.path().join("workflows.toml");
    std::fs::write(
        &every_minute,
        "[psd]\nbinary = \"extract-psd\"\ndataset = \"psd\"\nevery = \"1m\"\n",
    )
    .unwrap();
    let out = supervisor(dir.path(), &bin_dir(), &["--once"])
        .env("MATERIA_WORKFLOWS", &every_minute)
        .env("PSD_URL", &zip)
        .env("MATERIA_SQLMESH", venv().join("bin/sqlmesh"))
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let backup = dir.path().join("backup");
    let push = Command::new(bin_dir().join("backup-sync"))
        .env_clear()
        .env("LANDING_DIR", dir.path().join("landing"))
        .env("PATH", "/usr/bin:/bin")
        .args(["push", "--remote", backup.to_str().unwrap()])
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert!(push.status.success(), "{}", stderr(&push));
    let drill = Command::new("dash")
        .arg(repo_root().join("scripts/dr-drill.sh"))
        .current_dir(repo_root())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", dir.path())
        .env("BIN_DIR", bin_dir())
        .env("VENV", venv())
        .env("BACKUP_REMOTE", &backup)
        .env("LANDING_DIR", dir.path().join("landing"))
        .env("SERVING_DUCKDB_PATH", dir.path().join("analytics.duckdb"))
        .output_within(CHILD_LIMIT)
        .unwrap();
    let report = String::from_utf8_lossy(&drill.stdout);
    assert!(drill.status.success(), "{report}\n{}", stderr(&drill));
    // The PSD tables (with the history's value_history and releases) and the two prices tables.
    assert_eq!(report.matches("  identical").count(), 7, "{report}");
    let revisions = report
        .lines()
        .find(|l| l.starts_with("estimate_revisions"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap();
    assert!(revisions > 0, "the drill compared no revisions: {report}");
}

#[test]
fn a_failing_step_ends_the_cycle_with_its_status_and_the_next_cycle_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    let bin = scripted(dir.path(), &[("transform", "echo boom >&2; exit 3")]);
    let out = supervisor(dir.path(), &bin, &["--once"])
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(
        calls(dir.path()),
        ["extract-psd", "extract-prices", "transform"]
    );
    assert!(stderr(&out).contains("supervisor: transform: failed (exit 3)"));

    // Looping: each failed cycle doubles the pause, up to the cap.
    std::fs::remove_file(dir.path().join("calls")).unwrap();
    let child = supervisor(dir.path(), &bin, &[])
        .env("SUPERVISOR_BACKOFF_SECS", "1")
        .env("SUPERVISOR_BACKOFF_MAX_SECS", "2")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls(dir.path())
        .iter()
        .filter(|c| *c == "extract-psd")
        .count()
        < 4
    {
        assert!(Instant::now() < deadline, "no fourth cycle");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = child.id();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status_within(CHILD_LIMIT)
        .unwrap();
    let out = test_support::wait_within(child, CHILD_LIMIT);
    let log = stderr(&out);
    let pauses: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("supervisor: cycle failed (exit 3); next one in "))
        .collect();
    assert!(pauses.len() >= 3, "{log}");
    assert_eq!(&pauses[..3], ["1s", "2s", "2s"], "{log}");
    assert!(!calls(dir.path()).contains(&"export-serving".to_owned()));
}

#[test]
fn a_step_over_its_time_bound_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let bin = scripted(dir.path(), &[("extract-psd", "exec sleep 60")]);
    let started = Instant::now();
    let out = supervisor(dir.path(), &bin, &["--once"])
        .env("SUPERVISOR_STEP_TIMEOUT_SECS", "1")
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(30), "not killed");
    assert!(stderr(&out).contains("extract-psd: killed after 1s"));
    // An extractor fails on its own: the others and the transform still run.
    assert_eq!(
        calls(dir.path()),
        [
            "extract-psd",
            "extract-prices",
            "transform",
            "export-serving"
        ]
    );
}

#[test]
fn sigterm_to_the_supervisor_leaves_no_orphaned_child() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // The step starts a grandchild, as transform starts SQLMesh.
    let body = format!(
        "sleep 120 & echo $! >> '{p}'; echo $$ >> '{p}'; wait",
        p = pids.display()
    );
    let bin = scripted(dir.path(), &[("transform", &body)]);
    let child = supervisor(dir.path(), &bin, &["--once"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&pids)
        .unwrap_or_default()
        .lines()
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "the step did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let started: Vec<u32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert!(started.iter().all(|p| alive(*p)));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status_within(CHILD_LIMIT)
        .unwrap();
    let out = test_support::wait_within(child, CHILD_LIMIT);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.iter().any(|p| alive(*p)) {
        assert!(Instant::now() < deadline, "orphans left: {started:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_configuration_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = supervisor(dir.path(), &dir.path().join("nothing"), &["--once"])
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no materia-status in"),
        "{}",
        stderr(&out)
    );
    let bin = scripted(dir.path(), &[]);
    let out = supervisor(dir.path(), &bin, &["--once"])
        .env("SUPERVISOR_STEP_TIMEOUT_SECS", "soon")
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = supervisor(dir.path(), &bin, &["--twice"])
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(calls(dir.path()).is_empty());
}

/// A dotenv file with what sops writes and what an operator might: `$`, backticks, `&`, `;`,
/// spaces, quotes; and each value as systemd's `EnvironmentFile=` reads it (the rehearsal,
/// `make rehearsal`, checks the same file against systemd itself).
const TRICKY_ENV: &str = include_str!("fixtures/tricky.env");

const TRICKY_VALUES: [(&str, &str); 9] = [
    ("DOLLAR", "$HOME/x"),
    ("BACKTICK", "`touch pwned-backtick`"),
    ("AMPERSAND", "a & touch pwned-ampersand"),
    ("SPACES", "two  words"),
    ("DOUBLE", "quoted \"x\" $y \\n"),
    ("SINGLE", "single $x \"y\" `z`"),
    ("SEMI", "a;touch pwned-semicolon"),
    ("ESCAPED", "back\\slash x"),
    ("EMPTY", ""),
];

#[test]
fn regression_materia_env_file_is_read_as_data_never_run_as_shell_code() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("materia.env");
    std::fs::write(&env, TRICKY_ENV).unwrap();
    let dump = dir.path().join("env.dump");
    let names: Vec<&str> = TRICKY_VALUES.iter().map(|(k, _)| *k).collect();
    let body = format!(
        "for k in {}; do eval \"printf '%s=[%s]\\n' $k \\\"\\${{$k-UNSET}}\\\"\"; done > '{}'",
        names.join(" "),
        dump.display()
    );
    let bin = scripted(dir.path(), &[("extract-psd", &body)]);
    let out = supervisor(dir.path(), &bin, &["--once"])
        .env("MATERIA_ENV_FILE", &env)
        .current_dir(dir.path())
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = std::fs::read_to_string(&dump).unwrap();
    let want: String = TRICKY_VALUES
        .iter()
        .map(|(k, v)| format!("{k}=[{v}]\n"))
        .collect();
    assert_eq!(got, want);
    let pwned: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pwned"))
        .collect();
    assert!(pwned.is_empty(), "the env file ran commands: {pwned:?}");

    // Multi-line forms are refused with the line, before any step runs.
    std::fs::write(&env, "A=1\nB=\"open\nC=3\n").unwrap();
    let out = supervisor(dir.path(), &bin, &["--once"])
        .env("MATERIA_ENV_FILE", &env)
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
}

/// Records one finished run of `step` in the state DB the supervisor's steps use.
fn ran(dir: &Path, step: &str, at: &str, status: run_ledger::RunStatus) {
    let db = dir.join("landing/.state.sqlite");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let ledger = run_ledger::Ledger::open(&db).unwrap();
    let id = ledger.begin(step, at).unwrap();
    ledger
        .finish(id, at, &run_ledger::RunOutcome::new(status))
        .unwrap();
}

/// Now, as the ledger writes times (`2026-12-08T01:00:00.000Z`).
fn ledger_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.000Z"])
        .output_within(CHILD_LIMIT)
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn the_supervisor_runs_only_the_extractors_the_registry_says_are_due() {
    let dir = tempfile::tempdir().unwrap();
    let bin = scripted(dir.path(), &[]);
    // PSD succeeded a moment ago: not due (daily, or hourly on the 9th-12th); prices never ran.
    ran(
        dir.path(),
        "extract-psd",
        &ledger_now(),
        run_ledger::RunStatus::Success,
    );
    let out = supervisor(dir.path(), &bin, &["--once"])
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        calls(dir.path()),
        ["extract-prices", "transform", "export-serving"]
    );
    // Both fresh: no extractor runs, the transform and export still look at their inputs.
    std::fs::remove_file(dir.path().join("calls")).unwrap();
    ran(
        dir.path(),
        "extract-prices",
        &ledger_now(),
        run_ledger::RunStatus::Unchanged,
    );
    let out = supervisor(dir.path(), &bin, &["--once"])
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("supervisor: no extractor is due"));
    assert_eq!(calls(dir.path()), ["transform", "export-serving"]);
}

/// One `--once` cycle in which `failing` exits 1: every step still runs, in order; returns the
/// directory, the fake bin and the supervisor's output.
fn once_with_a_failing_extractor(failing: &str) -> (tempfile::TempDir, PathBuf, Output) {
    let dir = tempfile::tempdir().unwrap();
    let bin = scripted(
        dir.path(),
        &[(failing, "echo upstream is down >&2; exit 1")],
    );
    let out = supervisor(dir.path(), &bin, &["--once"])
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(
        calls(dir.path()),
        [
            "extract-psd",
            "extract-prices",
            "transform",
            "export-serving"
        ]
    );
    assert!(
        stderr(&out).contains(&format!("supervisor: {failing}: failed (exit 1)")),
        "{}",
        stderr(&out)
    );
    (dir, bin, out)
}

#[test]
fn a_failing_prices_download_never_blocks_psd_nor_backs_the_cycle_off() {
    let (dir, bin, out) = once_with_a_failing_extractor("extract-prices");
    // Prices are `required = false` in the registry: the cycle's status is PSD's, transform's
    // and export's (contracts: `--once` works with only PSD_URL set, FRED unreachable).
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Looping: the failed extractor does not make the supervisor back off.
    std::fs::remove_file(dir.path().join("calls")).unwrap();
    let child = supervisor(dir.path(), &bin, &[])
        .env("SUPERVISOR_INTERVAL_SECS", "1")
        .env("SUPERVISOR_BACKOFF_SECS", "600")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while calls(dir.path())
        .iter()
        .filter(|c| *c == "export-serving")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "no second cycle: backed off");
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status_within(CHILD_LIMIT)
        .unwrap();
    let out = test_support::wait_within(child, CHILD_LIMIT);
    let log = stderr(&out);
    assert!(!log.contains("cycle failed"), "{log}");
    assert!(
        log.contains("extract-prices is optional (required = false)"),
        "{log}"
    );
}

#[test]
fn a_failing_psd_download_fails_the_cycle_after_transform_and_export_ran() {
    let (_dir, _bin, out) = once_with_a_failing_extractor("extract-psd");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn a_malformed_registry_stops_the_supervisor_at_start_with_exit_2_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let bin = scripted(dir.path(), &[]);
    let registry = dir.path().join("workflows.toml");
    std::fs::write(
        &registry,
        "[psd]\nbinary = \"extract-psd\"\ndataset = \"psd\"\nevery = \"1d\"\n\n[prices]\nbinary = \"extract-prices\"\ndataset = \"prices\"\nevry = \"1d\"\n",
    )
    .unwrap();
    let out = supervisor(dir.path(), &bin, &["--once"])
        .env("MATERIA_WORKFLOWS", &registry)
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains("workflows.toml line 9: unknown field `evry`"),
        "{log}"
    );
    assert!(calls(dir.path()).is_empty(), "ran half a registry");
    // A registry naming a binary that is not there: exit 2 too.
    std::fs::write(
        &registry,
        "[weather]\nbinary = \"extract-weather\"\ndataset = \"weather\"\nevery = \"6h\"\n",
    )
    .unwrap();
    let out = supervisor(dir.path(), &bin, &["--once"])
        .env("MATERIA_WORKFLOWS", &registry)
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no extract-weather in"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_third_extractor_is_a_binary_and_a_registry_entry() {
    // What adding an extractor takes of the supervisor: its binary and its registry entry,
    // nothing in the script (crates/operations/tests/datasets.rs shows the landing side).
    let dir = tempfile::tempdir().unwrap();
    let bin = scripted_with(
        dir.path(),
        &["extract-psd", "extract-prices", "extract-toy"],
        &[],
    );
    let registry = dir.path().join("workflows.toml");
    let mut text = std::fs::read_to_string(repo_root().join("workflows.toml")).unwrap();
    text.push_str("\n[toy]\nbinary = \"extract-toy\"\ndataset = \"toy\"\nevery = \"6h\"\n");
    std::fs::write(&registry, text).unwrap();
    ran(
        dir.path(),
        "extract-psd",
        &ledger_now(),
        run_ledger::RunStatus::Success,
    );
    let out = supervisor(dir.path(), &bin, &["--once"])
        .env("MATERIA_WORKFLOWS", &registry)
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        calls(dir.path()),
        [
            "extract-prices",
            "extract-toy",
            "transform",
            "export-serving"
        ]
    );
}
