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
    release_signed(work, origin, tag, uid, None);
}

/// As [`release`], the tag signed with the SSH key `sign` (`git tag -s`, gpg.format=ssh).
fn release_signed(work: &Path, origin: &Path, tag: &str, uid: u32, sign: Option<&Path>) {
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
    match sign {
        Some(key) => git(
            work,
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
        ),
        None => git(work, &["tag", tag]),
    }
    git(
        work,
        &["push", "--quiet", "origin", "main", "--tags", "--force"],
    );
    let out = Command::new("chown")
        .args(["-R", &format!("{uid}:{uid}")])
        .arg(origin)
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn bootstrap_installs_the_newest_tag_once_and_leaves_newer_ones_to_deploy_poll() {
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
        let mut args = vec!["--root", r, "--repo", o, "--allow-unsigned"];
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

    // A server in service moves only through deploy-poll: a re-run that sees a newer tag
    // (by version, not text: v1.10.0 > v1.9.0) says so and leaves current alone.
    release(&work, &origin, "v1.10.0", uid);
    let log = ok(&bootstrap(&[], build));
    assert!(
        log.contains("v1.9.0 stays current; git lists v1.10.0")
            && log.contains("only deploy-poll moves a server in service"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_link(app.join("current")).unwrap(),
        Path::new("releases/v1.9.0")
    );
    assert!(!app.join("releases/v1.10.0").exists());
    // Nor does --tag: refused, nothing changed.
    let before = tree(root.path());
    let out = bootstrap(&["--tag", "v1.10.0"], build);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("moves to v1.10.0 only through deploy-poll"),
        "{}",
        stderr(&out)
    );
    assert_eq!(tree(root.path()), before);

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
        &[
            "--root",
            r,
            "--repo",
            origin.to_str().unwrap(),
            "--allow-unsigned",
        ],
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

/// Runs `cmd` with the service user's rights (what a compromised step could do).
fn as_service_user(uid: u32, cmd: &str) {
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "--",
            "sh",
            "-c",
            cmd,
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert!(out.status.success(), "{cmd}: {}", stderr(&out));
}

/// Owner, mode and content of a root-owned victim, to prove it untouched.
fn fingerprint(path: &Path) -> (u32, u32, Vec<u8>) {
    let meta = std::fs::metadata(path).unwrap();
    let content = if meta.is_dir() {
        Vec::new()
    } else {
        std::fs::read(path).unwrap()
    };
    (meta.uid(), meta.mode() & 0o7777, content)
}

#[test]
fn regression_setup_server_never_follows_a_link_the_service_user_planted() {
    // The finding: landing -> a root directory, or the deploy key -> a root-only file, and
    // the next run chowned the target to the service user.
    require_root("setup_server.sh");
    let root = throwaway_root();
    let r = root.path().to_str().unwrap();
    let setup = || {
        script("setup_server.sh", &["--root", r, "--no-packages"])
            .output_within(CHILD_LIMIT)
            .unwrap()
    };
    ok(&setup());
    let uid = service_uid(root.path());
    // Root's own: a directory (like /etc) and a root-only file (like /etc/shadow).
    let victim_dir = root.path().join("etc");
    let victim_file = root.path().join("etc/shadow");
    std::fs::set_permissions(&victim_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&victim_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (dir_before, file_before) = (fingerprint(&victim_dir), fingerprint(&victim_file));
    let app = root.path().join("opt/materia");
    let data = root.path().join("data/materia");
    for (planted, target, aside) in [
        (data.join("landing"), &victim_dir, data.join("landing.old")),
        (
            app.join(".ssh/id_ed25519"),
            &victim_file,
            app.join(".ssh/id_ed25519.old"),
        ),
        (
            app.join(".config/sops/age/keys.txt"),
            &victim_file,
            app.join(".config/sops/age/keys.old"),
        ),
        (app.join(".config"), &victim_dir, app.join(".config.old")),
    ] {
        as_service_user(
            uid,
            &format!(
                "mv '{p}' '{a}' && ln -s '{t}' '{p}'",
                p = planted.display(),
                a = aside.display(),
                t = target.display()
            ),
        );
        let before = tree(&app);
        let out = setup();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "refused: {} is a symbolic link",
                planted.display()
            )),
            "{}",
            stderr(&out)
        );
        assert_eq!(
            fingerprint(&victim_dir),
            dir_before,
            "{}",
            planted.display()
        );
        assert_eq!(
            fingerprint(&victim_file),
            file_before,
            "{}",
            planted.display()
        );
        assert_eq!(
            tree(&app),
            before,
            "a refused run changed the app directory"
        );
        as_service_user(
            uid,
            &format!(
                "rm '{p}' && mv '{a}' '{p}'",
                p = planted.display(),
                a = aside.display()
            ),
        );
    }
    // Put back, the next run is clean again.
    assert!(ok(&setup()).contains("setup_server: 0 changes"));
    // sops lives in a root-owned tree, never inside /opt/materia.
    let script_text = std::fs::read_to_string(repo_root().join("scripts/setup_server.sh")).unwrap();
    assert!(!script_text.contains("/opt/materia/tools"));
}

/// A server set up under a throwaway root with `signers` trusted, and a release repository.
struct Signed {
    root: tempfile::TempDir,
    uid: u32,
    work: std::path::PathBuf,
    origin: std::path::PathBuf,
    key: std::path::PathBuf,
    stranger: std::path::PathBuf,
}

impl Signed {
    fn new() -> Signed {
        let root = throwaway_root();
        let src = root.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let mut keys = Vec::new();
        for name in ["release", "stranger"] {
            let key = src.join(name);
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(&key)
                .output_within(CHILD_LIMIT)
                .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
            keys.push(key);
        }
        let public = std::fs::read_to_string(keys[0].with_extension("pub")).unwrap();
        let signers = src.join("allowed_signers");
        std::fs::write(
            &signers,
            format!("release@example.com namespaces=\"git\" {public}"),
        )
        .unwrap();
        let r = root.path().to_str().unwrap();
        ok(&script(
            "setup_server.sh",
            &[
                "--root",
                r,
                "--no-packages",
                "--allowed-signers",
                signers.to_str().unwrap(),
            ],
        )
        .output_within(CHILD_LIMIT)
        .unwrap());
        let uid = service_uid(root.path());
        Signed {
            uid,
            work: src.join("work"),
            origin: src.join("origin.git"),
            key: keys[0].clone(),
            stranger: keys[1].clone(),
            root,
        }
    }

    fn release(&self, tag: &str, key: Option<&Path>) {
        release_signed(&self.work, &self.origin, tag, self.uid, key);
    }

    fn bootstrap(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "--root",
            self.root.path().to_str().unwrap(),
            "--repo",
            self.origin.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        script("bootstrap_supervisor.sh", &args)
            .env("MATERIA_BUILD_CMD", "mkdir -p bin && cp VERSION bin/built")
            .output_within(CHILD_LIMIT)
            .unwrap()
    }

    fn install_units(&self, tag: &str) -> Output {
        // As deploy-poll does before it: the server's clone fetches the tag (as the user).
        as_service_user(
            self.uid,
            &format!(
                "git -C '{}' fetch --quiet --force --tags --prune --prune-tags origin",
                self.app().join("repo").display()
            ),
        );
        script(
            "install_units.sh",
            &["--root", self.root.path().to_str().unwrap(), "--tag", tag],
        )
        .output_within(CHILD_LIMIT)
        .unwrap()
    }

    fn app(&self) -> std::path::PathBuf {
        self.root.path().join("opt/materia")
    }

    fn units(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.root.path().join("etc/systemd/system"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

#[test]
fn bootstrap_deploys_only_a_tag_signed_by_an_allowed_signer() {
    require_root("bootstrap_supervisor.sh");
    let s = Signed::new();
    // Unsigned, then signed by a key outside allowed_signers: refused before any build.
    for (tag, key, why) in [
        ("v1", None, "is not an annotated, signed tag"),
        (
            "v2",
            Some(s.stranger.as_path()),
            "has no signature by a key of",
        ),
    ] {
        s.release(tag, key);
        let out = s.bootstrap(&[]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(why), "{tag}: {}", stderr(&out));
        assert!(!s.app().join("current").exists(), "{tag} became current");
        assert!(
            !s.app().join(format!("releases/{tag}")).exists(),
            "{tag} was built"
        );
        assert_eq!(
            s.units(),
            ["materia-units.service"],
            "{tag}: units installed"
        );
    }
    s.release("v3", Some(&s.key));
    let log = ok(&s.bootstrap(&[]));
    assert!(log.contains("tag v3 verified"), "{log}");
    assert_eq!(
        std::fs::read_link(s.app().join("current")).unwrap(),
        Path::new("releases/v3")
    );
    assert!(s.units().contains(&"materia-supervisor.service".to_owned()));
}

#[test]
fn regression_planted_tags_markers_and_units_never_reach_root() {
    require_root("bootstrap_supervisor.sh");
    let s = Signed::new();
    s.release("v1", Some(&s.key));
    ok(&s.bootstrap(&[]));
    let app = s.app();
    let units_before = s.units();
    let etc = s.root.path().join("etc/systemd/system");
    let installed_before = tree(&etc);

    // As the service user: a local tag v999999 whose tree has a root unit, a built release
    // directory with the marker for it, and a root unit in the current release's tree.
    as_service_user(
        s.uid,
        &format!(
            "cd '{repo}' && git -c user.name=x -c user.email=x checkout -q --detach v1 && \
             printf '[Service]\\nUser=root\\nExecStart=/bin/id\\n' > systemd/materia-evil.service && \
             git -c user.name=x -c user.email=x add -A && \
             git -c user.name=x -c user.email=x commit -qm evil && \
             git -c user.name=x -c user.email=x tag -a -m x v999999 && \
             mkdir -p ../releases/v999999 && echo planted > ../releases/v999999/.materia-built && \
             cp systemd/materia-evil.service ../releases/v1/systemd/",
            repo = app.join("repo").display()
        ),
    );
    let log = ok(&s.bootstrap(&[]));
    assert!(log.contains("v1 is current"), "{log}");
    assert_eq!(s.units(), units_before, "{log}");
    assert_eq!(tree(&etc), installed_before, "{log}");
    assert_eq!(
        std::fs::read_link(app.join("current")).unwrap(),
        Path::new("releases/v1")
    );
    // The planted local tag is gone (fetched as deploy-poll fetches: --prune-tags).
    let tags = Command::new("git")
        .args(["-c", "safe.directory=*", "tag", "--list"])
        .current_dir(app.join("repo"))
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&tags.stdout).trim(), "v1");

    // A signed release that ships a unit with User=root: the whole release's units are
    // refused and nothing is installed.
    std::fs::write(
        s.work.join("systemd/materia-evil.service"),
        "[Service]\nUser=root\nExecStart=/bin/id\n",
    )
    .unwrap();
    s.release("v2", Some(&s.key));
    let out = s.install_units("v2");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("materia-evil.service: User=root"),
        "{}",
        stderr(&out)
    );
    assert_eq!(tree(&etc), installed_before);
}

#[test]
fn install_units_refuses_every_way_a_unit_could_run_as_root() {
    require_root("install_units.sh");
    let s = Signed::new();
    s.release("v1", Some(&s.key));
    ok(&s.bootstrap(&[]));
    let etc = s.root.path().join("etc/systemd/system");
    let before = tree(&etc);
    let cases: [(&str, &str, &str); 9] = [
        (
            "materia-x.service",
            "[Service]\nExecStart=/bin/id\n",
            "no User=materia",
        ),
        (
            "materia-x.service",
            "[Service]\nUser = root\nExecStart=/bin/id\n",
            "User=root",
        ),
        (
            "materia-x.service",
            "[Service]\nUser=0\nExecStart=/bin/id\n",
            "User=0",
        ),
        (
            "materia-x.service",
            "[Service]\nUser=materia\nPermissionsStartOnly=yes\nExecStart=/bin/id\n",
            "PermissionsStartOnly",
        ),
        (
            "materia-x.service",
            "[Service]\nUser=materia\nExecStartPre=-+/bin/id\nExecStart=/bin/id\n",
            "prefix runs with privileges",
        ),
        (
            "materia-x.service",
            "[Service]\nUser=materia\nAmbientCapabilities=CAP_SYS_ADMIN\nExecStart=/bin/id\n",
            "AmbientCapabilities",
        ),
        (
            "materia-x.socket",
            "[Socket]\nListenStream=1\nExecStartPre=/bin/id\n",
            "only services run commands",
        ),
        (
            "materia-x.timer",
            "[Timer]\nOnCalendar=daily\nUnit=reboot.target\n",
            "only materia-* units",
        ),
        (
            "other.service",
            "[Service]\nUser=materia\nExecStart=/bin/id\n",
            "only materia-*",
        ),
    ];
    for (i, (name, text, why)) in cases.iter().enumerate() {
        let tag = format!("v{}", i + 2);
        let dir = s.work.join("systemd");
        std::fs::write(dir.join(name), text).unwrap();
        s.release(&tag, Some(&s.key));
        std::fs::remove_file(dir.join(name)).unwrap();
        let out = s.install_units(&tag);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(why),
            "{name} {text:?}: {}",
            stderr(&out)
        );
        assert_eq!(tree(&etc), before, "{name} changed the installed units");
    }
}

#[test]
fn install_units_splits_the_secrets_per_unit_root_owned_and_removes_the_plaintext() {
    require_root("install_units.sh");
    let s = Signed::new();
    s.release("v1", Some(&s.key));
    ok(&s.bootstrap(&[]));
    let env = s.app().join("releases/v1/.env");
    as_service_user(
        s.uid,
        &format!(
            "umask 077 && printf 'STATE_DB=/data/s\\nR2_ACCESS_KEY_ID=id\\nR2_SECRET_ACCESS_KEY=secret-key\\nR2_ENDPOINT=http://r2\\nOTHER_TOKEN=t0k\\n' > '{}'",
            env.display()
        ),
    );
    let out = s.install_units("v1");
    let log = ok(&out);
    assert!(log.contains("OTHER_TOKEN looks secret"), "{log}");
    assert!(!env.exists(), "the plaintext stayed in the release");
    let dir = s.root.path().join("etc/materia/env");
    assert_eq!(
        std::fs::read_link(dir.join("current")).unwrap(),
        Path::new("v1")
    );
    for unit in ["supervisor", "backup", "deploy", "web"] {
        let path = dir.join(format!("v1/{unit}.env"));
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600), "{unit}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("STATE_DB=/data/s"), "{unit}: {text}");
        assert!(!text.contains("t0k"), "{unit}: {text}");
        let has_r2 = text.contains("secret-key")
            || text.contains("R2_ACCESS_KEY_ID")
            || text.contains("R2_ENDPOINT");
        assert_eq!(has_r2, unit == "backup", "{unit}: {text}");
    }
    // The web unit reads exactly that file, and cannot see the keys.
    let web = std::fs::read_to_string(repo_root().join("systemd/materia-web.service")).unwrap();
    assert!(web.contains("EnvironmentFile=/etc/materia/env/current/web.env"));
    assert!(
        web.contains(
            "InaccessiblePaths=-/opt/materia/.ssh -/opt/materia/.config -/etc/materia/env"
        )
    );
}

#[test]
fn regression_bootstrap_takes_deploy_polls_lock_and_honours_its_bad_tags() {
    // Bootstrap ignored deploy-poll's state: no lock, and a rolled-back tag could be made
    // current again without a restart or a health check.
    require_root("bootstrap_supervisor.sh");
    let s = Signed::new();
    s.release("v1", Some(&s.key));
    s.release("v2", Some(&s.key));
    // deploy-poll recorded v2 bad earlier (its state DB, as materia).
    let landing = s.root.path().join("data/materia/landing");
    as_service_user(
        s.uid,
        &format!(
            "sqlite3 '{}/.state.sqlite' \"CREATE TABLE deploy_bad_tags (tag TEXT PRIMARY KEY, reason TEXT, marked_at TEXT); INSERT INTO deploy_bad_tags VALUES ('v2', 'rolled back', 'now')\"",
            landing.display()
        ),
    );
    let out = s.bootstrap(&["--tag", "v2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("v2 is recorded bad"),
        "{}",
        stderr(&out)
    );
    assert!(!s.app().join("current").exists());
    let log = ok(&s.bootstrap(&[]));
    assert_eq!(
        std::fs::read_link(s.app().join("current")).unwrap(),
        Path::new("releases/v1"),
        "{log}"
    );
    assert!(!s.app().join("releases/v2").exists(), "{log}");

    // While deploy-poll runs (its lock held), bootstrap changes nothing and exits 75.
    let lock = landing.join(".locks/deploy-poll.lock");
    let mut holder = Command::new("setpriv")
        .args([
            &format!("--reuid={}", s.uid),
            &format!("--regid={}", s.uid),
            "--clear-groups",
            "--",
            "flock",
            "--close",
        ])
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = tree(&s.app());
    let mut cmd = script(
        "bootstrap_supervisor.sh",
        &[
            "--root",
            s.root.path().to_str().unwrap(),
            "--repo",
            s.origin.to_str().unwrap(),
        ],
    );
    let out = cmd
        .env("MATERIA_DEPLOY_LOCK_WAIT_SECS", "1")
        .output_within(CHILD_LIMIT)
        .unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("deploy-poll is running"),
        "{}",
        stderr(&out)
    );
    assert_eq!(tree(&s.app()), before);
}
