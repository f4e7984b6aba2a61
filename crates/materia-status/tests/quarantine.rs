//! `materia-status quarantine` and `unquarantine` against a real landing store and state DB:
//! a file held, listed, and released, never touched; every bad name or reason refused with
//! exit 2 and nothing written.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use landing_store::{ContentAddress, LandingStore, Published};
use run_ledger::Ledger;
use test_support::CommandExt;

struct Site {
    dir: tempfile::TempDir,
    file: landing_store::LandingFile,
}

impl Site {
    /// A landing store with one psd file, and a state DB.
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let store = LandingStore::open(&dir.path().join("landing")).unwrap();
        let mut temp = store.create_temp("t", "").unwrap();
        std::io::Write::write_all(temp.file(), b"not really gzip").unwrap();
        let address = ContentAddress::parse(&"ab".repeat(32)).unwrap();
        let file = match store.publish(temp, "psd", 2026, 1, &address).unwrap() {
            Published::New(f) | Published::AlreadyPresent(f) => f,
        };
        drop(Ledger::open(&dir.path().join("landing/.state.sqlite")).unwrap());
        Site { dir, file }
    }

    fn landing(&self) -> PathBuf {
        self.dir.path().join("landing")
    }

    fn state_db(&self) -> PathBuf {
        self.landing().join(".state.sqlite")
    }

    fn relative(&self) -> String {
        self.file.relative.display().to_string()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(test_support::own_bin("materia-status"))
            .env_clear()
            .env("LANDING_DIR", self.landing())
            .args(args)
            .output_within(Duration::from_secs(60))
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> (Option<i32>, serde_json::Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        (out.status.code(), test_support::json_line(&out))
    }

    fn held(&self) -> Vec<String> {
        let (code, json) = self.json(&[]);
        assert_eq!(code, Some(0), "{json}");
        json["quarantined"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["path"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The landing file's bytes, mode and modification time.
    fn file_state(&self) -> (Vec<u8>, u32, i64) {
        let m = std::fs::metadata(&self.file.path).unwrap();
        (
            std::fs::read(&self.file.path).unwrap(),
            m.mode(),
            m.mtime_nsec(),
        )
    }
}

#[test]
fn a_file_is_held_listed_and_released_and_never_touched() {
    let site = Site::new();
    let before = site.file_state();
    let (code, json) = site.json(&[
        "quarantine",
        &site.relative(),
        "--reason",
        "Value=n/a in row 7 (landed by 0.3)",
    ]);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["status"], "quarantined");
    assert_eq!(json["path"], site.relative().as_str());
    assert_eq!(json["sha256"], "ab".repeat(32).as_str());
    assert_eq!(json["dataset"], "psd");
    assert_eq!(json["reason"], "Value=n/a in row 7 (landed by 0.3)");
    assert_eq!(site.held(), [site.relative()]);

    // The table says so, with the reason and how to release it.
    let out = site.run(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 landing file(s) quarantined")
            && text.contains(&format!(
                "  {}  since {}: Value=n/a in row 7 (landed by 0.3)",
                site.relative(),
                json["quarantined_at"].as_str().unwrap()
            ))
            && text.contains("materia-status unquarantine"),
        "{text}"
    );

    // Named again, by its sha256: held already, the first reason stands.
    let (code, again) = site.json(&["quarantine", &"ab".repeat(32), "--reason", "other"]);
    assert_eq!(code, Some(0), "{again}");
    assert_eq!(again["status"], "already-quarantined");
    assert_eq!(again["reason"], json["reason"]);
    assert_eq!(again["quarantined_at"], json["quarantined_at"]);

    // Released by its absolute path, through a symbolic link to the landing directory.
    let link = site.dir.path().join("link");
    std::os::unix::fs::symlink(site.landing(), &link).unwrap();
    let by_link = link.join(&site.file.relative);
    let (code, released) = site.json(&[
        "unquarantine",
        by_link.to_str().unwrap(),
        "--reason",
        "upstream re-issued it",
    ]);
    assert_eq!(code, Some(0), "{released}");
    assert_eq!(released["status"], "released");
    assert_eq!(released["reason"], json["reason"]);
    assert!(released["released_at"].is_string());
    assert!(site.held().is_empty());
    let (code, twice) = site.json(&["unquarantine", &site.relative()]);
    assert_eq!(code, Some(0), "{twice}");
    assert_eq!(twice["status"], "not-quarantined");

    assert_eq!(
        site.file_state(),
        before,
        "the landing file is never touched"
    );
    let history: i64 = rusqlite_count(&site.state_db());
    assert_eq!(history, 1, "a release keeps the row");
}

fn rusqlite_count(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM landing_quarantine WHERE released_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn bad_names_and_reasons_are_refused_with_exit_2_and_nothing_written() {
    let site = Site::new();
    let outside = site.dir.path().join("elsewhere.csv.gzip");
    std::fs::write(&outside, b"x").unwrap();
    let tmp_file = site.landing().join(".tmp/stray");
    std::fs::create_dir_all(tmp_file.parent().unwrap()).unwrap();
    std::fs::write(&tmp_file, b"x").unwrap();
    let missing = "cd".repeat(32);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "quarantine".into(),
                missing.clone(),
                "--reason".into(),
                "r".into(),
            ],
            "no landing file with content address",
        ),
        (
            vec![
                "quarantine".into(),
                format!("psd/2026/02/{missing}.csv.gzip"),
                "--reason".into(),
                "r".into(),
            ],
            "is not a landing file",
        ),
        (
            vec![
                "quarantine".into(),
                outside.display().to_string(),
                "--reason".into(),
                "r".into(),
            ],
            "is not a landing file",
        ),
        (
            vec![
                "quarantine".into(),
                tmp_file.display().to_string(),
                "--reason".into(),
                "r".into(),
            ],
            "is not a landing file",
        ),
        (
            vec![
                "quarantine".into(),
                "../../etc/passwd".into(),
                "--reason".into(),
                "r".into(),
            ],
            "is not a landing file",
        ),
        (
            vec![
                "quarantine".into(),
                site.relative(),
                "--reason".into(),
                "  ".into(),
            ],
            "--reason must say why",
        ),
        (
            vec![
                "quarantine".into(),
                site.relative(),
                "--reason".into(),
                "two\nlines".into(),
            ],
            "one line",
        ),
        (
            vec!["unquarantine".into(), missing],
            "no landing file with content address",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["--json"];
        all.extend(args.iter().map(String::as_str));
        let out = site.run(&all);
        let json = test_support::json_line(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {json}");
        assert_eq!(json["status"], "failed", "{args:?}");
        assert!(
            json["error"].as_str().unwrap().contains(want),
            "{args:?}: {json}"
        );
    }
    // Usage errors clap reports: no reason at all, a health-check flag on a subcommand.
    for args in [
        vec!["quarantine", "x"],
        vec![
            "--max-age",
            "transform=1h",
            "quarantine",
            "x",
            "--reason",
            "r",
        ],
    ] {
        let out = site.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!test_support::stderr(&out).is_empty(), "{args:?}");
    }
    // With --json, the health-check flag on a subcommand still gives its JSON line.
    let (code, json) = site.json(&[
        "--max-age",
        "transform=1h",
        "quarantine",
        &site.relative(),
        "--reason",
        "r",
    ]);
    assert_eq!(code, Some(2), "{json}");
    assert_eq!(json["status"], "failed");
    assert!(
        json["error"].as_str().unwrap().contains("--max-age"),
        "{json}"
    );

    // A mistyped landing directory: refused, and nothing created there.
    let typo = site.dir.path().join("landnig");
    let (code, json) = site.json(&[
        "--landing-dir",
        typo.to_str().unwrap(),
        "--state-db",
        site.state_db().to_str().unwrap(),
        "quarantine",
        &"ab".repeat(32),
        "--reason",
        "r",
    ]);
    assert_eq!(code, Some(2), "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("no landing directory"),
        "{json}"
    );
    assert!(!typo.exists(), "a mistyped --landing-dir was created");
    assert!(site.held().is_empty());

    // No state DB: refused, and none created.
    let other = tempfile::tempdir().unwrap();
    let db = other.path().join("state.sqlite");
    let out = site.run(&[
        "--state-db",
        db.to_str().unwrap(),
        "quarantine",
        &site.relative(),
        "--reason",
        "r",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(test_support::stderr(&out).contains("no state DB"));
    assert!(!db.exists());
}

#[test]
fn a_state_db_of_another_user_is_not_written() {
    // root (as `sudo`) writing the service user's state DB could leave SQLite files the
    // service then cannot open.
    if !test_support::is_root() {
        test_support::skip("needs root to give the state DB to another user");
        return;
    }
    let site = Site::new();
    std::os::unix::fs::chown(site.state_db(), Some(65534), Some(65534)).unwrap();
    let out = site.run(&["quarantine", &site.relative(), "--reason", "r"]);
    assert_eq!(out.status.code(), Some(2));
    let err = test_support::stderr(&out);
    assert!(err.contains("belongs to uid 65534"), "{err}");
    std::os::unix::fs::chown(site.state_db(), Some(0), Some(0)).unwrap();
    assert!(site.held().is_empty());
}

#[test]
fn a_content_address_in_two_datasets_is_named_by_its_path() {
    let site = Site::new();
    // The same bytes landed for a second dataset.
    let store = LandingStore::open(&site.landing()).unwrap();
    let mut temp = store.create_temp("t", "").unwrap();
    std::io::Write::write_all(temp.file(), b"not really gzip").unwrap();
    let other = match store
        .publish(temp, "toy", 2026, 1, &site.file.address)
        .unwrap()
    {
        Published::New(f) | Published::AlreadyPresent(f) => f,
    };
    let sha = site.file.address.as_str().to_owned();
    let (code, json) = site.json(&["quarantine", &sha, "--reason", "r"]);
    assert_eq!(code, Some(2), "{json}");
    let error = json["error"].as_str().unwrap();
    assert!(error.contains("2 landing files"), "{json}");
    assert!(error.contains(&site.relative()), "{json}");
    assert!(
        error.contains(&other.relative.display().to_string()),
        "{json}"
    );
    assert!(site.held().is_empty());

    // Both held by path; then the content address is ambiguous for a release too.
    let other_relative = other.relative.display().to_string();
    for path in [site.relative(), other_relative.clone()] {
        let (code, json) = site.json(&["quarantine", &path, "--reason", "r"]);
        assert_eq!(code, Some(0), "{json}");
        assert_eq!(json["status"], "quarantined");
    }
    let (code, json) = site.json(&["unquarantine", &sha]);
    assert_eq!(code, Some(2), "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("2 quarantined files"),
        "{json}"
    );
    assert_eq!(site.held().len(), 2);
    let (code, json) = site.json(&["unquarantine", &other_relative]);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["status"], "released");
    assert_eq!(site.held(), vec![site.relative()]);
}

#[test]
fn a_held_file_gone_from_the_store_can_still_be_released_by_path() {
    for by_absolute_path in [false, true] {
        let site = Site::new();
        let (code, json) = site.json(&["quarantine", &site.relative(), "--reason", "r"]);
        assert_eq!(code, Some(0), "{json}");
        // The file lost (an operator moved it away; landing files are otherwise immutable).
        std::fs::remove_file(&site.file.path).unwrap();
        let name = if by_absolute_path {
            site.file.path.display().to_string()
        } else {
            site.relative()
        };
        let (code, json) = site.json(&["unquarantine", &name, "--reason", "file gone"]);
        assert_eq!(code, Some(0), "{name}: {json}");
        assert_eq!(json["status"], "released", "{name}");
        assert_eq!(json["path"], site.relative().as_str());
        assert!(site.held().is_empty(), "{name}");
        // Released once: a second release changes nothing and says so.
        let (code, json) = site.json(&["unquarantine", &site.relative()]);
        assert_eq!(
            (code, &json["status"]),
            (Some(2), &"failed".into()),
            "{json}"
        );
    }
}
