//! The CI pipeline (`.gitlab-ci.yml`) as gitlab-ci-local 4.66.1 parses and runs it, in a
//! temporary clone of this working tree with a local bare repository as its origin: every crate
//! with tests has its `test:<crate>` job; `release:tag` pushes `v<IID>` and only on the default
//! branch, never moves a tag; and deploy-poll, pointed at that origin, deploys the tag it
//! pushed (commit -> CI tag -> server release). `scripts/release-tag.sh` is also run directly
//! for what needs no pipeline around it (bad settings, an unreachable remote).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use test_support::{repo_root, stderr, tool, workspace_bin};

/// Bounds on the children: gitlab-ci-local (node start-up, parsing, one small job), git, cargo
/// metadata, deploy-poll.
const GCL_TIMEOUT_SECS: u32 = 300;
const CHILD_TIMEOUT_SECS: u32 = 120;
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// `program` under `timeout(1)`, with an empty environment but PATH.
fn bounded(secs: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "10", &secs.to_string()])
        .arg(program)
        .env_clear()
        .env("PATH", PATH);
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn check(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what}: {}", text(&out));
    out
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = bounded(CHILD_TIMEOUT_SECS, "git")
        .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    let out = check(out, &format!("git {args:?}"));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// gitlab-ci-local from `make ci-tools`: `MATERIA_GITLAB_CI_LOCAL`, else the cache's.
fn gitlab_ci_local() -> PathBuf {
    let path = std::env::var_os("MATERIA_GITLAB_CI_LOCAL").map_or_else(
        || {
            let cache = std::env::var_os("MATERIA_CACHE").map_or_else(
                || Path::new(&std::env::var_os("HOME").unwrap()).join(".cache/materia"),
                PathBuf::from,
            );
            cache.join("npm/gitlab-ci-local-4.66.1/node_modules/.bin/gitlab-ci-local")
        },
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "no gitlab-ci-local at {}: run `make ci-tools`",
        path.display()
    );
    path
}

/// A temporary clone: this working tree's tracked files committed on `main`, pushed to a local
/// bare `origin.git`. Its `.env.prod.sops` is the dev one (encrypted to the committed dev key),
/// so that deploy-poll can decrypt a release here.
struct Clone {
    dir: tempfile::TempDir,
}

impl Clone {
    fn new() -> Clone {
        let dir = tempfile::tempdir().unwrap();
        let clone = Clone { dir };
        let work = clone.work();
        let repo = repo_root();
        let listed = git(&repo, &["ls-files", "-z"]);
        for name in listed.split('\0').filter(|n| !n.is_empty()) {
            let from = repo.join(name);
            // A tracked file deleted in the working tree is not part of it.
            if std::fs::symlink_metadata(&from).is_err() {
                continue;
            }
            let to = work.join(name);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&from, &to).unwrap();
        }
        std::fs::copy(repo.join(".env.dev.sops"), work.join(".env.prod.sops")).unwrap();
        let root = clone.dir.path();
        git(root, &["init", "--quiet", "--bare", "origin.git"]);
        git(&work, &["init", "--quiet", "-b", "main"]);
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "--quiet", "-m", "the working tree"]);
        let origin = clone.origin();
        git(
            &work,
            &["remote", "add", "origin", origin.to_str().unwrap()],
        );
        git(&work, &["push", "--quiet", "-u", "origin", "main"]);
        // What a clone from GitLab has: gitlab-ci-local reads CI_DEFAULT_BRANCH from it.
        git(
            &work,
            &[
                "symbolic-ref",
                "refs/remotes/origin/HEAD",
                "refs/remotes/origin/main",
            ],
        );
        clone
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn work(&self) -> PathBuf {
        self.path("work")
    }

    fn origin(&self) -> PathBuf {
        self.path("origin.git")
    }

    /// gitlab-ci-local in the clone, with a home of its own (no user variables file) and the
    /// shell executor; `args` are its own.
    fn gcl(&self, args: &[&str]) -> Output {
        let home = self.path("home");
        std::fs::create_dir_all(&home).unwrap();
        bounded(GCL_TIMEOUT_SECS, gitlab_ci_local())
            .args(["--no-color", "--force-shell-executor"])
            .args(args)
            .current_dir(self.work())
            .env("HOME", &home)
            .output()
            .unwrap()
    }

    /// Runs the release:tag job as pipeline `iid` on `branch` (default branch `main`), with
    /// the job-token URL `CI_REPOSITORY_URL` (the bare origin when `None`) and `extra`
    /// arguments.
    fn release_tag(
        &self,
        iid: u32,
        branch: &str,
        repository: Option<&str>,
        extra: &[&str],
    ) -> Output {
        let iid = format!("CI_PIPELINE_IID={iid}");
        let origin = format!("file://{}", self.origin().display());
        let repository = format!("CI_REPOSITORY_URL={}", repository.unwrap_or(&origin));
        let branch = format!("CI_COMMIT_BRANCH={branch}");
        let mut args = vec![
            "release:tag",
            "--no-json-schema-validation",
            "--ignore-predefined-vars",
            "CI_PIPELINE_IID,CI_COMMIT_BRANCH,CI_DEFAULT_BRANCH,CI_REPOSITORY_URL",
            "--variable",
            &iid,
            "--variable",
            &branch,
            "--variable",
            "CI_DEFAULT_BRANCH=main",
            "--variable",
            &repository,
        ];
        args.extend_from_slice(extra);
        self.gcl(&args)
    }

    /// The tags of the bare origin: name -> (object type, object id).
    fn origin_tags(&self) -> BTreeMap<String, (String, String)> {
        git(
            &self.origin(),
            &[
                "for-each-ref",
                "refs/tags",
                "--format=%(refname:short) %(objecttype) %(objectname)",
            ],
        )
        .lines()
        .map(|l| {
            let mut f = l.split(' ');
            let name = f.next().unwrap().to_owned();
            (
                name,
                (f.next().unwrap().to_owned(), f.next().unwrap().to_owned()),
            )
        })
        .collect()
    }

    /// A server's deploy root whose `repo` is a clone of the origin.
    fn deploy_root(&self) -> PathBuf {
        let root = self.path("opt");
        if !root.join("repo").exists() {
            std::fs::create_dir_all(&root).unwrap();
            git(
                &root,
                &["clone", "--quiet", self.origin().to_str().unwrap(), "repo"],
            );
        }
        root
    }

    /// One deploy-poll run against the origin, with a trivial build (the chain is under test,
    /// not `make release`).
    fn deploy_poll(&self, extra: &[&str]) -> (Output, serde_json::Value) {
        let root = self.deploy_root();
        let out = bounded(CHILD_TIMEOUT_SECS, workspace_bin("deploy-poll"))
            .env("HOME", self.dir.path())
            .env("STATE_DB", self.path("state.sqlite"))
            .env("MATERIA_SOPS", tool("sops"))
            .env("SOPS_AGE_KEY_FILE", repo_root().join("secrets/dev.agekey"))
            .args(["--root", root.to_str().unwrap(), "--once", "--json"])
            .args([
                "--build-cmd",
                "test -f .gitlab-ci.yml && echo built > built",
            ])
            .args(["--restart-cmd", "true", "--health-cmd", "true"])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "one JSON object expected ({e}): {stdout:?}\n{}",
                stderr(&out)
            )
        });
        (out, json)
    }
}

/// A job as gitlab-ci-local lists it (`--list-json`), with its definition after `extends`
/// (`--preview`).
#[derive(Debug)]
struct Job {
    stage: String,
    when: String,
    needs: Vec<String>,
    definition: serde_json::Value,
}

/// The pipeline as gitlab-ci-local parses it in `clone` (with schema validation): its stages
/// in order and its jobs by name, or gitlab-ci-local's message.
fn pipeline(clone: &Clone) -> Result<(Vec<String>, BTreeMap<String, Job>), String> {
    let listed = clone.gcl(&["--list-json"]);
    if !listed.status.success() {
        return Err(text(&listed));
    }
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout)
        .map_err(|e| format!("--list-json printed no JSON ({e}): {}", text(&listed)))?;
    let preview = clone.gcl(&["--preview", "--no-json-schema-validation"]);
    if !preview.status.success() {
        return Err(text(&preview));
    }
    let yaml = clone.path("preview.yml");
    std::fs::write(&yaml, &preview.stdout).unwrap();
    // The YAML parser gitlab-ci-local itself uses, as JSON.
    let js_yaml = gitlab_ci_local().with_file_name("js-yaml");
    let json = check(
        bounded(CHILD_TIMEOUT_SECS, js_yaml)
            .arg(&yaml)
            .output()
            .unwrap(),
        "js-yaml",
    );
    let preview: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let stages = preview["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    let mut jobs = BTreeMap::new();
    for job in listed.as_array().unwrap() {
        let name = job["name"].as_str().unwrap().to_owned();
        let needs = job["needs"]
            .as_array()
            .map(|n| {
                n.iter()
                    .map(|n| n["job"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        jobs.insert(
            name.clone(),
            Job {
                stage: job["stage"].as_str().unwrap().to_owned(),
                when: job["when"].as_str().unwrap().to_owned(),
                needs,
                definition: preview[&name].clone(),
            },
        );
    }
    Ok((stages, jobs))
}

/// A workspace crate as `cargo metadata` describes it.
#[derive(Debug)]
struct Crate {
    /// An integration test target, or a `#[test]` in its sources.
    has_tests: bool,
    integration_tests: bool,
    binaries: Vec<String>,
}

/// The workspace's crates (`cargo metadata`).
fn workspace_crates() -> BTreeMap<String, Crate> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = bounded(CHILD_TIMEOUT_SECS, cargo);
    for var in ["HOME", "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN"] {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    let out = check(
        cmd.args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(repo_root())
        .output()
        .unwrap(),
        "cargo metadata",
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    fn has_test_attribute(dir: &Path) -> bool {
        std::fs::read_dir(dir).unwrap().any(|entry| {
            let path = entry.unwrap().path();
            if path.is_dir() {
                has_test_attribute(&path)
            } else {
                path.extension().is_some_and(|e| e == "rs")
                    && std::fs::read_to_string(&path).unwrap().contains("#[test]")
            }
        })
    }
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap().to_owned();
            let manifest = Path::new(p["manifest_path"].as_str().unwrap());
            let of_kind = |kind: &str| -> Vec<String> {
                p["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == kind))
                    .map(|t| t["name"].as_str().unwrap().to_owned())
                    .collect()
            };
            let integration_tests = !of_kind("test").is_empty();
            let src = manifest.parent().unwrap().join("src");
            let unit = src.is_dir() && has_test_attribute(&src);
            (
                name,
                Crate {
                    has_tests: integration_tests || unit,
                    integration_tests,
                    binaries: of_kind("bin"),
                },
            )
        })
        .collect()
}

#[test]
fn every_crate_with_tests_has_its_job_and_release_tag_comes_after_all_of_them() {
    let clone = Clone::new();
    let (stages, jobs) = pipeline(&clone).unwrap_or_else(|message| {
        panic!("gitlab-ci-local cannot parse .gitlab-ci.yml:\n{message}")
    });
    let crates = workspace_crates();
    assert!(crates.len() > 5, "cargo metadata listed {crates:?}");
    let stage_index = |job: &str| {
        let stage = &jobs[job].stage;
        stages.iter().position(|s| s == stage).unwrap()
    };

    for job in ["lint", "build", "test:sqlmesh", "release:tag"] {
        assert!(jobs.contains_key(job), "no job {job} in {:?}", jobs.keys());
    }
    let mut missing = Vec::new();
    for (name, krate) in &crates {
        let job = format!("test:{name}");
        match jobs.get(&job) {
            None if krate.has_tests => missing.push(job),
            None => {}
            Some(j) => {
                // That crate's tests only, from the build job's archive.
                assert_eq!(j.needs, ["build"], "{job}");
                assert_eq!(j.definition["variables"]["CRATE"], name.as_str(), "{job}");
                let script = j.definition["script"].to_string();
                assert!(script.contains("make ci-test"), "{job}: {script}");
                assert_eq!(j.when, "on_success", "{job}");
            }
        }
    }
    assert!(
        missing.is_empty(),
        "crates with tests but no job in .gitlab-ci.yml: {missing:?} (add them like test:landing-store)"
    );
    // No job for a crate that is gone; test:sqlmesh and test:infra test what is not a crate.
    for job in jobs.keys().filter(|j| j.starts_with("test:")) {
        let name = &job["test:".len()..];
        assert!(
            crates.contains_key(name) || name == "sqlmesh" || name == "infra",
            "{job} tests no crate of the workspace"
        );
    }
    // release:tag waits for every job of the stages before it: no `needs` to shortcut them.
    let release = &jobs["release:tag"];
    assert!(release.definition.get("needs").is_none(), "{release:?}");
    assert!(
        release.definition["rules"]
            .to_string()
            .contains("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH")
    );
    for job in jobs.keys().filter(|j| j.starts_with("test:")) {
        assert!(
            stage_index(job) < stage_index("release:tag"),
            "{job} is not before release:tag"
        );
    }
    assert!(stage_index("build") < stage_index("test:landing-store"));
}

/// The per-crate jobs run from the archive on their own: every binary a test may run must be
/// in it. nextest archives those of crates with integration tests; the others are listed in
/// `.config/nextest.toml`.
#[test]
fn the_test_archive_carries_every_binary_of_the_workspace() {
    let config = std::fs::read_to_string(repo_root().join(".config/nextest.toml")).unwrap();
    let mut missing = Vec::new();
    for krate in workspace_crates().values().filter(|c| !c.integration_tests) {
        for bin in &krate.binaries {
            let include = format!(
                "{{ path = \"release/{bin}\", relative-to = \"target\", on-missing = \"error\" }}"
            );
            if !config.contains(&include) {
                missing.push(include);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "add to archive.include in .config/nextest.toml: {missing:?}"
    );
    for lib in ["lib/libduckdb.so", "release/lib/libduckdb.so"] {
        assert!(config.contains(&format!("path = \"{lib}\"")), "{lib}");
    }
}

#[test]
fn an_invalid_pipeline_definition_fails_with_gitlab_ci_locals_message() {
    let clone = Clone::new();
    let ci = clone.work().join(".gitlab-ci.yml");
    let good = std::fs::read_to_string(&ci).unwrap();

    std::fs::write(
        &ci,
        good.replace("stages: [check, test, release]", "stages: [check, test"),
    )
    .unwrap();
    let message = pipeline(&clone).unwrap_err();
    assert!(message.contains("YAMLException"), "{message}");

    std::fs::write(&ci, good.replace("needs: [build]", "needs: [biuld]")).unwrap();
    let message = pipeline(&clone).unwrap_err();
    assert!(
        message.contains("needs: [biuld]") && message.contains("could not be found"),
        "{message}"
    );

    // What GitLab's own schema refuses: a `when` that does not exist.
    std::fs::write(
        &ci,
        good.replace("      when: never\n", "      when: sometimes\n"),
    )
    .unwrap();
    let message = pipeline(&clone).unwrap_err();
    assert!(
        message.contains("Invalid .gitlab-ci.yml configuration") && message.contains("sometimes"),
        "{message}"
    );
}

#[test]
fn release_tag_pushes_v_iid_deploy_poll_deploys_it_and_a_second_run_moves_nothing() {
    let clone = Clone::new();
    let work = clone.work();
    let head = git(&work, &["rev-parse", "HEAD"]);

    let out = clone.release_tag(7, "main", None, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let tags = clone.origin_tags();
    assert_eq!(tags.keys().collect::<Vec<_>>(), ["v7"], "{tags:?}");
    let (kind, object) = tags["v7"].clone();
    assert_eq!(kind, "tag", "v7 must be an annotated tag");
    assert_eq!(git(&clone.origin(), &["rev-parse", "v7^{commit}"]), head);
    let message = git(
        &clone.origin(),
        &["tag", "-l", "--format=%(contents)", "v7"],
    );
    assert!(message.contains("Materia release v7"), "{message}");
    assert!(message.contains(&head), "{message}");

    // The server: deploy-poll fetches the tag from the origin and makes it current.
    let (out, json) = clone.deploy_poll(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json["status"], "deployed", "{json}");
    assert_eq!(json["tag"], "v7");
    let current = clone.deploy_root().join("current");
    assert_eq!(
        std::fs::read_link(&current).unwrap(),
        Path::new("releases/v7")
    );
    assert_eq!(
        std::fs::read_to_string(current.join("built")).unwrap(),
        "built\n"
    );
    assert!(
        std::fs::read_to_string(current.join(".env"))
            .unwrap()
            .contains("BACKUP_REMOTE="),
        "the release's secrets were not decrypted"
    );

    // The same pipeline number again: refused, v7 stays the tag it was.
    let out = clone.release_tag(7, "main", None, &[]);
    assert!(
        !out.status.success(),
        "a second v7 was accepted: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("tag v7 exists already"),
        "{}",
        text(&out)
    );
    assert_eq!(clone.origin_tags()["v7"], (kind.clone(), object.clone()));

    // Even from a clone that does not have it, on a newer commit: the remote is asked first.
    git(&work, &["tag", "-d", "v7"]);
    std::fs::write(work.join("NEWS"), "a later commit\n").unwrap();
    git(&work, &["add", "NEWS"]);
    git(&work, &["commit", "--quiet", "-m", "later"]);
    let out = clone.release_tag(7, "main", None, &[]);
    assert!(!out.status.success(), "v7 was moved: {}", text(&out));
    assert!(text(&out).contains("exists already on"), "{}", text(&out));
    assert_eq!(clone.origin_tags()["v7"], (kind, object));
    let (out, json) = clone.deploy_poll(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json["status"], "up-to-date", "{json}");
    assert_eq!(json["tag"], "v7");
}

#[test]
fn release_tag_off_the_default_branch_creates_nothing() {
    let clone = Clone::new();
    let work = clone.work();
    git(&work, &["checkout", "--quiet", "-b", "feature"]);

    // As GitLab would plan it: the rule leaves release:tag out of a branch pipeline.
    let listed = clone.gcl(&["--list", "--no-json-schema-validation"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let list = String::from_utf8_lossy(&listed.stdout);
    assert!(list.contains("test:landing-store"), "{list}");
    assert!(
        !list.contains("release:tag"),
        "release:tag planned on a branch: {list}"
    );

    // Started by name all the same, it refuses and creates nothing.
    let out = clone.release_tag(8, "feature", None, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("on the default branch 'main' only"),
        "{}",
        text(&out)
    );
    assert!(clone.origin_tags().is_empty(), "{:?}", clone.origin_tags());
    assert_eq!(git(&work, &["tag", "--list"]), "");
}

#[test]
fn release_push_url_overrides_the_job_token_url_and_the_tag_can_be_ssh_signed() {
    let clone = Clone::new();
    let key = clone.path("release-key");
    check(
        bounded(CHILD_TIMEOUT_SECS, "ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "release", "-f"])
            .arg(&key)
            .output()
            .unwrap(),
        "ssh-keygen",
    );
    let push = format!("RELEASE_PUSH_URL=file://{}", clone.origin().display());
    let signing = format!("RELEASE_SIGNING_KEY={}", key.display());
    // The job-token URL, unreachable here: the override must win, and its token never shows.
    let out = clone.release_tag(
        12,
        "main",
        Some("https://gitlab-ci-token:job-token-secret@127.0.0.1:9/materia.git"),
        &["--variable", &push, "--variable", &signing],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("job-token-secret"), "{}", text(&out));
    assert_eq!(clone.origin_tags().keys().collect::<Vec<_>>(), ["v12"]);

    // deploy-poll --require-signed accepts it once the server's allowed_signers trusts the key.
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let allowed = clone.path("allowed_signers");
    std::fs::write(
        &allowed,
        format!("ci@materia.invalid namespaces=\"git\" {public}"),
    )
    .unwrap();
    let (out, json) = clone.deploy_poll(&[
        "--require-signed",
        "--allowed-signers",
        allowed.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json["status"], "deployed", "{json}");
    assert_eq!(json["tag"], "v12");
}

/// `scripts/release-tag.sh` on its own, in the clone, with exactly `vars` set.
fn release_tag_script(clone: &Clone, vars: &[(&str, &str)]) -> Output {
    let mut cmd = bounded(CHILD_TIMEOUT_SECS, "sh");
    cmd.arg("scripts/release-tag.sh").current_dir(clone.work());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn release_tag_refuses_bad_settings_and_an_unreachable_remote_leaves_no_tag_and_no_token() {
    let clone = Clone::new();
    let origin = format!("file://{}", clone.origin().display());
    let base = [
        ("CI_COMMIT_BRANCH", "main"),
        ("CI_DEFAULT_BRANCH", "main"),
        ("RELEASE_PUSH_URL", origin.as_str()),
    ];
    for (iid, why) in [
        ("", "CI_PIPELINE_IID is not set"),
        ("07", "without leading zeros"),
        ("7; rm -rf /", "without leading zeros"),
        ("-1", "without leading zeros"),
    ] {
        let mut vars = base.to_vec();
        if !iid.is_empty() {
            vars.push(("CI_PIPELINE_IID", iid));
        }
        let out = release_tag_script(&clone, &vars);
        assert_eq!(out.status.code(), Some(2), "{iid:?}: {}", text(&out));
        assert!(text(&out).contains(why), "{iid:?}: {}", text(&out));
    }
    let out = release_tag_script(
        &clone,
        &[
            ("CI_PIPELINE_IID", "3"),
            ("CI_COMMIT_BRANCH", "main"),
            ("CI_DEFAULT_BRANCH", "main"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("nowhere to push"), "{}", text(&out));

    // Nothing listens on port 9 of loopback: git fails at once, its message without the token.
    let out = release_tag_script(
        &clone,
        &[
            ("CI_PIPELINE_IID", "3"),
            ("CI_COMMIT_BRANCH", "main"),
            ("CI_DEFAULT_BRANCH", "main"),
            (
                "CI_REPOSITORY_URL",
                "https://gitlab-ci-token:job-token-secret@127.0.0.1:9/materia.git",
            ),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("https://127.0.0.1:9/materia.git"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("job-token-secret"), "{}", text(&out));
    assert_eq!(git(&clone.work(), &["tag", "--list"]), "");
    assert!(clone.origin_tags().is_empty());

    // And the happy path needs nothing but these variables.
    let mut vars = base.to_vec();
    vars.push(("CI_PIPELINE_IID", "4"));
    let out = release_tag_script(&clone, &vars);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(clone.origin_tags().keys().collect::<Vec<_>>(), ["v4"]);
}
