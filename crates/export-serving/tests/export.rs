//! End to end: the real `export-serving` binary against real DuckDB files, with real reader
//! processes (Python `duckdb`, as the web app) and reader threads (the `serving-reader` crate).

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lakehouse::duckdb::Connection;
use serving_reader::ServingReader;
use test_support::{CommandExt, repo_root, stderr, venv};

/// Bound on every child process of these tests: a hang fails the test instead of the run.
const CHILD_LIMIT: Duration = Duration::from_secs(600);

/// The binary under test, where the test runner says it is.
fn bin() -> PathBuf {
    test_support::own_bin("export-serving")
}

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let site = Site {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(site.path("data")).unwrap();
        site
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn lakehouse(&self) -> PathBuf {
        self.path("data/lakehouse.duckdb")
    }

    fn serving(&self) -> PathBuf {
        self.path("data/analytics.duckdb")
    }

    fn work_dir(&self) -> PathBuf {
        self.path("data/.analytics.duckdb.export")
    }

    /// Writes generation `g` of the lakehouse the way SQLMesh lays it out: physical tables in
    /// `sqlmesh__serving`, views in `serving` that name them with the file's catalog, plus a
    /// plain table. Row counts differ per generation.
    fn write_lakehouse(&self, g: u64, big_rows: u64) {
        let conn = Connection::open(self.lakehouse()).unwrap();
        conn.execute_batch(&format!(
            "CREATE SCHEMA IF NOT EXISTS sqlmesh__serving;
             CREATE SCHEMA IF NOT EXISTS serving;
             CREATE OR REPLACE TABLE sqlmesh__serving.serving__balance__1 AS
                 SELECT i AS id, 'c' || lpad(CAST(i % 97 AS VARCHAR), 3, '0') AS code,
                        i * {g} / 3.0 AS value, md5(CAST(i + {g} AS VARCHAR)) AS label
                   FROM range({rows}) r(i);
             CREATE OR REPLACE VIEW serving.balance AS
                 SELECT * FROM lakehouse.sqlmesh__serving.serving__balance__1;
             CREATE OR REPLACE TABLE serving.notes AS
                 SELECT {g} AS generation, 'note ' || i AS text FROM range({notes}) r(i);
             CHECKPOINT;",
            rows = big_rows + g * 37,
            notes = g % 5 + 1,
        ))
        .unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.env_clear()
            .env("LANDING_DIR", self.path("landing"))
            .env("DUCKDB_PATH", self.lakehouse())
            .env("SERVING_DUCKDB_PATH", self.serving())
            .env("METRICS_DIR", self.path("metrics"))
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> (Output, serde_json::Value) {
        let out = self
            .command(args)
            .arg("--json")
            .output_within(CHILD_LIMIT)
            .unwrap();
        json_of(out)
    }

    fn ledger(&self) -> Vec<(String, Option<String>, Option<String>)> {
        let db = rusqlite::Connection::open(self.path("landing/.state.sqlite")).unwrap();
        let mut stmt = db
            .prepare("SELECT status, detail, error FROM step_runs WHERE step = 'export-serving' ORDER BY run_id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

fn json_of(out: Output) -> (Output, serde_json::Value) {
    let json = test_support::json_line(&out);
    (out, json)
}

fn assert_exported(out: &Output, json: &serde_json::Value) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    assert_eq!(json["status"], "exported", "{json}");
}

/// (device, inode) and bytes of a file.
fn snapshot(path: &Path) -> ((u64, u64), Vec<u8>) {
    let meta = std::fs::metadata(path).unwrap();
    ((meta.dev(), meta.ino()), std::fs::read(path).unwrap())
}

/// Opens the published file as a reader would and checks every table against its
/// `_materia_export` row; returns the generation's exported_at.
fn check_generation(path: &Path) -> String {
    let mut reader = ServingReader::new(path);
    reader
        .with(|c| {
            let generation = serving_reader::read_generation(c, "serving")?;
            assert!(!generation.tables.is_empty());
            for t in &generation.tables {
                let n: i64 = c.query_row(
                    &format!("SELECT count(*) FROM serving.\"{}\"", t.table_name),
                    [],
                    |r| r.get(0),
                )?;
                assert_eq!(n as u64, t.row_count, "{}", t.table_name);
            }
            Ok(generation.exported_at)
        })
        .unwrap()
}

#[test]
fn views_become_tables_with_an_export_record_and_generations_rotate() {
    let site = Site::new();
    let mut exported = Vec::new();
    for g in 1..=4 {
        site.write_lakehouse(g, 1_000);
        let (out, json) = site.run(&["--keep", "2"]);
        assert_exported(&out, &json);
        assert_eq!(json["path"], site.serving().display().to_string());
        assert_eq!(json["tables"]["balance"], 1_000 + g * 37);
        assert_eq!(json["tables"]["notes"], g % 5 + 1);
        exported.push(check_generation(&site.serving()));
    }
    // Published as tables, read-only on disk, with nothing beside it.
    let conn = serving_reader::ServingReader::new(site.serving())
        .with(|c| {
            let mut stmt = c.prepare(
                "SELECT table_name, table_type FROM information_schema.tables
                  WHERE table_schema = 'serving' ORDER BY 1",
            )?;
            stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap();
    assert_eq!(
        conn,
        [
            ("_materia_export".to_owned(), "BASE TABLE".to_owned()),
            ("balance".to_owned(), "BASE TABLE".to_owned()),
            ("notes".to_owned(), "BASE TABLE".to_owned()),
        ]
    );
    let mode = std::fs::metadata(site.serving())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o444);
    let beside: Vec<String> = std::fs::read_dir(site.path("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("analytics") || n.starts_with(".analytics"))
        .collect();
    let mut beside = beside;
    beside.sort();
    assert_eq!(beside, ["analytics.duckdb", "analytics.duckdb.previous"]);

    // --keep 2: the two generations before the current one, oldest first.
    let kept: Vec<String> = {
        let mut k: Vec<PathBuf> = std::fs::read_dir(site.path("data/analytics.duckdb.previous"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        k.sort();
        k.iter().map(|p| check_generation(p)).collect()
    };
    assert_eq!(kept, exported[1..3]);

    // --keep 0 removes them all (with new content: unchanged content keeps the file as it is).
    site.write_lakehouse(5, 1_000);
    let (out, json) = site.run(&["--keep", "0"]);
    assert_exported(&out, &json);
    assert_eq!(json["kept"], serde_json::json!([]));
    assert_eq!(
        std::fs::read_dir(site.path("data/analytics.duckdb.previous"))
            .unwrap()
            .count(),
        0
    );

    let ledger = site.ledger();
    assert_eq!(ledger.len(), 5);
    assert!(ledger.iter().all(|(status, _, _)| status == "success"));
    assert!(ledger[0].1.as_deref().unwrap().contains("balance=1037"));
    let metrics =
        std::fs::read_to_string(site.path("metrics/materia_export_serving.prom")).unwrap();
    assert!(
        metrics.contains("materia_export_serving_exit_code 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("materia_export_serving_tables 2"),
        "{metrics}"
    );
}

#[test]
fn readers_never_see_a_torn_generation_while_25_are_published() {
    let site = Site::new();
    site.write_lakehouse(1, 20_000);
    let (out, json) = site.run(&[]);
    assert_exported(&out, &json);

    let stop = site.path("stop");
    let readers: Vec<_> = (0..3)
        .map(|_| {
            Command::new(venv().join("bin/python"))
                .arg(repo_root().join("crates/export-serving/tests/reader.py"))
                .arg(site.serving())
                .arg(&stop)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let done = Arc::clone(&done);
            let path = site.serving();
            std::thread::spawn(move || {
                let mut reader = ServingReader::new(path);
                let (mut queries, mut errors) = (0u64, Vec::new());
                let mut seen = std::collections::BTreeSet::new();
                while !done.load(Ordering::Relaxed) && errors.len() < 20 {
                    // One `with`: the record and the counts come from the same generation.
                    let checked = reader.with(|c| {
                        let generation = serving_reader::read_generation(c, "serving")?;
                        let mut wrong = Vec::new();
                        for t in &generation.tables {
                            let n: i64 = c.query_row(
                                &format!("SELECT count(*) FROM serving.\"{}\"", t.table_name),
                                [],
                                |r| r.get(0),
                            )?;
                            if n as u64 != t.row_count {
                                wrong.push(format!(
                                    "{}: {n} rows, recorded {}",
                                    t.table_name, t.row_count
                                ));
                            }
                        }
                        Ok((generation.exported_at, wrong))
                    });
                    match checked {
                        Ok((exported_at, wrong)) => {
                            errors.extend(wrong);
                            seen.insert(exported_at);
                            queries += 1;
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (queries, seen.len(), reader.opens(), errors)
            })
        })
        .collect();

    let generations = 25;
    for g in 2..=generations + 1 {
        site.write_lakehouse(g, 20_000);
        let (out, json) = site.run(&["--keep", "3"]);
        assert_exported(&out, &json);
    }
    // Give every reader a moment on the last generation.
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    std::fs::write(&stop, "").unwrap();

    for t in threads {
        let (queries, seen, opens, errors) = t.join().unwrap();
        assert!(errors.is_empty(), "reader thread errors: {errors:?}");
        assert!(
            queries > 0 && seen > 1 && opens > 1,
            "{queries} {seen} {opens}"
        );
    }
    for r in readers {
        let out = test_support::wait_within(r, CHILD_LIMIT);
        assert!(out.status.success(), "{}", stderr(&out));
        let summary: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        assert_eq!(summary["errors"], serde_json::json!([]), "{summary}");
        assert!(summary["queries"].as_u64().unwrap() > 0, "{summary}");
        assert!(summary["generations"].as_u64().unwrap() > 1, "{summary}");
    }
    assert_eq!(site.ledger().len() as u64, generations + 1);
}

/// A small deterministic generator of kill delays (no clock-seeded randomness in tests).
struct Lcg(u64);

impl Lcg {
    fn next_below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[test]
fn kill_9_at_any_moment_leaves_the_published_file_complete() {
    let site = Site::new();
    site.write_lakehouse(1, 400_000);
    let started = Instant::now();
    let (out, json) = site.run(&[]);
    assert_exported(&out, &json);
    // Kills land anywhere from start-up to just after the end of a run.
    let span_ms = (started.elapsed().as_millis() as u64 * 12 / 10).max(50);
    let first = check_generation(&site.serving());

    let mut rng = Lcg(0x5eed);
    let mut finished = 0;
    for i in 0..12 {
        // Every other run has new content to export; the others find it unchanged (unless the
        // kill before stopped that export) and must leave the published file as it is.
        if i % 2 == 0 {
            site.write_lakehouse(2 + i, 400_000);
        }
        let mut child = site
            .command(&["--keep", "2"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.next_below(span_ms)));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            finished += 1;
        }
        // Whatever the moment, the published path opens and is complete.
        check_generation(&site.serving());
    }
    assert!(finished < 12, "no kill landed mid-run (span {span_ms} ms)");

    site.write_lakehouse(20, 400_000);
    let (out, json) = site.run(&["--keep", "2"]);
    assert_exported(&out, &json);
    let last = check_generation(&site.serving());
    assert!(last > first);
    assert!(
        !site.work_dir().exists(),
        "leftovers stay in the work directory"
    );
    assert!(json["kept"].as_array().unwrap().len() <= 2);
    let ledger = site.ledger();
    assert!(
        ledger.iter().all(|(status, _, _)| status != "running"),
        "{ledger:?}"
    );
    if ledger.len() > finished + 2 {
        assert!(
            ledger
                .iter()
                .any(|(_, _, e)| e.as_deref().is_some_and(|e| e.starts_with("interrupted"))),
            "{ledger:?}"
        );
    }
}

#[test]
fn a_lakehouse_held_by_a_writer_exits_75_after_the_wait_and_serving_is_untouched() {
    let site = Site::new();
    site.write_lakehouse(1, 1_000);
    let (out, json) = site.run(&[]);
    assert_exported(&out, &json);
    let before = snapshot(&site.serving());

    site.write_lakehouse(2, 1_000);
    let writer = Connection::open(site.lakehouse()).unwrap();
    let started = Instant::now();
    let (out, json) = site.run(&["--lock-wait-secs", "1"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it did not wait"
    );
    assert_eq!(json["status"], "failed");
    assert!(
        json["error"].as_str().unwrap().contains("stayed locked"),
        "{json}"
    );
    assert_eq!(snapshot(&site.serving()), before);
    assert!(!site.work_dir().exists());

    drop(writer);
    let (out, json) = site.run(&["--lock-wait-secs", "1"]);
    assert_exported(&out, &json);
    assert_ne!(snapshot(&site.serving()).0, before.0);
}

#[test]
fn a_vanishing_table_or_column_is_refused_unless_allowed() {
    let site = Site::new();
    site.write_lakehouse(1, 1_000);
    let (out, json) = site.run(&[]);
    assert_exported(&out, &json);
    let before = snapshot(&site.serving());

    let conn = Connection::open(site.lakehouse()).unwrap();
    conn.execute_batch("ALTER TABLE serving.notes DROP COLUMN text; CHECKPOINT;")
        .unwrap();
    drop(conn);
    let (out, json) = site.run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let error = json["error"].as_str().unwrap();
    assert!(
        error.contains("column serving.notes.text would vanish"),
        "{error}"
    );
    assert!(error.contains("--allow-breaking"), "{error}");
    assert_eq!(snapshot(&site.serving()), before);

    let conn = Connection::open(site.lakehouse()).unwrap();
    conn.execute_batch("DROP VIEW serving.balance; CHECKPOINT;")
        .unwrap();
    drop(conn);
    let (out, json) = site.run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let error = json["error"].as_str().unwrap();
    assert!(
        error.contains("table serving.balance would vanish"),
        "{error}"
    );
    assert_eq!(snapshot(&site.serving()), before);

    let (out, json) = site.run(&["--allow-breaking"]);
    assert_exported(&out, &json);
    assert_eq!(json["tables"], serde_json::json!({"notes": 2}));
    let statuses: Vec<String> = site.ledger().into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(statuses, ["success", "failed", "failed", "success"]);
}

#[test]
fn a_write_failure_part_way_fails_and_keeps_the_previous_file() {
    let site = Site::new();
    site.write_lakehouse(1, 1_000);
    let (out, json) = site.run(&[]);
    assert_exported(&out, &json);
    let before = snapshot(&site.serving());

    // A file-size limit of 1 MiB (dash counts 512-byte blocks) part-way through a copy of a
    // bigger table. SIGXFSZ is ignored, as systemd services can have it, so writes fail with
    // EFBIG instead of killing the process.
    site.write_lakehouse(2, 300_000);
    let out = Command::new("/bin/sh")
        .env_clear()
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 2048; exec \"$0\" --json")
        .arg(bin())
        .envs(
            site.command(&[])
                .get_envs()
                .filter_map(|(k, v)| Some((k, v?))),
        )
        .output_within(CHILD_LIMIT)
        .unwrap();
    let (out, json) = json_of(out);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json["status"], "failed");
    assert!(!json["error"].as_str().unwrap().is_empty());
    assert_eq!(snapshot(&site.serving()), before);
    assert!(!site.work_dir().exists(), "the partial file is left behind");

    let (out, json) = site.run(&[]);
    assert_exported(&out, &json);
}

#[test]
fn the_published_file_opens_in_python_duckdb() {
    let site = Site::new();
    site.write_lakehouse(3, 500);
    let (out, json) = site.run(&[]);
    assert_exported(&out, &json);
    let out = Command::new(venv().join("bin/python"))
        .arg("-c")
        .arg(
            "import duckdb, sys\n\
             c = duckdb.connect(sys.argv[1], read_only=True)\n\
             print(duckdb.__version__)\n\
             for t, n in c.execute('SELECT table_name, row_count FROM serving._materia_export ORDER BY 1').fetchall():\n\
             \x20   print(t, n, c.execute(f'SELECT count(*) FROM serving.{t}').fetchone()[0])\n",
        )
        .arg(site.serving())
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, "1.5.6\nbalance 611 611\nnotes 4 4\n");
}

#[test]
fn bad_configuration_exits_2_and_a_missing_lakehouse_fails_clearly() {
    let site = Site::new();
    let out = site
        .command(&["--json"])
        .env("SERVING_DUCKDB_PATH", site.lakehouse())
        .output_within(CHILD_LIMIT)
        .unwrap();
    let (out, json) = json_of(out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        json["error"].as_str().unwrap().contains("same file"),
        "{json}"
    );

    for bad in [
        &["--schema", "x;drop"][..],
        &["--keep", "101"],
        &["--lock-wait-secs", "-1"],
    ] {
        let (out, json) = site.run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert_eq!(json["status"], "failed");
    }

    let (out, json) = site.run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("run the transform first"),
        "{json}"
    );
    assert!(!site.lakehouse().exists(), "the lakehouse was created");
    assert!(!site.serving().exists());

    site.write_lakehouse(1, 10);
    let (out, json) = site.run(&["--schema", "nothing_here"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("has no tables or views"),
        "{json}"
    );

    // A published file that is not DuckDB cannot be checked: refused, unless allowed.
    std::fs::write(site.serving(), "not a database").unwrap();
    std::fs::set_permissions(site.serving(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (out, json) = site.run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("cannot check the published file"),
        "{json}"
    );
    assert_eq!(std::fs::read(site.serving()).unwrap(), b"not a database");
    let (out, json) = site.run(&["--allow-breaking"]);
    assert_exported(&out, &json);
}

/// The prebuilt DuckDB library carries ICU (time zones), JSON and Parquet, which the bundled
/// build did not. None of that may reach the serving contract: `exported_at` stays a plain UTC
/// `TIMESTAMP` whatever the zone of the exporting and the reading process, and every table keeps
/// the lakehouse's column types, as Python's duckdb reads them.
#[test]
fn the_serving_file_does_not_depend_on_the_time_zone_of_writer_or_reader() {
    let site = Site::new();
    site.write_lakehouse(2, 50);
    let out = site
        .command(&["--json"])
        .env("TZ", "Asia/Kathmandu")
        .output_within(CHILD_LIMIT)
        .unwrap();
    let (out, json) = json_of(out);
    assert_exported(&out, &json);
    // 2026-11-21T12:00:00.123Z -> 2026-11-21 12:00:00.123, as DuckDB prints a TIMESTAMP.
    let exported_at = json["exported_at"]
        .as_str()
        .unwrap()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned();
    // DuckDB prints fractional seconds without trailing zeros (.700 as .7, .000 not at all):
    // one export in ten ends in a multiple of 100 ms.
    let exported_at = match exported_at.split_once('.') {
        Some((secs, frac)) if frac.trim_end_matches('0').is_empty() => secs.to_owned(),
        Some((secs, frac)) => format!("{secs}.{}", frac.trim_end_matches('0')),
        None => exported_at,
    };

    let script = "import duckdb, sys\n\
        c = duckdb.connect(sys.argv[1], read_only=True)\n\
        for row in c.execute(\"SELECT DISTINCT typeof(exported_at), CAST(exported_at AS VARCHAR) FROM serving._materia_export\").fetchall():\n\
        \x20   print('export', *row)\n\
        for row in c.execute(\"SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'serving' ORDER BY 1, ordinal_position\").fetchall():\n\
        \x20   print(*row)\n";
    let python = |path: &Path, tz: &str| {
        let out = Command::new(venv().join("bin/python"))
            .env_clear()
            .env("TZ", tz)
            .arg("-c")
            .arg(script)
            .arg(path)
            .output_within(CHILD_LIMIT)
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let in_la = python(&site.serving(), "America/Los_Angeles");
    assert_eq!(python(&site.serving(), "UTC"), in_la);
    let mut lines = in_la.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("export TIMESTAMP {exported_at}")
    );
    let columns: Vec<&str> = lines.collect();
    assert_eq!(
        columns,
        [
            "_materia_export exported_at TIMESTAMP",
            "_materia_export source_path VARCHAR",
            "_materia_export table_name VARCHAR",
            "_materia_export row_count BIGINT",
            "_materia_export content_fingerprint VARCHAR",
            "balance id BIGINT",
            "balance code VARCHAR",
            "balance value DOUBLE",
            "balance label VARCHAR",
            "notes generation INTEGER",
            "notes text VARCHAR",
        ]
    );
}

/// A release is `bin/` with `lib/libduckdb.so` beside it, found through the run path
/// `$ORIGIN/../lib`, never LD_LIBRARY_PATH. Without its library a DuckDB step cannot start, and
/// the loader says which library is missing; with it, the step runs from anywhere. (A `bundled`
/// build has DuckDB compiled in and needs no library at all.)
#[test]
fn a_release_layout_finds_its_library_beside_bin_and_fails_clearly_without_it() {
    let release = tempfile::tempdir().unwrap();
    let bin = release.path().join("bin/export-serving");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(test_support::own_bin("export-serving"), &bin).unwrap();

    let out = Command::new(&bin)
        .arg("--version")
        .env_clear()
        .output_within(CHILD_LIMIT)
        .unwrap();
    if lakehouse::loaded_library().is_none() {
        assert!(
            out.status.success(),
            "a bundled build needs no library: {out:?}"
        );
        return;
    }
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(
        stderr(&out).contains("libduckdb.so: cannot open shared object file"),
        "{}",
        stderr(&out)
    );

    let lib = release.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::copy(
        lakehouse::loaded_library().unwrap(),
        lib.join("libduckdb.so"),
    )
    .unwrap();
    let site = Site::new();
    site.write_lakehouse(1, 10);
    let out = Command::new(&bin)
        .env_clear()
        .env("LANDING_DIR", site.path("landing"))
        .env("DUCKDB_PATH", site.lakehouse())
        .env("SERVING_DUCKDB_PATH", site.serving())
        .arg("--json")
        .output_within(CHILD_LIMIT)
        .unwrap();
    let (out, json) = json_of(out);
    assert_exported(&out, &json);
}

/// (device, inode) of the published file and of each kept generation, by name.
fn inodes(site: &Site) -> ((u64, u64), Vec<(String, u64)>) {
    let kept = site.path("data/analytics.duckdb.previous");
    let mut generations: Vec<(String, u64)> = std::fs::read_dir(kept)
        .map(|d| {
            d.map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().ino(),
                )
            })
            .collect()
        })
        .unwrap_or_default();
    generations.sort();
    (snapshot(&site.serving()).0, generations)
}

fn assert_unchanged(out: &Output, json: &serde_json::Value) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    assert_eq!(json["status"], "unchanged", "{json}");
}

#[test]
fn an_unchanged_lakehouse_keeps_the_published_file_its_inode_and_its_generations() {
    let site = Site::new();
    site.write_lakehouse(1, 1_000);
    let (out, json) = site.run(&["--keep", "2"]);
    assert_exported(&out, &json);
    site.write_lakehouse(2, 1_000);
    let (out, exported) = site.run(&["--keep", "2"]);
    assert_exported(&out, &exported);
    let before = inodes(&site);
    let bytes = snapshot(&site.serving()).1;
    assert_eq!(before.1.len(), 1, "one kept generation: {before:?}");
    // A reader with the file open before the run.
    let mut reader = ServingReader::new(site.serving());
    let at_first = reader
        .with(|c| serving_reader::read_generation(c, "serving").map(|g| g.exported_at))
        .unwrap();

    for _ in 0..2 {
        let (out, json) = site.run(&["--keep", "2"]);
        assert_unchanged(&out, &json);
        assert_eq!(json["path"], site.serving().display().to_string());
        assert_eq!(json["tables"], exported["tables"]);
        assert_eq!(json["fingerprint"], exported["fingerprint"]);
        assert_eq!(
            json["exported_at"], exported["exported_at"],
            "the kept generation's"
        );
        assert_eq!(json["kept"], exported["kept"]);
        assert!(json["error"].is_null());
        // Same inode, same bytes, no new generation, nothing left in the work directory.
        assert_eq!(inodes(&site), before);
        assert_eq!(snapshot(&site.serving()).1, bytes);
        assert!(!site.work_dir().exists());
    }
    // The reader did not reopen: the file it has open is still the published one.
    let at_last = reader
        .with(|c| serving_reader::read_generation(c, "serving").map(|g| g.exported_at))
        .unwrap();
    assert_eq!((at_last, reader.opens()), (at_first, 1));

    let ledger = site.ledger();
    let statuses: Vec<&str> = ledger.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(statuses, ["success", "success", "unchanged", "unchanged"]);
    let detail = ledger[3].1.as_deref().unwrap();
    assert!(
        detail.starts_with("unchanged: kept the published"),
        "{detail}"
    );
    // The fingerprint is recorded with each run, as transform's is.
    let db = rusqlite::Connection::open(site.path("landing/.state.sqlite")).unwrap();
    let recorded: Vec<String> = db
        .prepare("SELECT input_fingerprint FROM step_runs WHERE step = 'export-serving' ORDER BY run_id DESC LIMIT 2")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(recorded, [exported["fingerprint"].as_str().unwrap(); 2]);
    let metrics =
        std::fs::read_to_string(site.path("metrics/materia_export_serving.prom")).unwrap();
    assert!(
        metrics.contains("materia_export_serving_exit_code 0\n"),
        "{metrics}"
    );
}

#[test]
fn any_change_after_unchanged_is_exported() {
    let site = Site::new();
    site.write_lakehouse(1, 1_000);
    let (out, json) = site.run(&[]);
    assert_exported(&out, &json);
    let (out, json) = site.run(&[]);
    assert_unchanged(&out, &json);

    let cases = [
        // One value, same row counts, same columns: only the content tells.
        "UPDATE sqlmesh__serving.serving__balance__1 SET label = 'x' WHERE id = 500;",
        // A NULL where there was a value.
        "UPDATE sqlmesh__serving.serving__balance__1 SET value = NULL WHERE id = 7;",
        // Two rows swapping a value: every column's multiset is the same, the rows are not.
        "UPDATE sqlmesh__serving.serving__balance__1 SET code = CASE id WHEN 1 THEN 'c002' ELSE 'c001' END WHERE id IN (1, 2);",
        // A model change: a new column.
        "ALTER TABLE serving.notes ADD COLUMN extra INTEGER DEFAULT 1;",
        // A renamed column with the same values (published with --allow-breaking below).
        "ALTER TABLE serving.notes RENAME COLUMN extra TO renamed;",
    ];
    for sql in cases {
        let conn = Connection::open(site.lakehouse()).unwrap();
        conn.execute_batch(&format!("{sql} CHECKPOINT;")).unwrap();
        drop(conn);
        let before = snapshot(&site.serving()).0;
        let (out, json) = site.run(&["--allow-breaking"]);
        assert_exported(&out, &json);
        assert_ne!(snapshot(&site.serving()).0, before, "{sql}");
        check_generation(&site.serving());
        let (out, json) = site.run(&[]);
        assert_unchanged(&out, &json);
    }
}

#[test]
fn a_deleted_replaced_or_older_published_file_is_exported_again() {
    let site = Site::new();
    site.write_lakehouse(1, 1_000);
    let (out, json) = site.run(&["--keep", "3"]);
    assert_exported(&out, &json);
    site.write_lakehouse(2, 1_000);
    let (out, json) = site.run(&["--keep", "3"]);
    assert_exported(&out, &json);
    let (out, json) = site.run(&["--keep", "3"]);
    assert_unchanged(&out, &json);

    // Deleted: exported again.
    std::fs::remove_file(site.serving()).unwrap();
    let (out, json) = site.run(&["--keep", "3"]);
    assert_exported(&out, &json);
    check_generation(&site.serving());

    // Replaced by an older generation (a rollback by hand): exported again.
    let kept = json["kept"].as_array().unwrap();
    let older = PathBuf::from(kept[0].as_str().unwrap());
    std::fs::remove_file(site.serving()).unwrap();
    std::fs::copy(&older, site.serving()).unwrap();
    let (out, json) = site.run(&["--keep", "3"]);
    assert_exported(&out, &json);
    assert_eq!(json["tables"]["balance"], 1_000 + 2 * 37);

    // Replaced by a file of the same tables but without a fingerprint (an older release's
    // layout): exported again, never trusted as unchanged.
    std::fs::remove_file(site.serving()).unwrap();
    std::fs::copy(kept[0].as_str().unwrap(), site.path("data/old.duckdb")).unwrap();
    let mut mode = std::fs::metadata(site.path("data/old.duckdb"))
        .unwrap()
        .permissions();
    mode.set_mode(0o644);
    std::fs::set_permissions(site.path("data/old.duckdb"), mode).unwrap();
    let conn = Connection::open(site.path("data/old.duckdb")).unwrap();
    conn.execute_batch(
        "ALTER TABLE serving._materia_export DROP COLUMN content_fingerprint; CHECKPOINT;",
    )
    .unwrap();
    drop(conn);
    std::fs::rename(site.path("data/old.duckdb"), site.serving()).unwrap();
    // The planted file's inode, compared while it exists: the new generation is written
    // before the planted file is replaced, so it cannot reuse that inode. (The inode of the
    // file removed above may be reused by any later file.)
    let planted = snapshot(&site.serving()).0;
    let (out, json) = site.run(&["--keep", "3"]);
    assert_exported(&out, &json);
    assert_ne!(snapshot(&site.serving()).0, planted);
    let (out, json) = site.run(&["--keep", "3"]);
    assert_unchanged(&out, &json);
    let statuses: Vec<String> = site.ledger().into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(
        statuses,
        [
            "success",
            "success",
            "unchanged",
            "success",
            "success",
            "success",
            "unchanged"
        ]
    );
}
