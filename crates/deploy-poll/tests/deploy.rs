//! End to end: the real `deploy-poll` binary against real git repositories (a bare origin,
//! tags pushed during the test), real sops + age for the secrets, SSH-signed tags.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use test_support::{stderr, tool};

const BIN: &str = env!("CARGO_BIN_EXE_deploy-poll");

fn check(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what}: {}", stderr(&out));
    out
}

fn git(dir: &Path, args: &[&str]) -> Output {
    check(
        Command::new("git")
            .args([
                "-c",
                "user.name=Release Bot",
                "-c",
                "user.email=release@example.com",
            ])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .output()
            .unwrap(),
        &format!("git {args:?}"),
    )
}

/// Origin, a developer's working copy, the server's deploy root and an age key.
struct World {
    dir: tempfile::TempDir,
    recipient: String,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let w = World {
            recipient: String::new(),
            dir,
        };
        let keygen = check(
            Command::new("age-keygen")
                .arg("-o")
                .arg(w.path("server.agekey"))
                .output()
                .unwrap(),
            "age-keygen",
        );
        let recipient = String::from_utf8_lossy(&keygen.stderr)
            .lines()
            .find_map(|l| l.strip_prefix("Public key: ").map(str::to_owned))
            .unwrap();
        check(
            Command::new("age-keygen")
                .arg("-o")
                .arg(w.path("wrong.agekey"))
                .output()
                .unwrap(),
            "age-keygen",
        );
        let w = World { recipient, ..w };
        std::fs::create_dir_all(w.path("work")).unwrap();
        git(w.dir.path(), &["init", "--quiet", "--bare", "origin.git"]);
        git(&w.path("work"), &["init", "--quiet", "-b", "main"]);
        git(
            &w.path("work"),
            &[
                "remote",
                "add",
                "origin",
                w.path("origin.git").to_str().unwrap(),
            ],
        );
        w
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Commits a release whose build.sh and health.sh do what is asked, with an encrypted
    /// .env.prod.sops, tags it (`sign`: with this SSH key) and pushes it.
    fn release(&self, tag: &str, build: &str, health: &str, sign: Option<&Path>) {
        let work = self.path("work");
        std::fs::write(work.join("VERSION"), tag).unwrap();
        std::fs::write(
            work.join("build.sh"),
            format!(
                "echo {tag} >> '{}'\n{build}\nmkdir -p bin && cp VERSION bin/built\n",
                self.path("builds.log").display()
            ),
        )
        .unwrap();
        std::fs::write(work.join("health.sh"), format!("{health}\n")).unwrap();
        let plain = self.path("plain.env");
        std::fs::write(
            &plain,
            format!("SECRET_TOKEN=token-of-{tag}\nDUCKDB_PATH=/data/x\n"),
        )
        .unwrap();
        let enc = check(
            Command::new(tool("sops"))
                .args([
                    "--encrypt",
                    "--age",
                    &self.recipient,
                    "--input-type",
                    "dotenv",
                    "--output-type",
                    "dotenv",
                ])
                .arg(&plain)
                // Outside the repository: its .sops.yaml has no rule for this file.
                .current_dir(self.dir.path())
                .env_clear()
                .output()
                .unwrap(),
            "sops --encrypt",
        );
        std::fs::write(work.join(".env.prod.sops"), enc.stdout).unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "--quiet", "-m", tag]);
        match sign {
            Some(key) => {
                git(
                    &work,
                    &[
                        "-c",
                        "gpg.format=ssh",
                        "-c",
                        &format!("user.signingkey={}", key.display()),
                        "tag",
                        "-s",
                        "-m",
                        tag,
                        tag,
                    ],
                );
            }
            None => {
                git(&work, &["tag", "-a", "-m", tag, tag]);
            }
        }
        git(&work, &["push", "--quiet", "origin", "main", "--tags"]);
    }

    /// The server's clone, made once.
    fn root(&self) -> PathBuf {
        let root = self.path("opt");
        if !root.join("repo").exists() {
            std::fs::create_dir_all(&root).unwrap();
            git(
                &root,
                &[
                    "clone",
                    "--quiet",
                    self.path("origin.git").to_str().unwrap(),
                    "repo",
                ],
            );
        }
        root
    }

    fn command(&self, extra: &[&str]) -> Command {
        let root = self.root();
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.dir.path())
            .env("STATE_DB", self.path("state.sqlite"))
            .env("MATERIA_SOPS", tool("sops"))
            .env("SOPS_AGE_KEY_FILE", self.path("server.agekey"))
            .args(["--root", root.to_str().unwrap(), "--once", "--json"])
            .args(["--build-cmd", "sh build.sh", "--health-cmd", "sh health.sh"])
            .args([
                "--restart-cmd",
                &format!(
                    "echo restart $(cat VERSION) >> '{}'",
                    self.path("restarts.log").display()
                ),
            ])
            .args(extra);
        cmd
    }

    fn poll(&self, extra: &[&str]) -> (Output, serde_json::Value) {
        let out = self.command(extra).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let json = test_support::json_line(&out);
        assert!(!text.contains("token-of-"), "a secret reached --json");
        assert!(
            !stderr(&out).contains("token-of-"),
            "a secret reached the log"
        );
        (out, json)
    }

    fn current(&self) -> Option<String> {
        std::fs::read_link(self.root().join("current"))
            .ok()
            .map(|p| p.display().to_string())
    }

    fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(file))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn ledger(&self) -> Vec<(String, String)> {
        let db = rusqlite::Connection::open(self.path("state.sqlite")).unwrap();
        let mut stmt = db
            .prepare("SELECT status, coalesce(detail, '') || coalesce(error, '') FROM step_runs WHERE step = 'deploy-poll' ORDER BY run_id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

const OK: &str = "true";
const FAIL: &str = "echo 'health: supervisor not active' >&2; exit 1";

#[test]
fn first_deploy_then_up_to_date_with_secrets_decrypted_0600() {
    let w = World::new();
    w.release("v1.0.0", OK, OK, None);
    let (out, json) = w.poll(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json["status"], "deployed");
    assert_eq!(json["tag"], "v1.0.0");
    assert_eq!(json["previous"], serde_json::Value::Null);
    assert_eq!(w.current().as_deref(), Some("releases/v1.0.0"));
    let env = w.root().join("current/.env");
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        "SECRET_TOKEN=token-of-v1.0.0\nDUCKDB_PATH=/data/x\n"
    );
    assert_eq!(
        std::fs::metadata(&env).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(w.lines("restarts.log"), ["restart v1.0.0"]);

    // A tag outside --tag-pattern (default v*) is not a release, however new.
    w.release("nightly-2", OK, OK, None);
    let (out, json) = w.poll(&[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json["status"], "up-to-date");
    assert_eq!(json["tag"], "v1.0.0");
    assert_eq!(w.lines("builds.log"), ["v1.0.0"], "nothing rebuilt");
    let statuses: Vec<String> = w.ledger().into_iter().map(|(s, _)| s).collect();
    assert_eq!(statuses, ["success", "unchanged"]);
}

#[test]
fn a_failed_build_keeps_the_previous_release_and_the_tag_is_never_retried() {
    let w = World::new();
    w.release("v1.9.0", OK, OK, None);
    assert_eq!(w.poll(&[]).1["status"], "deployed");
    // v1.10.0 is newer than v1.9.0 (version order, not text order), and does not build.
    w.release(
        "v1.10.0",
        "echo 'error: linking failed' >&2; exit 2",
        OK,
        None,
    );
    let (out, json) = w.poll(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json["status"], "failed");
    assert_eq!(json["tag"], "v1.10.0");
    assert_eq!(json["previous"], "v1.9.0");
    assert!(
        json["error"].as_str().unwrap().contains("linking failed"),
        "{json}"
    );
    assert_eq!(w.current().as_deref(), Some("releases/v1.9.0"));
    assert_eq!(
        w.lines("restarts.log"),
        ["restart v1.9.0"],
        "nothing restarted"
    );

    let (out, json) = w.poll(&[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json["status"], "up-to-date");
    assert_eq!(
        w.lines("builds.log"),
        ["v1.9.0", "v1.10.0"],
        "the bad tag was retried"
    );

    // A newer good tag still deploys.
    w.release("v1.11.0", OK, OK, None);
    assert_eq!(w.poll(&[]).1["status"], "deployed");
    assert_eq!(w.current().as_deref(), Some("releases/v1.11.0"));

    // Old release directories go, beyond --keep-releases; current and previous stay.
    for tag in ["v1.12.0", "v1.13.0"] {
        w.release(tag, OK, OK, None);
        assert_eq!(w.poll(&["--keep-releases", "2"]).1["status"], "deployed");
    }
    let mut left: Vec<String> = std::fs::read_dir(w.root().join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["v1.12.0", "v1.13.0"]);
}

#[test]
fn a_failed_health_check_rolls_back_and_restarts_the_previous_release() {
    let w = World::new();
    w.release("v1", OK, OK, None);
    assert_eq!(w.poll(&[]).1["status"], "deployed");
    w.release("v2", OK, FAIL, None);
    let (out, json) = w.poll(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json["status"], "rolled-back");
    assert_eq!(json["tag"], "v2");
    assert_eq!(json["previous"], "v1");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("supervisor not active"),
        "{json}"
    );
    assert_eq!(w.current().as_deref(), Some("releases/v1"));
    assert_eq!(
        w.lines("restarts.log"),
        ["restart v1", "restart v2", "restart v1"]
    );

    let (_, json) = w.poll(&[]);
    assert_eq!(json["status"], "up-to-date");
    assert_eq!(w.lines("restarts.log").len(), 3, "v2 was tried again");
    let ledger = w.ledger();
    assert_eq!(ledger[1].0, "failed");
    assert!(ledger[1].1.contains("rolled-back v2"), "{ledger:?}");
}

#[test]
fn require_signed_refuses_an_unsigned_tag_and_accepts_an_ssh_signed_one() {
    let w = World::new();
    let key = w.path("signing");
    check(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "release", "-f"])
            .arg(&key)
            .output()
            .unwrap(),
        "ssh-keygen",
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let allowed = w.path("allowed_signers");
    std::fs::write(
        &allowed,
        format!("release@example.com namespaces=\"git\" {public}"),
    )
    .unwrap();
    let root = w.root();
    git(&root.join("repo"), &["config", "gpg.format", "ssh"]);
    git(
        &root.join("repo"),
        &[
            "config",
            "gpg.ssh.allowedSignersFile",
            allowed.to_str().unwrap(),
        ],
    );

    w.release("v1", OK, OK, None);
    let (out, json) = w.poll(&["--require-signed"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json["status"], "failed");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("no signature git verify-tag accepts"),
        "{json}"
    );
    assert_eq!(w.current(), None);
    assert!(
        w.lines("builds.log").is_empty(),
        "an unsigned tag was built"
    );

    w.release("v2", OK, OK, Some(&key));
    let (out, json) = w.poll(&["--require-signed"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json["status"], "deployed");
    assert_eq!(w.current().as_deref(), Some("releases/v2"));
}

#[test]
fn an_unreachable_origin_fails_and_changes_nothing() {
    let w = World::new();
    w.release("v1", OK, OK, None);
    assert_eq!(w.poll(&[]).1["status"], "deployed");
    w.release("v2", OK, OK, None);
    git(
        &w.root().join("repo"),
        &[
            "remote",
            "set-url",
            "origin",
            w.path("gone.git").to_str().unwrap(),
        ],
    );
    let (out, json) = w.poll(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json["status"], "failed");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("cannot fetch release tags"),
        "{json}"
    );
    assert_eq!(w.current().as_deref(), Some("releases/v1"));
    assert!(!w.root().join("releases/v2").exists());
}

#[test]
fn a_wrong_age_key_fails_clearly_and_leaves_the_running_env_untouched() {
    let w = World::new();
    w.release("v1", OK, OK, None);
    assert_eq!(w.poll(&[]).1["status"], "deployed");
    let env = w.root().join("current/.env");
    let before = std::fs::read(&env).unwrap();
    w.release("v2", OK, OK, None);
    let out = w
        .command(&[])
        .env("SOPS_AGE_KEY_FILE", w.path("wrong.agekey"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("cannot decrypt the secrets of v2"),
        "{json}"
    );
    assert_eq!(w.current().as_deref(), Some("releases/v1"));
    assert_eq!(std::fs::read(&env).unwrap(), before);
    assert_eq!(
        std::fs::metadata(&env).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!w.root().join("releases/v2/.env").exists());
}

#[test]
fn kill_9_during_a_deploy_leaves_current_on_a_complete_release() {
    let w = World::new();
    w.release("v1", OK, OK, None);
    assert_eq!(w.poll(&[]).1["status"], "deployed");
    w.release("v2", "sleep 2", OK, None);
    let mut child = w
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !w.lines("builds.log").contains(&"v2".to_owned()) {
        assert!(Instant::now() < deadline, "the build did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(w.current().as_deref(), Some("releases/v1"));
    assert!(w.root().join("current/.materia-built").exists());
    assert!(w.root().join("current/bin/built").exists());

    let (out, json) = w.poll(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json["status"], "deployed");
    assert_eq!(w.current().as_deref(), Some("releases/v2"));
    let ledger = w.ledger();
    assert!(ledger[1].1.starts_with("interrupted"), "{ledger:?}");
}

#[test]
fn a_root_without_a_clone_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .env_clear()
        .env("STATE_DB", dir.path().join("s.sqlite"))
        .args(["--root", dir.path().to_str().unwrap(), "--once", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("bootstrap"));
}
