//! The incremental transform on real-shaped data (psd-gen releases through the real
//! `extract-psd`): every cycle reads only its new landing file; N incremental cycles give
//! exactly what a full rebuild of the same files gives; every landed release can be read back
//! from `serving.value_history`; each reason for a full rebuild is named; a cycle killed at any
//! point leaves the previous state or the new one. Needs the project's virtualenv.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::BufRead;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use lakehouse::duckdb::Connection;
use test_support::{CommandExt, repo_root, venv, workspace_bin};

const ROWS: u64 = 8_000;
/// Bound on every child process of these tests (SQLMesh runs included).
const LIMIT: Duration = Duration::from_secs(600);
/// Every relation of the serving schema the transform builds.
const SERVING: [&str; 5] = [
    "commodity_balance",
    "global_balance",
    "estimate_revisions",
    "value_history",
    "releases",
];

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        Site {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("HOME", self.dir.path())
            .env("LANDING_DIR", self.path("landing"))
            .env("DUCKDB_PATH", self.path("lakehouse.duckdb"))
            .env("MATERIA_TRANSFORM_DIR", repo_root().join("transform"))
            .env("MATERIA_SQLMESH", venv().join("bin/sqlmesh"))
            .args(args);
        cmd
    }

    /// Lands psd-gen's release `snapshot` through the real extract-psd.
    fn extract(&self, snapshot: u32) -> serde_json::Value {
        let zip = self.path(&format!("s{snapshot}.zip"));
        psd_gen::write_zip(
            &spec(snapshot),
            &mut std::fs::File::create(&zip).unwrap(),
            1,
        )
        .unwrap();
        let out = self
            .command(
                &workspace_bin("extract-psd"),
                &["--json", "--url", zip.to_str().unwrap()],
            )
            .output_within(LIMIT)
            .unwrap();
        let json = test_support::json_line(&out);
        assert_eq!(json["status"], "new", "{json}");
        json
    }

    /// `transform --json EXTRA...` on `lakehouse` (a file name in the site).
    fn transform_on(&self, lakehouse: &str, extra: &[&str]) -> (Output, serde_json::Value) {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let out = self
            .command(&test_support::own_bin("transform"), &args)
            .env("DUCKDB_PATH", self.path(lakehouse))
            .output_within(LIMIT)
            .unwrap();
        let json = test_support::json_line(&out);
        (out, json)
    }

    /// A transform that must build; returns its `--json`.
    fn built(&self, extra: &[&str]) -> serde_json::Value {
        let (out, json) = self.transform_on("lakehouse.duckdb", extra);
        assert!(
            out.status.success(),
            "{json}\n{}",
            test_support::stderr(&out)
        );
        assert_eq!(json["status"], "transformed", "{json}");
        json
    }

    fn lakehouse(&self, name: &str) -> Connection {
        // A killed cycle's lock goes with its process; wait for the kernel to reap it.
        lakehouse::open_read_only(&self.path(name), Duration::from_secs(60)).unwrap()
    }
}

fn spec(snapshot: u32) -> psd_gen::Spec {
    psd_gen::Spec {
        rows: ROWS,
        seed: 7,
        snapshot,
    }
}

fn release(snapshot: u32) -> String {
    let (y, m) = psd_gen::release(snapshot);
    format!("{y:04}-{m:02}")
}

type Key = (String, String, i32, String);

/// Every key's value in psd-gen's release `snapshot`, from its CSV.
fn values_of(snapshot: u32) -> BTreeMap<Key, Option<f64>> {
    let mut csv = Vec::new();
    psd_gen::write_csv(&spec(snapshot), &mut csv).unwrap();
    String::from_utf8(csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| {
            let f = psd_gen::split_csv_line(line);
            (
                (
                    f[0].clone(),
                    f[2].clone(),
                    f[4].parse().unwrap(),
                    f[7].clone(),
                ),
                f[11].parse().ok(),
            )
        })
        .collect()
}

/// Every key's value as of `release`, by the documented query over serving.value_history.
fn as_of(conn: &Connection, release: &str) -> BTreeMap<Key, Option<f64>> {
    let mut stmt = conn
        .prepare(
            "SELECT commodity_code, country_code, market_year, attribute_id, value
               FROM serving.value_history
              WHERE valid_from_release <= ?1
                AND (valid_to_release IS NULL OR valid_to_release > ?1)
                AND NOT removed",
        )
        .unwrap();
    stmt.query_map([release], |r| {
        Ok(((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?), r.get(4)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Rows of `a` not in `b` and of `b` not in `a` (EXCEPT ALL both ways), per serving relation
/// and for the history table itself.
fn differences(site: &Site, a: &str, b: &str) -> BTreeMap<String, (i64, i64, i64)> {
    let conn = Connection::open_in_memory().unwrap();
    // Attached under their file stems: SQLMesh's views name their physical tables with them.
    let stem = |f: &str| f.trim_end_matches(".duckdb").to_owned();
    conn.execute_batch(&format!(
        "ATTACH '{}' AS {} (READ_ONLY); ATTACH '{}' AS {} (READ_ONLY);",
        site.path(a).display(),
        stem(a),
        site.path(b).display(),
        stem(b)
    ))
    .unwrap();
    let (a, b) = (stem(a), stem(b));
    let mut out = BTreeMap::new();
    let relations = SERVING
        .iter()
        .map(|t| format!("serving.{t}"))
        .chain(["history.psd_value_history".to_owned()]);
    for rel in relations {
        let n = |sql: String| -> i64 { conn.query_row(&sql, [], |r| r.get(0)).unwrap() };
        let rows = n(format!("SELECT count(*) FROM {a}.{rel}"));
        let ab = n(format!(
            "SELECT count(*) FROM (SELECT * FROM {a}.{rel} EXCEPT ALL SELECT * FROM {b}.{rel})"
        ));
        let ba = n(format!(
            "SELECT count(*) FROM (SELECT * FROM {b}.{rel} EXCEPT ALL SELECT * FROM {a}.{rel})"
        ));
        out.insert(rel, (rows, ab, ba));
    }
    out
}

fn assert_equal(site: &Site, a: &str, b: &str) {
    for (rel, (rows, ab, ba)) in differences(site, a, b) {
        assert!(rows > 0, "{rel} is empty");
        assert_eq!((ab, ba), (0, 0), "{rel}: {a} and {b} differ ({rows} rows)");
    }
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        _ => false,
    }
}

#[test]
fn incremental_cycles_equal_a_full_rebuild_and_read_back_every_release() {
    let site = Site::new();
    let snapshots = [0, 1, 2, 3];
    let mut landed_rows = Vec::new();
    for (i, &s) in snapshots.iter().enumerate() {
        landed_rows.push(site.extract(s)["rows"].as_u64().unwrap());
        let json = site.built(&[]);
        if i == 0 {
            assert_eq!(json["mode"], "full", "{json}");
            assert!(
                json["full_reason"]
                    .as_str()
                    .unwrap()
                    .contains("no lakehouse"),
                "{json}"
            );
        } else {
            // Only the new file was read; a few percent of its rows were stored.
            assert_eq!(json["mode"], "incremental", "{json}");
            assert_eq!(json["full_reason"], serde_json::Value::Null, "{json}");
            assert_eq!(json["files_applied"], 1, "{json}");
            assert_eq!(json["rows_read"], landed_rows[i], "{json}");
            let changes = json["changes_stored"].as_u64().unwrap();
            assert!(
                changes > 0 && changes < landed_rows[i] / 2,
                "{changes} changes of {} rows: {json}",
                landed_rows[i]
            );
        }
    }
    // materia-status shows what the last build did.
    let out = site
        .command(&workspace_bin("materia-status"), &["--json"])
        .output_within(LIMIT)
        .unwrap();
    let status = test_support::json_line(&out);
    let steps = status["steps"].as_array().unwrap();
    let transform = steps.iter().find(|s| s["step"] == "transform").unwrap();
    let detail = transform["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("incremental: 1 files applied")
            && detail.contains(&format!("{} rows read", landed_rows[3]))
            && detail.contains("changes stored"),
        "{status}"
    );
    assert!(
        transform["duration_secs"].as_f64().unwrap() > 0.0,
        "{status}"
    );
    // Nothing new: not even SQLMesh runs.
    let (out, json) = site.transform_on("lakehouse.duckdb", &[]);
    assert!(out.status.success(), "{json}");
    assert_eq!(json["status"], "unchanged", "{json}");

    // Every landed release reads back exactly from the history.
    let conn = site.lakehouse("lakehouse.duckdb");
    for &s in &snapshots {
        let want = values_of(s);
        let got = as_of(&conn, &release(s));
        assert_eq!(got.len(), want.len(), "keys as of {}", release(s));
        for (key, value) in &want {
            assert!(
                close(got[key], *value),
                "{key:?} as of {}: {:?}, the release says {value:?}",
                release(s),
                got[key]
            );
        }
    }
    // Revisions found in every release after the first, stamped with it.
    let mut stmt = conn
        .prepare("SELECT DISTINCT revised_in FROM serving.estimate_revisions ORDER BY 1")
        .unwrap();
    let revised: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        revised,
        snapshots[1..]
            .iter()
            .map(|&s| release(s))
            .collect::<Vec<_>>()
    );
    // The history grows by the changes, not by a copy per release.
    let history = count(&conn, "SELECT count(*) FROM history.psd_value_history");
    let keys = values_of(0).len() as i64;
    assert!(history < keys * 2, "{history} rows for {keys} keys");
    drop(conn);

    // A full rebuild of the same files, in another lakehouse, is the same to the row.
    let (out, full) = site.transform_on("rebuilt.duckdb", &["--full-rebuild"]);
    assert!(
        out.status.success(),
        "{full}\n{}",
        test_support::stderr(&out)
    );
    assert_eq!(
        (full["mode"].as_str(), full["full_reason"].as_str()),
        (Some("full"), Some("requested (--full-rebuild)")),
        "{full}"
    );
    assert_eq!(full["files_applied"], snapshots.len());
    assert_equal(&site, "lakehouse.duckdb", "rebuilt.duckdb");
}

#[test]
fn full_rebuilds_name_their_reason_and_an_older_release_is_put_in_order() {
    let site = Site::new();
    site.extract(0);
    site.extract(2);
    let json = site.built(&[]);
    assert_eq!(json["mode"], "full", "{json}");

    // An older release lands after a newer one (restored from a backup): rebuilt in release
    // order, the same as when they landed in order.
    site.extract(1);
    let json = site.built(&[]);
    assert_eq!(json["mode"], "full", "{json}");
    let reason = json["full_reason"].as_str().unwrap();
    assert!(
        reason.contains("is release 2026-02, older than the last built release 2026-03"),
        "{json}"
    );
    let in_order = Site::new();
    for s in [0, 1, 2] {
        in_order.extract(s);
        in_order.built(&[]);
    }
    let conn = site.lakehouse("lakehouse.duckdb");
    let theirs = in_order.lakehouse("lakehouse.duckdb");
    let releases = |c: &Connection| -> Vec<String> {
        let mut stmt = c
            .prepare("SELECT release FROM serving.releases ORDER BY sequence")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(releases(&conn), ["2026-01", "2026-02", "2026-03"]);
    assert_eq!(releases(&conn), releases(&theirs));
    for s in [0, 1, 2] {
        assert_eq!(as_of(&conn, &release(s)), as_of(&theirs, &release(s)));
    }
    drop((conn, theirs));

    // The project's files changed (a deploy with model changes).
    let project = site.path("project");
    copy_dir(&repo_root().join("transform"), &project);
    let model = project.join("models/serving/commodity_balance.sql");
    let text = std::fs::read_to_string(&model).unwrap();
    std::fs::write(&model, format!("-- changed\n{text}")).unwrap();
    let (out, json) = site.transform_on(
        "lakehouse.duckdb",
        &["--project", project.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{json}\n{}",
        test_support::stderr(&out)
    );
    assert_eq!(json["mode"], "full", "{json}");
    assert!(
        json["full_reason"]
            .as_str()
            .unwrap()
            .contains("project's files changed"),
        "{json}"
    );
    // Back to the original project: its files differ again.
    let json = site.built(&[]);
    assert_eq!(json["mode"], "full", "{json}");

    // Forced without change: incremental, nothing to read.
    let json = site.built(&["--force"]);
    assert_eq!(
        (json["mode"].as_str(), json["files_applied"].as_u64()),
        (Some("incremental"), Some(0)),
        "{json}"
    );

    // The lakehouse is gone.
    std::fs::remove_file(site.path("lakehouse.duckdb")).unwrap();
    let json = site.built(&[]);
    assert!(
        json["full_reason"]
            .as_str()
            .unwrap()
            .starts_with("no lakehouse at"),
        "{json}"
    );
}

#[test]
fn a_built_file_quarantined_or_released_rebuilds_in_full() {
    let site = Site::new();
    site.extract(0);
    let second = site.extract(1);
    site.built(&[]);
    let path = second["path"].as_str().unwrap();
    let relative = path.rsplitn(5, '/').collect::<Vec<_>>()[..4]
        .iter()
        .rev()
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    let status = |args: &[&str]| {
        let out = site
            .command(&workspace_bin("materia-status"), args)
            .output_within(LIMIT)
            .unwrap();
        assert!(out.status.success(), "{}", test_support::stderr(&out));
    };
    status(&["quarantine", path, "--reason", "test"]);
    let json = site.built(&[]);
    assert_eq!(json["mode"], "full", "{json}");
    assert!(
        json["full_reason"]
            .as_str()
            .unwrap()
            .contains(&format!("landing file {relative} was built")),
        "{json}"
    );
    // The next file lands, then the held one is released: it landed before the last built.
    site.extract(2);
    let json = site.built(&[]);
    assert_eq!(json["mode"], "incremental", "{json}");
    status(&["unquarantine", path]);
    let json = site.built(&[]);
    assert_eq!(json["mode"], "full", "{json}");
    assert!(
        json["full_reason"]
            .as_str()
            .unwrap()
            .contains("landed before the last built file"),
        "{json}"
    );
    let (out, json) = site.transform_on("rebuilt.duckdb", &["--full-rebuild"]);
    assert!(out.status.success(), "{json}");
    assert_equal(&site, "lakehouse.duckdb", "rebuilt.duckdb");
}

/// Rows and an order-insensitive hash of every serving relation and of the history's files.
fn state(site: &Site) -> BTreeMap<String, (i64, String)> {
    let conn = site.lakehouse("lakehouse.duckdb");
    SERVING
        .iter()
        .map(|t| format!("serving.{t}"))
        .chain(["history.psd_files".to_owned()])
        .map(|rel| {
            let content = conn
                .query_row(
                    &format!(
                        "SELECT count(*), CAST(coalesce(sum(hash(t)::HUGEINT), 0) AS VARCHAR) FROM {rel} AS t"
                    ),
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            (rel, content)
        })
        .collect()
}

#[test]
fn a_cycle_killed_anywhere_leaves_the_previous_state_and_the_next_one_finishes() {
    let site = Site::new();
    site.extract(0);
    site.built(&[]);
    let before = state(&site);
    site.extract(1);

    // Killed with everything written to the history but not committed, then just before
    // SQLMesh's plan (the history committed), then while the plan runs.
    for point in ["history-commit", "plan"] {
        let (out, json) = {
            let out = site
                .command(&test_support::own_bin("transform"), &["--json"])
                .env("MATERIA_TEST_KILL_AT", point)
                .output_within(LIMIT)
                .unwrap();
            let json = test_support::json_line(&out);
            (out, json)
        };
        assert_eq!(out.status.code(), Some(1), "{point}: {json}");
        let after = state(&site);
        for rel in SERVING.map(|t| format!("serving.{t}")) {
            assert_eq!(after[&rel], before[&rel], "{point}: {rel} changed");
        }
        let applied = after["history.psd_files"].0;
        assert_eq!(
            applied,
            if point == "plan" { 2 } else { 1 },
            "{point}: the history is the previous one or the new one"
        );
    }
    kill_during_the_plan(&site);
    let after = state(&site);
    for rel in SERVING.map(|t| format!("serving.{t}")) {
        assert_eq!(after[&rel], before[&rel], "plan killed: {rel} changed");
    }

    // The next cycle continues: the history already holds the file, the plan finishes.
    let json = site.built(&[]);
    assert_eq!(
        (json["mode"].as_str(), json["files_applied"].as_u64()),
        (Some("incremental"), Some(0)),
        "{json}"
    );
    let (out, json) = site.transform_on("rebuilt.duckdb", &["--full-rebuild"]);
    assert!(out.status.success(), "{json}");
    assert_equal(&site, "lakehouse.duckdb", "rebuilt.duckdb");
}

/// Runs a transform and kills it (its whole process group, SQLMesh included, with SIGKILL) as
/// soon as SQLMesh reports a model built: in the middle of the plan.
fn kill_during_the_plan(site: &Site) {
    let mut child = site
        .command(&test_support::own_bin("transform"), &[])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("sqlmesh: [1/1]") {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status();
                let _ = tx.send(Ok(()));
                return;
            }
            seen.push(line);
        }
        let _ = tx.send(Err(seen.join("\n")));
    });
    let outcome = rx.recv_timeout(LIMIT).unwrap();
    let _ = child.kill();
    let status = child.wait().unwrap();
    if let Err(seen) = outcome {
        panic!("the plan never built a model: {status}\n{seen}");
    }
    assert!(!status.success(), "killed mid-plan, yet {status}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if [".cache", "__pycache__"].iter().any(|n| name == *n) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
