//! `scripts/setup_server.sh` and `scripts/bootstrap_supervisor.sh` run for real against a
//! throwaway root directory (users created with `useradd --prefix`, git repositories on disk):
//! what they create, and that a second run changes nothing.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use test_support::{repo_root, stderr};

fn is_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

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
        eprintln!("skipped: setup_server.sh needs root (chown)");
        return;
    }
    let root = throwaway_root();
    let r = root.path().to_str().unwrap();
    let log = ok(&script("setup_server.sh", &["--root", r, "--no-packages"])
        .output()
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
        .output()
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
        .output()
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
        .output()
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
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn bootstrap_installs_the_newest_tag_once_and_moves_to_a_newer_one() {
    if !is_root() {
        eprintln!("skipped: bootstrap_supervisor.sh needs root (runs git as the service user)");
        return;
    }
    let root = throwaway_root();
    let r = root.path().to_str().unwrap();
    ok(&script("setup_server.sh", &["--root", r, "--no-packages"])
        .output()
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
            .output()
            .unwrap()
    };

    let log = ok(&bootstrap(&[], build));
    assert!(log.contains("no .env.prod.sops"), "{log}");
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
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
