//! End to end: the real `deploy-poll` binary against real git repositories (a bare origin,
//! tags pushed during the test), real sops + age for the secrets, SSH-signed tags.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use test_support::{CommandExt, stderr, tool};

/// Bound on every child process of these tests: a hang fails the test instead of the run.
const CHILD_LIMIT: Duration = Duration::from_secs(300);

/// The binary under test, where the test runner says it is.
fn bin() -> PathBuf {
    test_support::own_bin("deploy-poll")
}

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
            .output_within(CHILD_LIMIT)
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
                .output_within(CHILD_LIMIT)
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
                .output_within(CHILD_LIMIT)
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
                .output_within(CHILD_LIMIT)
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
        self.command_restarting("true", extra)
    }

    /// deploy-poll whose restart command logs the release it runs in, then runs `then`.
    fn command_restarting(&self, then: &str, extra: &[&str]) -> Command {
        let root = self.root();
        let mut cmd = Command::new(bin());
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.dir.path())
            .env("STATE_DB", self.path("state.sqlite"))
            .env("MATERIA_SOPS", tool("sops"))
            .env("MATERIA_ALLOWED_SIGNERS", self.path("allowed_signers"))
            .env("SOPS_AGE_KEY_FILE", self.path("server.agekey"))
            .args(["--root", root.to_str().unwrap(), "--once", "--json"])
            .args(["--build-cmd", "sh build.sh", "--health-cmd", "sh health.sh"])
            .args([
                "--restart-cmd",
                &format!(
                    "echo restart $(cat VERSION) >> '{}' && {then}",
                    self.path("restarts.log").display()
                ),
            ])
            .args(extra);
        cmd
    }

    fn poll(&self, extra: &[&str]) -> (Output, serde_json::Value) {
        self.poll_with(self.command(extra))
    }

    fn poll_with(&self, mut cmd: Command) -> (Output, serde_json::Value) {
        let out = cmd.output_within(CHILD_LIMIT).unwrap();
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
            .output_within(CHILD_LIMIT)
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
        .output_within(CHILD_LIMIT)
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
    let out = Command::new(bin())
        .env_clear()
        .env("STATE_DB", dir.path().join("s.sqlite"))
        .args(["--root", dir.path().to_str().unwrap(), "--once", "--json"])
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("bootstrap"));
}

impl World {
    fn bad_tags(&self) -> Vec<String> {
        let db = rusqlite::Connection::open(self.path("state.sqlite")).unwrap();
        let mut stmt = db
            .prepare("SELECT tag FROM deploy_bad_tags ORDER BY tag")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A new SSH signing key `name` (ed25519, no passphrase).
    fn signing_key(&self, name: &str) -> PathBuf {
        let key = self.path(name);
        check(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(&key)
                .output_within(CHILD_LIMIT)
                .unwrap(),
            "ssh-keygen",
        );
        key
    }

    /// The server's clone trusts exactly these keys for release@example.com.
    fn trust(&self, keys: &[&Path]) {
        let allowed = self.path("allowed_signers");
        let lines: String = keys
            .iter()
            .map(|k| {
                let public = std::fs::read_to_string(k.with_extension("pub")).unwrap();
                format!("release@example.com namespaces=\"git\" {public}")
            })
            .collect();
        std::fs::write(&allowed, lines).unwrap();
        let repo = self.root().join("repo");
        git(&repo, &["config", "gpg.format", "ssh"]);
        git(
            &repo,
            &[
                "config",
                "gpg.ssh.allowedSignersFile",
                allowed.to_str().unwrap(),
            ],
        );
    }

    /// Waits (bounded) until `cond` holds.
    fn wait_for(&self, what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pid written into `file` by a release's script, once it is there whole.
    fn pid_in(&self, file: &str) -> u32 {
        let path = self.path(file);
        self.wait_for(file, || {
            std::fs::read_to_string(&path).is_ok_and(|p| p.ends_with('\n'))
        });
        std::fs::read_to_string(&path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// SIGKILL to the whole process group of `pid` (deploy-poll starts each child in a group
    /// of its own), as if the deploy had been killed with everything it started.
    fn kill_group_of(&self, pid: u32) {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let pgid = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(2)
            .unwrap();
        let out = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .output_within(CHILD_LIMIT)
            .unwrap();
        assert!(out.status.success(), "kill -{pgid}: {}", stderr(&out));
    }
}

#[test]
fn regression_a_tag_that_is_not_one_plain_path_component_is_never_deployed() {
    // v20/hotfix matches v* and is newer than v1; as a release directory it would be `v20/`,
    // `current` would read back as `hotfix`, and it would be redeployed on every poll.
    let w = World::new();
    w.release("v1", OK, OK, None);
    assert_eq!(w.poll(&[]).1["status"], "deployed");
    w.release("v20/hotfix", OK, OK, None);
    for _ in 0..2 {
        let (out, json) = w.poll(&[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(json["status"], "up-to-date", "{json}");
        assert_eq!(json["tag"], "v1");
        assert!(
            stderr(&out).contains("one plain path component"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(w.current().as_deref(), Some("releases/v1"));
    assert_eq!(w.lines("restarts.log"), ["restart v1"], "nothing restarted");
    assert!(!w.root().join("releases/v20").exists());
    // A good newer tag still deploys past it.
    w.release("v21", OK, OK, None);
    assert_eq!(w.poll(&[]).1["status"], "deployed");
    assert_eq!(w.current().as_deref(), Some("releases/v21"));
}

#[test]
fn regression_require_signed_refuses_a_signed_tag_republished_under_another_name() {
    let w = World::new();
    let key = w.signing_key("signing");
    w.trust(&[&key]);
    w.release("v1", OK, OK, Some(&key));
    assert_eq!(w.poll(&["--require-signed"]).1["status"], "deployed");
    // Whoever controls origin publishes v1's signed tag object as refs/tags/v999: git
    // verify-tag says "Good signature", because the ref's name is not what was signed.
    git(
        &w.path("work"),
        &["push", "--quiet", "origin", "refs/tags/v1:refs/tags/v999"],
    );
    let (out, json) = w.poll(&["--require-signed"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json["status"], "failed");
    assert_eq!(json["tag"], "v999");
    let error = json["error"].as_str().unwrap();
    assert!(error.contains("signed tag object named \"v1\""), "{error}");
    assert_eq!(w.current().as_deref(), Some("releases/v1"));
    assert!(!w.root().join("releases/v999/.materia-built").exists());
    assert_eq!(w.bad_tags(), ["v999"]);
    assert_eq!(w.lines("builds.log"), ["v1"], "the renamed tag was built");
}

#[test]
fn require_signed_refuses_a_tag_signed_by_a_key_outside_allowed_signers() {
    let w = World::new();
    let trusted = w.signing_key("trusted");
    let stranger = w.signing_key("stranger");
    w.trust(&[&trusted]);
    w.release("v1", OK, OK, Some(&stranger));
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
        "a stranger's tag was built"
    );
    w.release("v2", OK, OK, Some(&trusted));
    assert_eq!(w.poll(&["--require-signed"]).1["status"], "deployed");
    assert_eq!(w.current().as_deref(), Some("releases/v2"));
}

#[test]
fn a_custom_tag_pattern_and_one_starting_with_a_dash_which_is_no_git_option() {
    let w = World::new();
    // The server's clone is made at v5's commit: `git tag --list --points-at=HEAD` lists v5.
    w.release("v5", OK, OK, None);
    w.root();
    w.release("release-2", OK, OK, None);
    w.release("release-10", OK, OK, None);
    let (out, json) = w.poll(&["--tag-pattern", "release-*"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json["status"], "deployed");
    assert_eq!(
        json["tag"], "release-10",
        "version order within the pattern"
    );
    assert_eq!(w.lines("builds.log"), ["release-10"]);

    // Read as an option, this pattern would list v5 (at HEAD) and deploy it.
    for pattern in ["--tag-pattern=--points-at=HEAD", "--tag-pattern=-*"] {
        let (out, json) = w.poll(&[pattern]);
        assert_eq!(out.status.code(), Some(0), "{pattern}: {}", stderr(&out));
        assert_eq!(json["status"], "up-to-date", "{pattern}: {json}");
        assert_eq!(json["tag"], "release-10");
    }
    let (out, json) = w.poll(&["--tag-pattern", "-x"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json["status"], "up-to-date");
    assert_eq!(w.current().as_deref(), Some("releases/release-10"));
    assert_eq!(w.lines("builds.log"), ["release-10"], "v5 was built");
}

#[test]
fn a_failing_restart_command_rolls_back_and_restarts_the_previous_release() {
    let w = World::new();
    w.release("v1", OK, OK, None);
    let fails_for_v2 =
        "[ \"$(cat VERSION)\" != v2 ] || { echo 'restart: unit failed' >&2; exit 1; }";
    assert_eq!(
        w.poll_with(w.command_restarting(fails_for_v2, &[])).1["status"],
        "deployed"
    );
    w.release("v2", OK, OK, None);
    let (out, json) = w.poll_with(w.command_restarting(fails_for_v2, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json["status"], "rolled-back");
    assert!(
        json["error"].as_str().unwrap().contains("unit failed"),
        "{json}"
    );
    assert_eq!(w.current().as_deref(), Some("releases/v1"));
    assert_eq!(
        w.lines("restarts.log"),
        ["restart v1", "restart v2", "restart v1"]
    );
    assert_eq!(w.bad_tags(), ["v2"]);
    let (_, json) = w.poll_with(w.command_restarting(fails_for_v2, &[]));
    assert_eq!(json["status"], "up-to-date");
    assert_eq!(w.lines("restarts.log").len(), 3, "v2 was tried again");
}

#[test]
fn a_wrong_age_key_marks_the_tag_bad_until_an_operator_clears_it() {
    // The tag's .env.prod.sops names its recipients: one the server cannot decrypt was not
    // encrypted to the server's key (`sops updatekeys` forgotten), so the tag is bad. A new tag
    // fixes it; after fixing the server's key instead, delete the row (README).
    let w = World::new();
    w.release("v1", OK, OK, None);
    assert_eq!(w.poll(&[]).1["status"], "deployed");
    w.release("v2", OK, OK, None);
    let mut wrong = w.command(&[]);
    wrong.env("SOPS_AGE_KEY_FILE", w.path("wrong.agekey"));
    let (out, json) = w.poll_with(wrong);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json["status"], "failed");
    assert_eq!(w.bad_tags(), ["v2"]);
    let (_, json) = w.poll(&[]);
    assert_eq!(
        json["status"], "up-to-date",
        "not retried with the right key"
    );
    let db = rusqlite::Connection::open(w.path("state.sqlite")).unwrap();
    db.execute("DELETE FROM deploy_bad_tags WHERE tag = 'v2'", [])
        .unwrap();
    assert_eq!(w.poll(&[]).1["status"], "deployed");
    assert_eq!(w.current().as_deref(), Some("releases/v2"));
}

/// A release whose health check, on its first run only, records its process group and hangs
/// (the test kills the deploy then); later runs pass (`then_ok`) or fail.
fn health_hangs_once(w: &World, then_ok: bool) -> String {
    format!(
        "if [ -f '{seen}' ]; then {then}; fi\ntouch '{seen}'\necho $$ > '{pid}'\nsleep 30",
        seen = w.path("health.seen").display(),
        pid = w.path("health.pid").display(),
        then = if then_ok { "exit 0" } else { FAIL },
    )
}

fn kill_during_health_check(w: &World) {
    let mut child = w
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = w.pid_in("health.pid");
    assert_eq!(w.current().as_deref(), Some("releases/v2"));
    child.kill().unwrap();
    child.wait().unwrap();
    w.kill_group_of(pid);
}

#[test]
fn regression_kill_9_after_the_switch_is_settled_by_the_next_poll_deployed() {
    let w = World::new();
    w.release("v1", OK, OK, None);
    assert_eq!(w.poll(&[]).1["status"], "deployed");
    w.release("v2", OK, &health_hangs_once(&w, true), None);
    kill_during_health_check(&w);
    assert_eq!(
        w.current().as_deref(),
        Some("releases/v2"),
        "switched, unverified"
    );

    // Before: "up-to-date", v2 current and never verified.
    let (out, json) = w.poll(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json["status"], "deployed", "{json}");
    assert_eq!(json["tag"], "v2");
    assert_eq!(json["previous"], "v1");
    assert!(stderr(&out).contains("interrupted after the switch"));
    assert_eq!(
        w.lines("restarts.log"),
        ["restart v1", "restart v2", "restart v2"]
    );
    assert!(!w.root().join(".deploy-pending").exists());
    assert_eq!(w.poll(&[]).1["status"], "up-to-date");
    let ledger = w.ledger();
    assert!(ledger[1].1.starts_with("interrupted"), "{ledger:?}");
}

#[test]
fn regression_kill_9_after_the_switch_then_a_failing_health_check_rolls_back() {
    let w = World::new();
    w.release("v1", OK, OK, None);
    assert_eq!(w.poll(&[]).1["status"], "deployed");
    w.release("v2", OK, &health_hangs_once(&w, false), None);
    kill_during_health_check(&w);
    let (out, json) = w.poll(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json["status"], "rolled-back", "{json}");
    assert_eq!(w.current().as_deref(), Some("releases/v1"));
    assert_eq!(
        w.lines("restarts.log"),
        ["restart v1", "restart v2", "restart v2", "restart v1"]
    );
    assert_eq!(w.bad_tags(), ["v2"]);
    assert_eq!(w.poll(&[]).1["status"], "up-to-date");
}

#[test]
fn regression_a_build_killed_every_time_is_recorded_bad_after_three_attempts() {
    // Before: a build that something outside kills (systemd's TimeoutStartSec, the OOM killer)
    // was started again at every poll, for ever.
    let w = World::new();
    w.release("v1", OK, OK, None);
    assert_eq!(w.poll(&[]).1["status"], "deployed");
    let pid = w.path("build.pid");
    w.release(
        "v2",
        &format!("echo $$ > '{}'; sleep 30", pid.display()),
        OK,
        None,
    );
    for attempt in 1..=3 {
        let _ = std::fs::remove_file(&pid);
        let mut child = w
            .command(&[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let build = w.pid_in("build.pid");
        child.kill().unwrap();
        child.wait().unwrap();
        w.kill_group_of(build);
        assert_eq!(w.lines("builds.log").len(), 1 + attempt);
    }
    let (out, json) = w.poll(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json["status"], "failed");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("interrupted 3 times"),
        "{json}"
    );
    assert_eq!(w.bad_tags(), ["v2"]);
    assert_eq!(w.poll(&[]).1["status"], "up-to-date");
    assert_eq!(
        w.lines("builds.log").len(),
        4,
        "built again after three kills"
    );
    assert_eq!(w.current().as_deref(), Some("releases/v1"));
}

#[test]
fn regression_the_clones_git_config_cannot_widen_who_may_sign() {
    // Whoever can write the clone (its .git/config) points gpg.ssh.allowedSignersFile at a
    // file that trusts their own key: deploy-poll verifies against --allowed-signers only.
    let w = World::new();
    let trusted = w.signing_key("trusted");
    let stranger = w.signing_key("stranger");
    w.trust(&[&trusted]);
    let widened = w.path("widened_signers");
    let public = std::fs::read_to_string(stranger.with_extension("pub")).unwrap();
    std::fs::write(
        &widened,
        format!("release@example.com namespaces=\"git\" {public}"),
    )
    .unwrap();
    let repo = w.root().join("repo");
    git(
        &repo,
        &[
            "config",
            "gpg.ssh.allowedSignersFile",
            widened.to_str().unwrap(),
        ],
    );
    w.release("v1", OK, OK, Some(&stranger));
    let (out, json) = w.poll(&["--require-signed"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
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
        "a stranger's tag was built"
    );
}

#[test]
fn require_signed_comes_from_materia_require_signed_and_needs_the_signers_file() {
    let w = World::new();
    w.release("v1", OK, OK, None);
    let mut cmd = w.command(&[]);
    cmd.env("MATERIA_REQUIRE_SIGNED", "true");
    let (out, json) = w.poll_with(cmd);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let error = json["error"].as_str().unwrap();
    assert!(
        error.contains("cannot read the allowed signers file"),
        "{error}"
    );
    assert_eq!(w.current(), None);
    assert!(
        w.lines("builds.log").is_empty(),
        "an unverified tag was built"
    );
    // MATERIA_REQUIRE_SIGNED=false is the development opt-out.
    w.release("v2", OK, OK, None);
    let mut cmd = w.command(&[]);
    cmd.env("MATERIA_REQUIRE_SIGNED", "false");
    assert_eq!(w.poll_with(cmd).1["status"], "deployed");
}

#[test]
fn regression_a_planted_built_marker_does_not_skip_the_build() {
    // A release directory someone prepared, with the marker, is not a build of the tag.
    let w = World::new();
    w.release("v1", OK, OK, None);
    let planted = w.root().join("releases/v1");
    std::fs::create_dir_all(planted.join("bin")).unwrap();
    std::fs::write(planted.join("bin/built"), "planted").unwrap();
    std::fs::write(planted.join(".materia-built"), "v1").unwrap();
    let (out, json) = w.poll(&[]);
    assert_eq!(json["status"], "deployed", "{}", stderr(&out));
    assert_eq!(
        w.lines("builds.log"),
        ["v1"],
        "the planted release was not rebuilt"
    );
    assert_eq!(
        std::fs::read_to_string(planted.join("bin/built")).unwrap(),
        "v1"
    );
}
