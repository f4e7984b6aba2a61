//! End to end: generator data through the real `extract-psd` and `transform` binaries, then
//! the serving tables checked against values computed here, independently, from the CSV the
//! generator wrote. Needs the project's virtualenv (`make venv`; `MATERIA_VENV` names it).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lakehouse::duckdb::Connection;
use test_support::{CommandExt, repo_root, venv, workspace_bin};

const ROWS: u64 = 8_000;
/// Bound on every child process of these tests (SQLMesh runs included).
const LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

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
            .env("METRICS_DIR", self.path("metrics"))
            .env("MATERIA_TRANSFORM_DIR", repo_root().join("transform"))
            .env("MATERIA_SQLMESH", venv().join("bin/sqlmesh"))
            .args(args);
        cmd
    }

    fn run(&self, program: &Path, args: &[&str]) -> (Output, serde_json::Value) {
        let out = self.command(program, args).output_within(LIMIT).unwrap();
        let json = test_support::json_line(&out);
        (out, json)
    }

    /// Lands `csv` (zipped as upstream would) through the real extract-psd.
    fn extract_csv(&self, name: &str, csv: &[u8]) -> serde_json::Value {
        let zip = self.path(&format!("{name}.zip"));
        let mut writer = zip::ZipWriter::new(std::fs::File::create(&zip).unwrap());
        writer
            .start_file(
                psd_gen::ENTRY_NAME,
                zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated),
            )
            .unwrap();
        std::io::Write::write_all(&mut writer, csv).unwrap();
        writer.finish().unwrap();
        let (out, json) = self.run(
            &workspace_bin("extract-psd"),
            &["--json", "--url", zip.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(json["status"], "new", "{json}");
        json
    }

    fn extract(&self, snapshot: u32) -> serde_json::Value {
        let zip = self.path(&format!("s{snapshot}.zip"));
        let mut f = std::fs::File::create(&zip).unwrap();
        psd_gen::write_zip(
            &psd_gen::Spec {
                rows: ROWS,
                seed: 5,
                snapshot,
            },
            &mut f,
            1,
        )
        .unwrap();
        let (out, json) = self.run(
            &workspace_bin("extract-psd"),
            &["--json", "--url", zip.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json
    }

    fn transform(&self, extra: &[&str]) -> (Output, serde_json::Value) {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        self.run(&test_support::own_bin("transform"), &args)
    }

    /// `materia-status --json ARGS...` on this site's landing store and state DB.
    fn status(&self, args: &[&str]) -> (Output, serde_json::Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.run(&workspace_bin("materia-status"), &all)
    }

    fn lakehouse(&self) -> Connection {
        lakehouse::open_read_only(&self.path("lakehouse.duckdb"), std::time::Duration::ZERO)
            .unwrap()
    }
}

type Key = (String, String, i32, String); // commodity, country, market year, attribute
/// One value of a key in one snapshot: (calendar year, month, snapshot order, value).
type Observation = (i32, i32, usize, Option<f64>);

/// Per key: (calendar year, month, snapshot order, value), from every snapshot's CSV.
fn observations(snapshots: &[u32]) -> BTreeMap<Key, Vec<Observation>> {
    let mut out: BTreeMap<Key, Vec<_>> = BTreeMap::new();
    for (seq, &snapshot) in snapshots.iter().enumerate() {
        let mut csv = Vec::new();
        psd_gen::write_csv(
            &psd_gen::Spec {
                rows: ROWS,
                seed: 5,
                snapshot,
            },
            &mut csv,
        )
        .unwrap();
        let text = String::from_utf8(csv).unwrap();
        for line in text.lines().skip(1) {
            let f = psd_gen::split_csv_line(line);
            let key = (
                f[0].clone(),
                f[2].clone(),
                f[4].parse().unwrap(),
                f[7].clone(),
            );
            let obs = (
                f[5].parse().unwrap(),
                f[6].parse().unwrap(),
                seq,
                f[11].parse().ok(),
            );
            out.entry(key).or_default().push(obs);
        }
    }
    out
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        _ => false,
    }
}

#[test]
fn extracted_snapshots_reach_serving_with_independently_computed_values() {
    let site = Site::new();
    let first = site.extract(0);
    assert_eq!(first["status"], "new");

    let (out, json) = site.transform(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json["status"], "transformed");
    assert_eq!(json["landing_files"], 1);

    // Nothing new: SQLMesh is not even started.
    let (out, json) = site.transform(&[]);
    assert!(out.status.success());
    assert_eq!(json["status"], "unchanged");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("running sqlmesh"), "{stderr}");
    // Regression: the step's own info lines were filtered out as a dependency's.
    assert!(stderr.contains("INFO transform: nothing new"), "{stderr}");

    // A new release lands and is reflected by the very next transform.
    assert_eq!(site.extract(2)["status"], "new");
    let (out, json) = site.transform(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        (json["status"].as_str(), json["landing_files"].as_u64()),
        (Some("transformed"), Some(2))
    );
    assert_eq!(json["balance_identity_violations"], 0);

    let obs = observations(&[0, 2]);
    let conn = site.lakehouse();

    // Latest value per key: greatest (calendar year, month), ties to the newest file.
    let latest: BTreeMap<&Key, Option<f64>> = obs
        .iter()
        .map(|(k, v)| {
            (
                k,
                v.iter().max_by_key(|(y, m, s, _)| (*y, *m, *s)).unwrap().3,
            )
        })
        .collect();
    let mut stmt = conn
        .prepare("SELECT commodity_code, country_code, market_year, beginning_stocks, production, imports, total_supply, exports, domestic_consumption, ending_stocks, total_distribution, stocks_to_use FROM serving.commodity_balance")
        .unwrap();
    let rows: Vec<(String, String, i32, [Option<f64>; 9])> = stmt
        .query_map([], |r| {
            let mut m = [None; 9];
            for (i, v) in m.iter_mut().enumerate() {
                *v = r.get(3 + i)?;
            }
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, m))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let balance_keys: std::collections::BTreeSet<(String, String, i32)> = latest
        .keys()
        .filter(|k| {
            ["020", "028", "057", "086", "088", "125", "176", "178"].contains(&k.3.as_str())
        })
        .map(|k| (k.0.clone(), k.1.clone(), k.2))
        .collect();
    assert_eq!(
        rows.len(),
        balance_keys.len(),
        "one balance row per commodity, country and year"
    );
    let ids = ["020", "028", "057", "086", "088", "125", "176", "178"];
    let mut checked_na = false;
    for (c, k, y, m) in &rows {
        for (i, id) in ids.iter().enumerate() {
            let want = latest
                .get(&(c.clone(), k.clone(), *y, (*id).to_owned()))
                .copied()
                .flatten();
            assert!(
                close(m[i], want),
                "{c} {k} {y} {id}: lakehouse {:?}, expected {want:?}",
                m[i]
            );
        }
        let denominator = m[5].zip(m[4]).map(|(d, e)| d + e).filter(|d| *d != 0.0);
        let want_ratio = m[6].zip(denominator).map(|(e, d)| e / d);
        assert!(close(m[8], want_ratio), "stocks_to_use of {c} {k} {y}");
        checked_na |= k == "NA";
    }
    assert!(
        checked_na,
        "Netherlands Antilles (NA) is a country, not NULL"
    );

    // Codes keep their leading zeros and labels stay exact.
    let coffee: String = conn
        .query_row("SELECT commodity FROM serving.commodity_balance WHERE commodity_code = '0711100' LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(coffee, "Coffee, Green");
    let label: i64 = conn
        .query_row("SELECT count(*) FROM cleaned.psd_latest WHERE attribute = 'Rst,Ground Dom. Consum' AND attribute_id = '130'", [], |r| r.get(0))
        .unwrap();
    assert!(label > 0);

    // Revisions: one row per key whose value changed between the two snapshots.
    let revised: usize = obs
        .values()
        .filter(|v| v.len() == 2 && !close(v[0].3, v[1].3))
        .count();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM serving.estimate_revisions", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(revised > 0);
    assert_eq!(n as usize, revised);
    // Every row, not the first one: all stamped with the release that revised them.
    let months: Vec<String> = conn
        .prepare("SELECT DISTINCT revised_in FROM serving.estimate_revisions ORDER BY 1")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        months,
        ["2026-03"],
        "stamped with the release that revised them"
    );

    // Global balance: sums over countries of the balance rows.
    let (production, countries): (f64, i64) = conn
        .query_row("SELECT production, country_count FROM serving.global_balance WHERE commodity_code = '0711100' AND market_year = 2026", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    let want: f64 = latest
        .iter()
        .filter(|(k, _)| k.0 == "0711100" && k.2 == 2026 && k.3 == "028")
        .filter_map(|(_, v)| *v)
        .sum();
    assert!(close(Some(production), Some(want)));
    assert!(countries >= 3);

    // Provenance: every balance row names a landed file.
    let unknown: i64 = conn
        .query_row(
            "SELECT count(*) FROM serving.commodity_balance WHERE landing_sha256 NOT IN (?, ?)",
            [first["sha256"].as_str().unwrap(), json_sha(&site)],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unknown, 0);

    // The ledger recorded every transform run.
    let db = rusqlite::Connection::open(site.path("landing/.state.sqlite")).unwrap();
    let statuses: Vec<String> = db
        .prepare("SELECT status FROM step_runs WHERE step = 'transform' ORDER BY run_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(statuses, ["success", "unchanged", "success"]);
    assert!(
        std::fs::read_to_string(site.path("metrics/materia_transform.prom"))
            .unwrap()
            .contains("materia_transform_landing_files 2\n")
    );
}

fn json_sha(site: &Site) -> &'static str {
    let db = rusqlite::Connection::open(site.path("landing/.state.sqlite")).unwrap();
    let sha: String = db.query_row("SELECT sha256 FROM extraction_runs WHERE status = 'success' ORDER BY run_id DESC LIMIT 1", [], |r| r.get(0)).unwrap();
    Box::leak(sha.into_boxed_str())
}

#[test]
fn no_landing_files_fails_clearly_and_bad_configuration_exits_2() {
    let site = Site::new();
    let (out, json) = site.transform(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        json["error"].as_str().unwrap().contains("no landing files"),
        "{json}"
    );

    let (out, json) = site.transform(&["--sqlmesh", "/nonexistent/sqlmesh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("sqlmesh not found at /nonexistent/sqlmesh")
    );
    let (out, _) = site.transform(&["--project", "/tmp"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_locked_lakehouse_exits_75_and_a_later_run_succeeds() {
    let site = Site::new();
    site.extract(0);
    // Another process holds the lakehouse read-write (as a stray client would).
    let holder = site.path("hold.py");
    std::fs::write(&holder, "import duckdb, sys, time\nc = duckdb.connect(sys.argv[1])\nprint('held', flush=True)\ntime.sleep(60)\n").unwrap();
    let mut child = Command::new(venv().join("bin/python"))
        .arg(&holder)
        .arg(site.path("lakehouse.duckdb"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its first line, read on a thread so that a holder that never prints fails the test.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(std::time::Duration::from_secs(60));
    if line.as_deref().map(str::trim) != Ok("held") {
        let _ = child.kill();
        panic!("the holder did not take the lakehouse: {line:?}");
    }
    let (out, json) = site.transform(&[]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(json["error"].as_str().unwrap().contains("locked"), "{json}");
    let (out, json) = site.transform(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json["status"], "transformed");
}

/// Snapshot 2 of the generator's data, and the same snapshot with every value of the keys it
/// stamped with its release (2026-03) raised by 1000: two files that agree on every key and
/// stamp and disagree on those values.
fn disagreeing_snapshots() -> (String, String, BTreeMap<Key, f64>) {
    let mut csv = Vec::new();
    psd_gen::write_csv(
        &psd_gen::Spec {
            rows: ROWS,
            seed: 5,
            snapshot: 2,
        },
        &mut csv,
    )
    .unwrap();
    let a = String::from_utf8(csv).unwrap();
    let mut raised = BTreeMap::new();
    let b: Vec<String> = a
        .split("\r\n")
        .enumerate()
        .map(|(i, line)| {
            let f = psd_gen::split_csv_line(line);
            if i == 0 || f.len() != 12 || (f[5].as_str(), f[6].as_str()) != ("2026", "03") {
                return line.to_owned();
            }
            let Ok(v) = f[11].parse::<f64>() else {
                return line.to_owned();
            };
            let key = (
                f[0].clone(),
                f[2].clone(),
                f[4].parse().unwrap(),
                f[7].clone(),
            );
            raised.insert(key, v + 1000.0);
            let cut = line.rfind(',').unwrap();
            format!("{},{}", &line[..cut], v + 1000.0)
        })
        .collect();
    assert!(raised.len() > 100, "enough tied keys: {}", raised.len());
    (a, b.join("\r\n"), raised)
}

/// The latest value and its file of every key stamped 2026-03.
fn latest_of_tied_keys(site: &Site) -> BTreeMap<Key, (Option<f64>, String)> {
    let conn = site.lakehouse();
    let mut stmt = conn
        .prepare("SELECT commodity_code, country_code, market_year, attribute_id, value, landing_sha256 FROM cleaned.psd_latest WHERE calendar_year = 2026 AND month = 3")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?),
            (r.get(4)?, r.get(5)?),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn ties_go_to_the_newest_landing_file_when_two_files_disagree() {
    let (a, b, raised) = disagreeing_snapshots();
    // Both orders: the newer file wins whichever values it holds (not the larger value).
    for (older, newer) in [(&a, &b), (&b, &a)] {
        let site = Site::new();
        site.extract_csv("older", older.as_bytes());
        let newest = site.extract_csv("newer", newer.as_bytes());
        let newest_sha = newest["sha256"].as_str().unwrap();
        let (out, json) = site.transform(&[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(json["landing_files"], 2);

        let latest = latest_of_tied_keys(&site);
        let newer_values: BTreeMap<Key, Option<f64>> = newer
            .split("\r\n")
            .skip(1)
            .map(psd_gen::split_csv_line)
            .filter(|f| f.len() == 12 && (f[5].as_str(), f[6].as_str()) == ("2026", "03"))
            .map(|f| {
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
            .collect();
        assert_eq!(latest.len(), newer_values.len());
        for (key, want) in &newer_values {
            let (value, sha) = &latest[key];
            assert!(
                close(*value, *want),
                "{key:?}: {value:?}, the newer file says {want:?}"
            );
            assert_eq!(sha, newest_sha, "{key:?} comes from the newer file");
        }

        // Two files of one release are that release, its final state the newer file: no
        // release came before it, so nothing was revised (revisions are between releases).
        let conn = site.lakehouse();
        let (n, releases): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM serving.estimate_revisions), (SELECT count(*) FROM serving.releases WHERE release = '2026-03' AND landing_sha256 = ?)",
                [newest_sha],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((n, releases), (0, 1));
        assert!(!raised.is_empty());
    }
}

#[test]
fn every_value_extract_accepts_is_cast_by_staging() {
    // The typed columns in the shapes the validator lets through: leading zeros, signs,
    // quotes, Month 00, empty values, decimals without a leading or trailing digit, exponents.
    let rows = [
        ("1960", "1961", "00", "", None),
        ("\"2025\"", "2026", "\"01\"", "0", Some(0.0)),
        ("02024", "+2025", "12", "-12.50", Some(-12.5)),
        ("2023", "2024", "7", ".5", Some(0.5)),
        ("2022", "2023", "007", "5.", Some(5.0)),
        ("2021", "2022", "10", "1e3", Some(1000.0)),
        ("2020", "2021", "10", "-1.25E-2", Some(-0.0125)),
        ("2019", "2020", "10", "\"\"", None),
        ("2018", "2019", "10", "+7", Some(7.0)),
    ];
    let mut csv = format!("{}\r\n", psd_format::COLUMNS.join(","));
    for (my, cy, m, v, _) in &rows {
        csv.push_str(&format!(
            "0711100,\"Coffee, Green\",NA,Netherlands Antilles,{my},{cy},{m},028,Production,002,(1000 60 KG BAGS),{v}\r\n"
        ));
    }
    let site = Site::new();
    let landed = site.extract_csv("edges", csv.as_bytes());
    assert_eq!(landed["rows"], rows.len());
    let (out, json) = site.transform(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json["status"], "transformed");
    let conn = site.lakehouse();
    let mut stmt = conn
        .prepare("SELECT market_year, calendar_year, month, value FROM cleaned.psd_latest ORDER BY market_year DESC")
        .unwrap();
    let got: Vec<(i32, i32, i32, Option<f64>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want: Vec<(i32, i32, i32, Option<f64>)> = {
        let unquote = |s: &str| s.trim_matches('"').parse::<i32>().unwrap();
        let mut w: Vec<_> = rows
            .iter()
            .map(|(my, cy, m, _, v)| (unquote(my), unquote(cy), unquote(m), *v))
            .collect();
        w.sort_by_key(|x| std::cmp::Reverse(x.0));
        w
    };
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((g.0, g.1, g.2), (w.0, w.1, w.2));
        assert!(close(g.3, w.3), "{g:?} vs {w:?}");
    }
}

#[test]
fn regression_a_read_only_home_does_not_stop_sqlmesh() {
    // Under the units' ProtectSystem=strict the service user's home (/opt/materia) is
    // read-only, and SQLMesh wrote to $HOME/.sqlmesh: "OSError: [Errno 30] Read-only file
    // system: '/opt/materia/.sqlmesh'". Nothing can be created under /proc, even by root.
    let site = Site::new();
    site.extract(0);
    let mut cmd = site.command(&test_support::own_bin("transform"), &["--json"]);
    let out = cmd
        .env("HOME", "/proc/materia-read-only-home")
        .output_within(LIMIT)
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(
        out.status.success(),
        "{json}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json["status"], "transformed", "{json}");
}

/// The values the history kept from the file `sha` in market year 2025, by country.
fn kept_values(site: &Site, sha: &str) -> BTreeMap<String, (i32, i32, Option<f64>)> {
    let conn = site.lakehouse();
    let mut stmt = conn
        .prepare("SELECT country_code, calendar_year, month, value FROM history.psd_value_history WHERE landing_sha256 = ? AND market_year = 2025")
        .unwrap();
    stmt.query_map([sha], |r| {
        Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn a_file_that_repeats_keys_transforms_and_the_later_row_wins() {
    // Within one file a key repeated with the same release stamp is resolved by file order:
    // the last row wins, whether it repeats the first exactly or disagrees with it (in either
    // direction, so not the larger value). A greater (Calendar_Year, Month) still wins first.
    let rows = [
        ("BR", "2026", "02", "10"), // identical twice: one row kept
        ("BR", "2026", "02", "10"),
        ("CO", "2026", "02", "20"), // disagree: the later 21 wins
        ("CO", "2026", "02", "21"),
        ("VN", "2026", "02", "31"), // disagree: the later 30 wins, not the larger
        ("VN", "2026", "02", "30"),
        ("ET", "2026", "03", "40"), // the greater stamp wins over file order
        ("ET", "2026", "02", "41"),
        ("ID", "2026", "02", ""), // the later row wins even when it is empty
        ("ID", "2026", "02", "50"),
        ("ID", "2026", "02", ""),
        ("UG", "2026", "02", "60"), // not repeated
    ];
    // A second market year, so that serving.global_balance has more than one row.
    let other_year =
        "0711100,\"Coffee, Green\",UG,UG,2024,2025,10,028,Production,002,(1000 60 KG BAGS),7\r\n";
    let mut csv = format!("{}\r\n", psd_format::COLUMNS.join(","));
    for (country, cy, m, v) in &rows {
        csv.push_str(&format!(
            "0711100,\"Coffee, Green\",{country},{country},2025,{cy},{m},028,Production,002,(1000 60 KG BAGS),{v}\r\n"
        ));
    }
    csv.push_str(other_year);
    let site = Site::new();
    let landed = site.extract_csv("repeats", csv.as_bytes());
    assert_eq!(
        landed["rows"],
        rows.len() + 1,
        "the ledger records every row"
    );
    let (out, json) = site.transform(&[]);
    assert!(
        out.status.success(),
        "{json}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json["status"], "transformed", "{json}");

    let want: BTreeMap<String, (i32, i32, Option<f64>)> = [
        ("BR", (2026, 2, Some(10.0))),
        ("CO", (2026, 2, Some(21.0))),
        ("VN", (2026, 2, Some(30.0))),
        ("ET", (2026, 3, Some(40.0))),
        ("ID", (2026, 2, None)),
        ("UG", (2026, 2, Some(60.0))),
    ]
    .into_iter()
    .map(|(c, v)| (c.to_owned(), v))
    .collect();
    assert_eq!(kept_values(&site, landed["sha256"].as_str().unwrap()), want);

    // Deterministic: a forced rebuild keeps the same rows.
    let (out, json) = site.transform(&["--force"]);
    assert!(out.status.success(), "{json}");
    assert_eq!(kept_values(&site, landed["sha256"].as_str().unwrap()), want);
}

#[test]
fn a_file_read_short_of_its_landed_rows_fails_the_check() {
    // As if DuckDB had read part of the file: the ledger says it landed with more rows than
    // the lakehouse read from it. Repeated keys must not hide this.
    let site = Site::new();
    let landed = site.extract(0);
    let sha = landed["sha256"].as_str().unwrap();
    let db = rusqlite::Connection::open(site.path("landing/.state.sqlite")).unwrap();
    db.execute(
        "UPDATE extraction_runs SET rows = rows + 1 WHERE sha256 = ?",
        [sha],
    )
    .unwrap();
    drop(db);
    let (out, json) = site.transform(&[]);
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(json["status"], "failed", "{json}");
    let error = json["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("{} rows", landed["rows"]))
            && error.contains(&format!(
                "landed with {} rows",
                landed["rows"].as_u64().unwrap() + 1
            )),
        "{error}"
    );
}

/// Plants a landing file of `csv` directly in the store, as a release that validated less
/// would have landed it (no ledger row: as restored). Returns its path relative to the root.
fn plant_landing_file(site: &Site, csv: &str) -> String {
    use sha2::Digest;
    let sha = format!("{:x}", sha2::Sha256::digest(csv.as_bytes()));
    let relative = format!("psd/2026/02/{sha}.csv.gzip");
    let path = site.path("landing").join(&relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::default(),
    );
    std::io::Write::write_all(&mut gz, csv.as_bytes()).unwrap();
    gz.finish().unwrap();
    relative
}

#[test]
fn a_quarantined_file_is_skipped_until_released_and_never_touched() {
    let site = Site::new();
    site.extract(0);
    let (out, good) = site.transform(&[]);
    assert!(out.status.success(), "{good}");
    // A file staging cannot cast (extract refuses such a file today; an older release did not).
    let bad = plant_landing_file(
        &site,
        &format!(
            "{}\r\n0711100,\"Coffee, Green\",BR,Brazil,2025,2026,02,028,Production,002,(1000 60 KG BAGS),n/a\r\n",
            psd_format::COLUMNS.join(",")
        ),
    );
    let bad_path = site.path("landing").join(&bad);
    let bytes = std::fs::read(&bad_path).unwrap();
    let (out, failed) = site.transform(&[]);
    assert_eq!(out.status.code(), Some(1), "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("n/a"),
        "the cast failure names the value: {failed}"
    );

    let (out, held) = site.status(&["quarantine", &bad, "--reason", "Value n/a (landed by 0.3)"]);
    assert!(out.status.success(), "{held}");
    assert_eq!(held["status"], "quarantined");

    // Built from the good file alone, exactly as before the bad one landed.
    let (out, json) = site.transform(&[]);
    assert!(
        out.status.success(),
        "{json}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json["status"], "transformed", "{json}");
    assert_eq!(json["landing_files"], 1);
    assert_eq!(json["quarantined_files"], 1);
    assert_eq!(json["tables"], good["tables"]);
    assert!(
        test_support::stderr(&out).contains(&format!("skipping quarantined landing file {bad}")),
        "{}",
        test_support::stderr(&out)
    );
    let (out, again) = site.transform(&[]);
    assert!(out.status.success(), "{again}");
    assert_eq!(again["status"], "unchanged", "{again}");
    let (_, listed) = site.status(&[]);
    assert_eq!(listed["quarantined"][0]["path"], bad.as_str(), "{listed}");

    // SQLMesh run by hand (no manifest from the step) leaves it out too.
    let by_hand = site
        .command(
            &venv().join("bin/python"),
            &[
                "-c",
                "import json, config; print(json.dumps(config.landing_manifest(config.LANDING_DIR)))",
            ],
        )
        .current_dir(repo_root().join("transform"))
        .output_within(LIMIT)
        .unwrap();
    assert!(
        by_hand.status.success(),
        "{}",
        test_support::stderr(&by_hand)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&by_hand.stdout).unwrap();
    let files = manifest["psd"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{manifest}");
    assert!(
        !files[0]
            .as_str()
            .unwrap()
            .ends_with(bad.rsplit('/').next().unwrap())
    );

    // Released: read again, and the transform fails on it again.
    let (out, released) = site.status(&["unquarantine", &bad, "--reason", "to check"]);
    assert!(out.status.success(), "{released}");
    assert_eq!(released["status"], "released");
    let (out, json) = site.transform(&[]);
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(json["landing_files"], serde_json::Value::Null);

    assert_eq!(
        std::fs::read(&bad_path).unwrap(),
        bytes,
        "the file is never changed"
    );
}

#[test]
fn every_file_quarantined_fails_clearly() {
    let site = Site::new();
    let landed = site.extract(0);
    let path = landed["path"].as_str().unwrap();
    let (out, held) = site.status(&["quarantine", path, "--reason", "test"]);
    assert!(out.status.success(), "{held}");
    let (out, json) = site.transform(&[]);
    assert_eq!(out.status.code(), Some(1), "{json}");
    let error = json["error"].as_str().unwrap();
    assert!(
        error.contains("every landing file")
            && error.contains("quarantined")
            && error.contains("materia-status unquarantine"),
        "{error}"
    );
}

/// Rows and an order-insensitive hash of every row of each serving relation.
fn serving_content(site: &Site) -> BTreeMap<String, (i64, String)> {
    let conn = site.lakehouse();
    [
        "commodity_balance",
        "global_balance",
        "estimate_revisions",
        "value_history",
        "releases",
    ]
    .into_iter()
    .map(|t| {
        let content = conn
            .query_row(
                &format!(
                    "SELECT count(*), CAST(coalesce(sum(hash(t)::HUGEINT), 0) AS VARCHAR)
                           FROM serving.{t} AS t"
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        (t.to_owned(), content)
    })
    .collect()
}

#[test]
fn a_file_that_already_built_then_quarantined_leaves_serving() {
    // What serving holds when only the first snapshot ever landed.
    let alone = Site::new();
    alone.extract(0);
    let (out, json) = alone.transform(&[]);
    assert!(out.status.success(), "{json}");
    let first_alone = serving_content(&alone);

    let site = Site::new();
    site.extract(0);
    let second = site.extract(2);
    let (out, both) = site.transform(&[]);
    assert!(out.status.success(), "{both}");
    assert_eq!(both["landing_files"], 2);
    let with_both = serving_content(&site);
    assert_ne!(
        with_both["estimate_revisions"], first_alone["estimate_revisions"],
        "the second snapshot revises estimates"
    );

    // The second file, already in serving, quarantined: the next build is as if it never landed.
    let path = second["path"].as_str().unwrap();
    let (out, held) = site.status(&["quarantine", path, "--reason", "revisions in doubt"]);
    assert!(out.status.success(), "{held}");
    let (out, json) = site.transform(&[]);
    assert!(out.status.success(), "{json}");
    assert_eq!(json["status"], "transformed", "{json}");
    assert_eq!(
        (
            json["landing_files"].as_u64(),
            json["quarantined_files"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(serving_content(&site), first_alone);

    // Released: back to what both files build.
    let (out, released) = site.status(&["unquarantine", path]);
    assert!(out.status.success(), "{released}");
    let (out, json) = site.transform(&[]);
    assert!(out.status.success(), "{json}");
    assert_eq!(serving_content(&site), with_both);
}

// Regression: SQLMesh run by hand as a user who may not write the landing directory (an
// operator against the service user's) failed to read the state DB: SQLite reads a WAL
// database through its `-shm` file, which that user cannot create.
#[test]
fn sqlmesh_by_hand_reads_quarantines_from_a_state_db_it_may_not_write() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new();
    let landed = site.extract(0);
    let path = landed["path"].as_str().unwrap();
    let (out, held) = site.status(&["quarantine", path, "--reason", "test"]);
    assert!(out.status.success(), "{held}");

    // The state DB and the project's reader, where `nobody` may read but not write.
    let shared = tempfile::tempdir().unwrap();
    let (code, data) = (shared.path().join("code"), shared.path().join("data"));
    std::fs::create_dir_all(&code).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(
        repo_root().join("transform/state_db.py"),
        code.join("state_db.py"),
    )
    .unwrap();
    let db = data.join("state.sqlite");
    std::fs::copy(site.path("landing/.state.sqlite"), &db).unwrap();
    assert!(
        !site.path("landing/.state.sqlite-shm").exists(),
        "no -shm beside a closed state DB"
    );
    for (p, mode) in [
        (shared.path(), 0o755),
        (code.as_path(), 0o755),
        (code.join("state_db.py").as_path(), 0o644),
        (db.as_path(), 0o444),
        (data.as_path(), 0o555),
    ] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let python = Path::new("/usr/bin/python3");
    assert!(
        python.is_file(),
        "needs Debian's python3 at {}",
        python.display()
    );
    // Permission bits do not bind root: under root, the read runs as nobody.
    let mut cmd = if test_support::is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.arg(python);
        c
    } else {
        Command::new(python)
    };
    let out = cmd
        .env_clear()
        .env("PYTHONPATH", &code)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args([
            "-c",
            "import json, sys, pathlib, state_db; print(json.dumps(sorted(state_db.quarantined(pathlib.Path(sys.argv[1])))))",
        ])
        .arg(&db)
        .output_within(LIMIT)
        .unwrap();
    assert!(out.status.success(), "{}", test_support::stderr(&out));
    let read: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(read, vec![held["path"].as_str().unwrap().to_owned()]);
    assert!(!data.join("state.sqlite-shm").exists(), "nothing written");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
}
