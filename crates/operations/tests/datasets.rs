//! A second dataset, added the way a new extractor would add one (a `toy/` directory of the
//! landing store and `extract-toy` runs in the ledger), is backed up, verified and restored by
//! `backup-sync`, fingerprinted by `transform` and shown by `materia-status`: the real binaries,
//! none of which names it. Needs rclone (a local-path remote) and the SQLMesh virtualenv.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use landing_store::{ContentAddress, LandingStore, Published};
use run_ledger::{Landed, Ledger, RunOutcome, RunStatus};
use sha2::{Digest, Sha256};
use test_support::{CommandExt, json_line, repo_root, stderr, venv, workspace_bin};

/// Bound on each binary the test runs (a SQLMesh cycle on a small file takes seconds).
const RUN_LIMIT: Duration = Duration::from_secs(600);

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn run(&self, binary: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(workspace_bin(binary));
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.dir.path())
            .env("LANDING_DIR", self.path("landing"))
            .env("DUCKDB_PATH", self.path("lakehouse.duckdb"))
            .env("MATERIA_TRANSFORM_DIR", repo_root().join("transform"))
            .env("MATERIA_SQLMESH", venv().join("bin/sqlmesh"))
            .env("BACKUP_REMOTE", self.path("remote"))
            .args(args);
        cmd.output_within(RUN_LIMIT).unwrap()
    }

    /// Runs a `--json` command that must exit 0; returns its JSON.
    fn ok(&self, binary: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(binary, &all);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{binary} {args:?}: {}",
            stderr(&out)
        );
        json_line(&out)
    }

    /// The status row of `step` in `materia-status --json`.
    fn status_of(&self, step: &str) -> serde_json::Value {
        let json = self.ok("materia-status", &[]);
        json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == step)
            .unwrap_or_else(|| panic!("no {step} in {json}"))
            .clone()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Lands a toy CSV as an extractor of the dataset `toy` would: through the landing store,
/// under its content address. Returns the landing path relative to the root and the bytes.
fn land_toy(landing: &Path, csv: &str) -> (String, Vec<u8>) {
    let store = LandingStore::open(landing).unwrap();
    let address = ContentAddress::parse(&hex(&Sha256::digest(csv.as_bytes()))).unwrap();
    let mut temp = store.create_temp("extract-toy", ".csv.gzip.part").unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(csv.as_bytes()).unwrap();
    let bytes = gz.finish().unwrap();
    temp.file().write_all(&bytes).unwrap();
    let Published::New(file) = store.publish(temp, "toy", 2026, 1, &address).unwrap() else {
        panic!("the toy file was already there")
    };
    (file.relative.display().to_string(), bytes)
}

#[test]
fn a_second_dataset_is_backed_up_restored_fingerprinted_and_shown_without_a_change() {
    let site = Site {
        dir: tempfile::tempdir().unwrap(),
    };
    let zip = site.path("psd.zip");
    let spec = psd_gen::Spec {
        rows: 3_000,
        seed: 11,
        snapshot: 0,
    };
    psd_gen::write_zip(&spec, &mut std::fs::File::create(&zip).unwrap(), 1).unwrap();
    assert_eq!(
        site.ok("extract-psd", &["--url", zip.to_str().unwrap()])["status"],
        "new"
    );
    assert_eq!(site.ok("transform", &[])["status"], "transformed");
    assert_eq!(site.ok("transform", &[])["status"], "unchanged");

    // The toy dataset appears in landing.
    let (toy, toy_bytes) = land_toy(&site.path("landing"), "day,value\n2026-01-01,1\n");

    // Fingerprinted: the transform sees a change, runs SQLMesh (which has no toy model: the
    // step says so), checks psd as before, and is unchanged again after.
    let out = site.run("transform", &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json = json_line(&out);
    assert_eq!(json["status"], "transformed", "{json}");
    assert_eq!(json["landing_files"], 2);
    assert_eq!(json["datasets"], serde_json::json!({"psd": 1, "toy": 1}));
    assert!(
        stderr(&out).contains("dataset toy: 1 landing file(s) that no model"),
        "{}",
        stderr(&out)
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(site.path(".sqlmesh/landing-manifest.json")).unwrap(),
    )
    .unwrap();
    let listed = manifest["toy"][0].as_str().unwrap();
    assert!(listed.ends_with(&toy), "{manifest}");
    assert_eq!(site.ok("transform", &[])["status"], "unchanged");

    // Shown: its extractor is listed before its first run, stale under a --max-age, and with
    // its status once it has run.
    assert_eq!(site.status_of("extract-toy")["status"], "never");
    let out = site.run("materia-status", &["--max-age", "extract-toy=1d"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stale: extract-toy"),
        "{}",
        stderr(&out)
    );
    let ledger = Ledger::open(&site.path("landing/.state.sqlite")).unwrap();
    let run = ledger
        .begin("extract-toy", "2026-01-01T00:00:00.000Z")
        .unwrap();
    let landed = Landed {
        path: Some(toy.clone()),
        rows: Some(1),
        ..Default::default()
    };
    let outcome = RunOutcome {
        landed: Some(landed),
        ..RunOutcome::new(RunStatus::Success)
    };
    ledger
        .finish(run, "2026-01-01T00:00:01.000Z", &outcome)
        .unwrap();
    drop(ledger);
    assert_eq!(site.status_of("extract-toy")["status"], "success");
    let out = site.run("materia-status", &[]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.lines().any(|l| l.starts_with("extract-toy")),
        "{table}"
    );

    // Backed up: pushed beside psd, byte for byte, verified; a second push uploads nothing.
    let json = site.ok("backup-sync", &["push"]);
    assert_eq!(json["uploaded"], 2, "{json}");
    assert_eq!(
        std::fs::read(site.path("remote").join(&toy)).unwrap(),
        toy_bytes
    );
    assert_eq!(site.ok("backup-sync", &["push"])["uploaded"], 0);
    assert_eq!(site.ok("backup-sync", &["verify"])["skipped"], 2);

    // Restored: into an empty directory, checked against its name.
    let to = site.path("restored");
    let json = site.ok("backup-sync", &["restore", "--to", to.to_str().unwrap()]);
    assert_eq!(json["skipped"], 2, "{json}");
    assert_eq!(std::fs::read(to.join(&toy)).unwrap(), toy_bytes);
    assert_eq!(
        landing_store::datasets(&to).unwrap(),
        ["psd", "toy"],
        "both datasets restored"
    );

    // And a toy object that no longer matches its name fails the restore, naming it.
    let remote_toy = site.path("remote").join(&toy);
    let mut perms = std::fs::metadata(&remote_toy).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&remote_toy, perms).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"day,value\n2026-01-01,2\n").unwrap();
    std::fs::write(&remote_toy, gz.finish().unwrap()).unwrap();
    let again = site.path("restored-again");
    let out = site.run(
        "backup-sync",
        &["--json", "restore", "--to", again.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json = json_line(&out);
    let mismatches = json["mismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 1, "{json}");
    assert!(mismatches[0].as_str().unwrap().starts_with(&toy), "{json}");
}

#[test]
fn a_remote_without_any_dataset_is_a_failed_restore_not_an_empty_success() {
    let site = Site {
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::create_dir_all(site.path("remote/state/2026/01")).unwrap();
    let to = site.path("restored");
    let out = site.run(
        "backup-sync",
        &["--json", "restore", "--to", to.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json = json_line(&out);
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("holds no landing files"),
        "{json}"
    );
}

/// A FRED-shaped prices CSV: both series monthly from 1960 to 2026 (the generator's market
/// years), values from the month's index; returns it with the values by (year, month, series).
fn fred_csv() -> (String, Vec<(u16, u16, usize, f64)>) {
    let mut csv = String::from("observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n");
    let mut values = Vec::new();
    for year in psd_gen::FIRST_YEAR..=2026 {
        for month in 1..=12u16 {
            let i = f64::from((year - psd_gen::FIRST_YEAR) * 12 + month);
            let (a, r) = (100.0 + (i % 37.0) * 2.5, 60.0 + (i % 23.0) * 1.25);
            csv.push_str(&format!("{year}-{month:02}-01,{a},{r}\n"));
            values.push((year, month, 0, a));
            values.push((year, month, 1, r));
        }
    }
    (csv, values)
}

#[test]
fn psd_and_prices_land_transform_and_serve_the_joined_table_read_by_python_duckdb() {
    let site = Site {
        dir: tempfile::tempdir().unwrap(),
    };
    let zip = site.path("psd.zip");
    let spec = psd_gen::Spec {
        rows: 20_000,
        seed: 5,
        snapshot: 0,
    };
    psd_gen::write_zip(&spec, &mut std::fs::File::create(&zip).unwrap(), 1).unwrap();
    assert_eq!(
        site.ok("extract-psd", &["--url", zip.to_str().unwrap()])["status"],
        "new"
    );
    // PSD alone first: no prices dataset yet never breaks the PSD path.
    assert_eq!(site.ok("transform", &[])["status"], "transformed");

    let (csv, values) = fred_csv();
    let prices = site.path("fredgraph.csv");
    std::fs::write(&prices, &csv).unwrap();
    assert_eq!(
        site.ok("extract-prices", &["--url", prices.to_str().unwrap()])["status"],
        "landed"
    );
    let json = site.ok("transform", &[]);
    assert_eq!(json["status"], "transformed", "{json}");
    assert_eq!(json["datasets"], serde_json::json!({"prices": 1, "psd": 1}));
    let serving = site.path("analytics.duckdb");
    site.ok("export-serving", &["--serving", serving.to_str().unwrap()]);

    // Read as the web app reads: the published file, read-only, with Python's DuckDB.
    let script = r#"
import duckdb, json, sys
db = duckdb.connect(sys.argv[1], read_only=True)
rows = db.sql("""
    SELECT market_year, marketing_year, series, stocks_to_use, ending_stocks,
           domestic_consumption, avg_price, price_months, price_unit
    FROM serving.coffee_stocks_to_use_price ORDER BY series, market_year
""").fetchall()
prices = db.sql("SELECT count(*), min(month)::TEXT, max(month)::TEXT FROM serving.coffee_prices").fetchone()
print(json.dumps({"rows": rows, "prices": prices}))
"#;
    let out = Command::new(venv().join("bin/python"))
        .args(["-c", script, serving.to_str().unwrap()])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        read["prices"],
        serde_json::json!([values.len(), "1960-01-01", "2026-12-01"])
    );
    let rows = read["rows"].as_array().unwrap();
    assert!(!rows.is_empty(), "no marketing year joined: {read}");
    let series = ["PCOFFOTMUSDM", "PCOFFROBUSDM"];
    for row in rows {
        let year = row[0].as_u64().unwrap() as u16;
        assert_eq!(
            row[1],
            format!("{year}/{:02}", (year + 1) % 100),
            "marketing year label"
        );
        let s = series.iter().position(|s| row[2] == *s).unwrap();
        // World stocks-to-use is ending stocks / domestic consumption.
        let stu = row[4].as_f64().unwrap() / row[5].as_f64().unwrap();
        assert!((row[3].as_f64().unwrap() - stu).abs() < 1e-9, "{row}");
        // The average over October of the year to September of the next.
        let window: Vec<f64> = values
            .iter()
            .filter(|(y, m, v, _)| {
                *v == s && ((*y == year && *m >= 10) || (*y == year + 1 && *m <= 9))
            })
            .map(|(_, _, _, x)| *x)
            .collect();
        let avg = window.iter().sum::<f64>() / window.len() as f64;
        assert_eq!(row[7].as_u64().unwrap() as usize, window.len(), "{row}");
        assert!(
            (row[6].as_f64().unwrap() - avg).abs() < 1e-9,
            "{row}: {avg}"
        );
        assert_eq!(row[8], "US cents per pound");
    }
}
