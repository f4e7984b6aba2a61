//! `scripts/setup_server.sh` and `scripts/bootstrap_supervisor.sh` run for real against a
//! throwaway root directory (users created with `useradd --prefix`, git repositories on disk):
//! what they create, and that a second run changes nothing.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use test_support::{CommandExt, repo_root, stderr};

/// Bound on every child process of these tests: a hang fails the test instead of the run.
const CHILD_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

use test_support::is_root;

/// A throwaway root with the account files useradd needs, traversable by the service user.
fn throwaway_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    for (f, line) in [
        ("passwd", "root:x:0:0:root:/root:/bin/sh"),
        ("group", "root:x:0:"),
        ("shadow", "root:*:19000:0:99999:7:::"),
        ("gshadow", "root:*::"),
    ] {
        std::fs::write(etc.join(f), format!("{line}\n")).unwrap();
    }
    std::fs::write(etc.join("login.defs"), "").unwrap();
    dir
}

fn script(name: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("dash");
    cmd.arg(repo_root().join("scripts").join(name))
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    cmd
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    stderr(out)
}

/// Every path under `root` with its type, mode, owner and content (or link target), except
/// git's own bookkeeping files.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel.contains(".git/") || rel.ends_with(".git") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                walk(root, &path, out);
                "dir".to_owned()
            } else {
                format!("file {:?}", std::fs::read(&path).unwrap())
            };
            out.insert(
                rel,
                format!(
                    "{what} {:o} {}:{}",
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid()
                ),
            );
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn service_uid(root: &Path) -> u32 {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let line = passwd.lines().find(|l| l.starts_with("materia:")).unwrap();
    assert!(line.ends_with(":/opt/materia:/usr/sbin/nologin"), "{line}");
    line.split(':').nth(2).unwrap().parse().unwrap()
}

#[test]
fn setup_server_creates_the_user_and_directories_once_and_repairs_drift() {
    if !is_root() {
        test_support::skip("setup_server.sh needs root (chown)");
        return;
    }
    let root = throwaway_root();
    let r = root.path().to_str().unwrap();
    let log = ok(&script("setup_server.sh", &["--root", r, "--no-packages"])
        .output_within(CHILD_LIMIT)
        .unwrap());
    assert!(log.contains("created user materia"), "{log}");
    let uid = service_uid(root.path());
    for (dir, mode) in [
        ("opt/materia", 0o750),
        ("opt/materia/releases", 0o750),
        ("data/materia/landing", 0o750),
        ("var/lib/node_exporter/textfile_collector", 0o755),
    ] {
        let meta = std::fs::metadata(root.path().join(dir)).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, mode), "{dir}");
    }
    let rule =
        std::fs::read_to_string(root.path().join("etc/polkit-1/rules.d/50-materia.rules")).unwrap();
    assert!(rule.contains("subject.user == \"materia\""));
    assert!(
        !std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .contains("materia:x"),
        "host touched"
    );

    let before = tree(root.path());
    let log = ok(&script("setup_server.sh", &["--root", r, "--no-packages"])
        .output_within(CHILD_LIMIT)
        .unwrap());
    assert!(log.contains("setup_server: 0 changes"), "{log}");
    assert_eq!(tree(root.path()), before);

    // Drift is put back, and only that.
    std::fs::set_permissions(
        root.path().join("data/materia"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let log = ok(&script("setup_server.sh", &["--root", r, "--no-packages"])
        .output_within(CHILD_LIMIT)
        .unwrap());
    assert!(log.contains("setup_server: 1 changes"), "{log}");
    assert_eq!(tree(root.path()), before);
}

/// The test's own git, as root, with a home whose config trusts repositories of other owners
/// (git drops `-c` and GIT_CONFIG_* for the local transport's helper).
fn git(dir: &Path, home: &Path, args: &[&str]) {
    std::fs::create_dir_all(home).unwrap();
    std::fs::write(
        home.join(".gitconfig"),
        "[safe]\n\tdirectory = *\n[user]\n\tname = test\n\temail = test@example.com\n",
    )
    .unwrap();
    let out = Command::new("git")
        .env("HOME", home)
        .args(args)
        .current_dir(dir)
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
}

/// A working repository with the real units, pushed with `tag` to the bare `origin`, which
/// belongs to the service user like a remote the server could only read.
fn release(work: &Path, origin: &Path, tag: &str, uid: u32) {
    let home = work.with_file_name("home");
    let git = |dir: &Path, args: &[&str]| git(dir, &home, args);
    if !work.exists() {
        std::fs::create_dir_all(work.join("systemd")).unwrap();
        git(work, &["init", "--quiet", "-b", "main"]);
        git(
            Path::new("/"),
            &["init", "--quiet", "--bare", origin.to_str().unwrap()],
        );
        git(work, &["remote", "add", "origin", origin.to_str().unwrap()]);
        for unit in std::fs::read_dir(repo_root().join("systemd")).unwrap() {
            let unit = unit.unwrap().path();
            std::fs::copy(&unit, work.join("systemd").join(unit.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(work.join("VERSION"), tag).unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "--quiet", "-m", tag]);
    git(work, &["tag", tag]);
    git(work, &["push", "--quiet", "origin", "main", "--tags"]);
    let out = Command::new("chown")
        .args(["-R", &format!("{uid}:{uid}")])
        .arg(origin)
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn bootstrap_installs_the_newest_tag_once_and_moves_to_a_newer_one() {
    if !is_root() {
        test_support::skip("bootstrap_supervisor.sh needs root (runs git as the service user)");
        return;
    }
    let root = throwaway_root();
    let r = root.path().to_str().unwrap();
    ok(&script("setup_server.sh", &["--root", r, "--no-packages"])
        .output_within(CHILD_LIMIT)
        .unwrap());
    let uid = service_uid(root.path());
    let src = root.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let (work, origin) = (src.join("work"), src.join("origin.git"));
    release(&work, &origin, "v1.9.0", uid);
    release(&work, &origin, "v1.2.0", uid);
    let o = origin.to_str().unwrap();
    let build = "mkdir -p bin && cp VERSION bin/built";
    let bootstrap = |extra: &[&str], build: &str| {
        let mut args = vec!["--root", r, "--repo", o];
        args.extend_from_slice(extra);
        script("bootstrap_supervisor.sh", &args)
            .env("MATERIA_BUILD_CMD", build)
            .output_within(CHILD_LIMIT)
            .unwrap()
    };

    let log = ok(&bootstrap(&[], build));
    assert!(log.contains("no .env.prod.sops"), "{log}");
    assert!(
        log.contains("materia-backup.timer stays disabled") && log.contains("lacks BACKUP_REMOTE"),
        "{log}"
    );
    let app = root.path().join("opt/materia");
    assert_eq!(
        std::fs::read_link(app.join("current")).unwrap(),
        Path::new("releases/v1.9.0")
    );
    assert_eq!(
        std::fs::read_to_string(app.join("current/bin/built")).unwrap(),
        "v1.9.0"
    );
    assert_eq!(
        std::fs::read_link(app.join(".env")).unwrap(),
        Path::new("current/.env")
    );
    assert_eq!(
        std::fs::metadata(app.join("current/bin/built"))
            .unwrap()
            .uid(),
        uid
    );
    let unit = root
        .path()
        .join("etc/systemd/system/materia-supervisor.service");
    assert_eq!(
        std::fs::read(&unit).unwrap(),
        std::fs::read(repo_root().join("systemd/materia-supervisor.service")).unwrap()
    );
    for web in ["materia-web.socket", "materia-web.service"] {
        assert_eq!(
            std::fs::read(root.path().join("etc/systemd/system").join(web)).unwrap(),
            std::fs::read(repo_root().join("systemd").join(web)).unwrap(),
            "{web} is installed"
        );
    }

    let before = tree(root.path());
    let log = ok(&bootstrap(&[], build));
    assert!(log.contains("0 changes"), "{log}");
    assert_eq!(tree(root.path()), before);

    // Version order, not text order: v1.10.0 is newer than v1.9.0.
    release(&work, &origin, "v1.10.0", uid);
    let log = ok(&bootstrap(&[], build));
    assert!(log.contains("current is now v1.10.0"), "{log}");
    assert_eq!(
        std::fs::read_to_string(app.join("current/bin/built")).unwrap(),
        "v1.10.0"
    );

    // A failed build leaves current alone; the half-built directory is redone next time.
    release(&work, &origin, "v1.11.0", uid);
    let out = bootstrap(&[], "exit 3");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("building v1.11.0 failed"));
    assert_eq!(
        std::fs::read_link(app.join("current")).unwrap(),
        Path::new("releases/v1.10.0")
    );
    let log = ok(&bootstrap(&[], build));
    assert!(log.contains("built v1.11.0"), "{log}");

    let out = script("bootstrap_supervisor.sh", &["--root", r])
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Asserts root: these tests create users and chown files. Not root is a failure, not a pass.
fn require_root(what: &str) {
    assert!(
        is_root(),
        "{what} needs root (useradd --prefix, chown); run the tests as root"
    );
}

#[test]
fn regression_setup_server_generates_the_service_users_keys_once_and_prints_them() {
    require_root("setup_server.sh");
    let root = throwaway_root();
    let r = root.path().to_str().unwrap();
    let out = script("setup_server.sh", &["--root", r, "--no-packages"])
        .output_within(CHILD_LIMIT)
        .unwrap();
    let log = ok(&out);
    let uid = service_uid(root.path());
    let app = root.path().join("opt/materia");
    for key in [".ssh/id_ed25519", ".config/sops/age/keys.txt"] {
        let meta = std::fs::metadata(app.join(key)).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o600), "{key}");
    }
    let deploy_pub = std::fs::read_to_string(app.join(".ssh/id_ed25519.pub")).unwrap();
    assert!(
        log.contains(deploy_pub.trim()),
        "deploy key not printed: {log}"
    );
    let age = std::fs::read_to_string(app.join(".config/sops/age/keys.txt")).unwrap();
    let recipient = age
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap();
    assert!(log.contains(recipient), "age key not printed: {log}");
    assert!(
        log.contains("read-only") && log.contains("sops updatekeys"),
        "{log}"
    );

    // Never regenerated: a second run keeps both keys.
    let log = ok(&script("setup_server.sh", &["--root", r, "--no-packages"])
        .output_within(CHILD_LIMIT)
        .unwrap());
    assert!(log.contains("setup_server: 0 changes"), "{log}");
    assert_eq!(
        std::fs::read_to_string(app.join(".config/sops/age/keys.txt")).unwrap(),
        age
    );
}

#[test]
fn regression_setup_server_installs_the_pinned_toolchain_for_the_service_user() {
    require_root("setup_server.sh");
    // A stand-in toolchain directory (bin/rustc prints the pinned version) behind the real
    // rustup of this machine: the mechanics, without copying 1.4 GB. `make rehearsal` builds
    // releases with the real toolchain installed the same way.
    let rustup =
        std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo/bin/rustup");
    assert!(rustup.exists(), "no rustup at {}", rustup.display());
    let rustup = std::fs::canonicalize(&rustup).unwrap();
    let toolchain = tempfile::tempdir().unwrap();
    std::fs::set_permissions(toolchain.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let channel = std::fs::read_to_string(repo_root().join("rust-toolchain.toml"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("channel = \"")
                .map(|c| c.trim_end_matches('"').to_owned())
        })
        .unwrap();
    std::fs::create_dir_all(toolchain.path().join("bin")).unwrap();
    let rustc = toolchain.path().join("bin/rustc");
    std::fs::write(
        &rustc,
        format!("#!/bin/sh\necho 'rustc {channel} (stand-in)'\n"),
    )
    .unwrap();
    std::fs::set_permissions(&rustc, std::fs::Permissions::from_mode(0o755)).unwrap();

    let root = throwaway_root();
    let r = root.path().to_str().unwrap();
    let args = [
        "--root",
        r,
        "--no-packages",
        "--rustup",
        rustup.to_str().unwrap(),
        "--toolchain-dir",
        toolchain.path().to_str().unwrap(),
    ];
    let log = ok(&script("setup_server.sh", &args)
        .output_within(CHILD_LIMIT)
        .unwrap());
    assert!(log.contains(&format!("installed Rust {channel}")), "{log}");
    let uid = service_uid(root.path());
    let app = root.path().join("opt/materia");
    let installed = app.join(format!(
        ".rustup/toolchains/{channel}-x86_64-unknown-linux-gnu/bin/rustc"
    ));
    assert_eq!(std::fs::metadata(&installed).unwrap().uid(), uid);
    assert_eq!(
        std::fs::read_link(app.join(".cargo/bin/cargo")).unwrap(),
        Path::new("rustup")
    );
    // The proxy, run as the service user in a release with rust-toolchain.toml, finds it.
    let release = app.join("releases/v1");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::copy(
        repo_root().join("rust-toolchain.toml"),
        release.join("rust-toolchain.toml"),
    )
    .unwrap();
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "--",
        ])
        .arg(app.join(".cargo/bin/rustc"))
        .arg("--version")
        .current_dir(&release)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("RUSTUP_HOME", app.join(".rustup"))
        .env("CARGO_HOME", app.join(".cargo"))
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(stand-in)"));

    let log = ok(&script("setup_server.sh", &args)
        .output_within(CHILD_LIMIT)
        .unwrap());
    assert!(log.contains("setup_server: 0 changes"), "{log}");
}

#[test]
fn regression_bootstrap_takes_deploy_polls_newest_tag_not_gits() {
    // git's version:refname put v2.0.0-rc1 after v2.0.0; deploy-poll puts it before.
    require_root("bootstrap_supervisor.sh");
    let root = throwaway_root();
    let r = root.path().to_str().unwrap();
    ok(&script("setup_server.sh", &["--root", r, "--no-packages"])
        .output_within(CHILD_LIMIT)
        .unwrap());
    let uid = service_uid(root.path());
    let src = root.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let (work, origin) = (src.join("work"), src.join("origin.git"));
    release(&work, &origin, "v2.0.0", uid);
    release(&work, &origin, "v2.0.0-rc1", uid);
    release(&work, &origin, "v10/hotfix", uid);
    // The build runs as the service user, who cannot read the target directory.
    let deploy_poll = src.join("deploy-poll");
    std::fs::copy(test_support::workspace_bin("deploy-poll"), &deploy_poll).unwrap();
    let build = format!(
        "mkdir -p bin && cp VERSION bin/built && cp '{}' bin/deploy-poll",
        deploy_poll.display()
    );
    let out = script(
        "bootstrap_supervisor.sh",
        &["--root", r, "--repo", origin.to_str().unwrap()],
    )
    .env("MATERIA_BUILD_CMD", &build)
    .output_within(CHILD_LIMIT)
    .unwrap();
    let log = ok(&out);
    let app = root.path().join("opt/materia");
    assert_eq!(
        std::fs::read_link(app.join("current")).unwrap(),
        Path::new("releases/v2.0.0"),
        "{log}"
    );
    assert!(!app.join("releases/v2.0.0-rc1").exists(), "{log}");
    assert!(!app.join("releases/v10").exists(), "{log}");
}

#[test]
fn regression_a_release_build_needs_no_root_and_no_test_tools() {
    // `make release` runs as the service user (NoNewPrivileges, no sudo): the build profile of
    // install-deps.sh must find everything with only the build tools there, and never ask for
    // root; the test profile, with the same PATH, names what it lacks.
    require_root("setpriv");
    let bin = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for tool in [
        "sh", "python3", "cc", "git", "npm", "openssl", "timeout", "id", "env", "cat", "sed",
    ] {
        // The system's own tools (a server has no pyenv in /root).
        let found = Command::new("/bin/sh")
            .args(["-c", &format!("command -v {tool}")])
            .env("PATH", "/usr/bin:/bin")
            .output_within(CHILD_LIMIT)
            .unwrap();
        let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
        assert!(!path.is_empty(), "{tool} is not installed");
        std::os::unix::fs::symlink(&path, bin.path().join(tool)).unwrap();
    }
    // The clone's script, copied where nobody may read it: the clone itself may be in a
    // directory only root enters (a clone in root's 0700 home, or in a `mktemp -d`).
    let script = bin.path().join("install-deps.sh");
    std::fs::copy(repo_root().join("scripts/install-deps.sh"), &script).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = |profile: &str| {
        Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin.path().join("sh"))
            .arg(&script)
            .arg(profile)
            .env_clear()
            .env("PATH", bin.path())
            .output_within(CHILD_LIMIT)
            .unwrap()
    };
    let out = run("build");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run("test");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("shellcheck"), "{}", stderr(&out));
}
