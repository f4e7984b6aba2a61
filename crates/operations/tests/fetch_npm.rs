//! `scripts/fetch-npm.sh`, which fetches DuckDB's prebuilt library (and any other pinned npm
//! package) for the build, against a loopback npm registry: the real `npm pack` asks it for the
//! package document and the tarball. Nothing is installed unless the tarball matches the lock's
//! sha512 and every file its sha256; a tampered, truncated or relabelled tarball, a missing
//! version and an unreachable registry each fail with a message naming the package and version.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256, Sha512};
use test_support::{CommandExt, repo_root};

/// Bound on every child process of these tests: a hang fails the test instead of the run.
const CHILD_LIMIT: Duration = Duration::from_secs(300);

const PACKAGE: &str = "@materia-test/prebuilt";
const LIBRARY: &[u8] = b"\x7fELF not really a library, but bytes with a known sha256\n";

/// A package tarball as npm publishes it: `package/package.json` plus the library.
fn tarball(dir: &Path, version: &str, library: &[u8]) -> Vec<u8> {
    let root = dir.join(format!("src-{version}-{}", library.len()));
    let package = root.join("package");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::write(
        package.join("package.json"),
        format!("{{\n  \"name\": \"{PACKAGE}\",\n  \"version\": \"{version}\"\n}}\n"),
    )
    .unwrap();
    std::fs::write(package.join("libprebuilt.so"), library).unwrap();
    let out = root.join("package.tgz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(&root)
        .arg("package")
        .status_within(CHILD_LIMIT)
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

fn sri(bytes: &[u8]) -> String {
    format!("sha512-{}", base64_sri::encode(&Sha512::digest(bytes)))
}

/// Standard base64, for npm's integrity strings (no extra dependency for 20 lines).
mod base64_sri {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

fn lock(dir: &Path, version: &str, integrity: &str, library: &[u8]) -> PathBuf {
    let path = dir.join("prebuilt.lock");
    std::fs::write(
        &path,
        format!(
            "# a test lock\npackage={PACKAGE}\nversion={version}\nintegrity={integrity}\nfile=libprebuilt.so {:x}\n",
            Sha256::digest(library)
        ),
    )
    .unwrap();
    path
}

/// A loopback npm registry that knows one version of [`PACKAGE`] and serves `tarball` for it.
/// The package document carries no integrity of its own, so what npm accepts is whatever the
/// registry sends, and only the lock's check stands between it and the build.
struct Registry {
    port: u16,
    requests: Arc<AtomicUsize>,
}

impl Registry {
    fn start(version: &'static str, tarball: Vec<u8>) -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        let tarball = Arc::new(tarball);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let tarball = Arc::clone(&tarball);
                std::thread::spawn(move || serve(stream, port, version, &tarball));
            }
        });
        Registry { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

fn serve(mut stream: TcpStream, port: u16, version: &str, tarball: &[u8]) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let path = path.replace("%2f", "/").replace("%2F", "/");
    let (status, kind, body) = if path == format!("/{PACKAGE}") {
        let document = serde_json::json!({
            "name": PACKAGE,
            "dist-tags": {"latest": version},
            "versions": {version: {
                "name": PACKAGE,
                "version": version,
                "dist": {"tarball": format!("http://127.0.0.1:{port}/tarballs/prebuilt-{version}.tgz")},
            }},
        });
        (
            "200 OK",
            "application/json",
            document.to_string().into_bytes(),
        )
    } else if path.starts_with("/tarballs/") {
        ("200 OK", "application/octet-stream", tarball.to_vec())
    } else {
        (
            "404 Not Found",
            "application/json",
            b"{\"error\":\"not found\"}".to_vec(),
        )
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
    let _ = reader.read_to_end(&mut Vec::new());
}

/// Runs the script with npm pointed at `registry` and a cache of the test's own.
fn fetch(dir: &Path, registry: &str, lock: &Path, dest: &Path) -> Output {
    let out = Command::new("timeout")
        .arg("120")
        .arg("dash")
        .arg(repo_root().join("scripts/fetch-npm.sh"))
        .arg(lock)
        .arg(dest)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", dir)
        .env("npm_config_registry", registry)
        .env("npm_config_cache", dir.join("npm-cache"))
        .env("npm_config_update_notifier", "false")
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert_ne!(out.status.code(), Some(124), "fetch-npm.sh ran out of time");
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What a refused fetch must leave: no destination and no work directory beside it.
fn assert_nothing_installed(cache: &Path, dest: &Path) {
    assert!(!dest.exists(), "{} was installed", dest.display());
    let leftovers: Vec<_> = std::fs::read_dir(cache)
        .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn a_matching_package_is_installed_verified_and_then_reused_without_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let good = tarball(dir.path(), "1.0.0", LIBRARY);
    let lock = lock(dir.path(), "1.0.0", &sri(&good), LIBRARY);
    let registry = Registry::start("1.0.0", good);
    let cache = dir.path().join("cache");
    let dest = cache.join("prebuilt-1.0.0");

    let first = fetch(dir.path(), &registry.url(), &lock, &dest);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(std::fs::read(dest.join("libprebuilt.so")).unwrap(), LIBRARY);
    assert!(stderr(&first).contains("verified and installed"));
    let asked = registry.requests.load(Ordering::SeqCst);
    assert!(asked >= 2, "npm asked the registry {asked} times");

    // Reused as it is: no request at all, and nothing said.
    let second = fetch(dir.path(), "http://127.0.0.1:9/", &lock, &dest);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(stderr(&second), "");
    assert_eq!(registry.requests.load(Ordering::SeqCst), asked);

    // A cached file changed behind the build's back is noticed and fetched again.
    std::fs::write(dest.join("libprebuilt.so"), b"changed").unwrap();
    let third = fetch(dir.path(), &registry.url(), &lock, &dest);
    assert!(third.status.success(), "{}", stderr(&third));
    assert!(
        stderr(&third).contains("does not match"),
        "{}",
        stderr(&third)
    );
    assert_eq!(std::fs::read(dest.join("libprebuilt.so")).unwrap(), LIBRARY);
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("prebuilt-1.0.0")]);
}

#[test]
fn a_tampered_tarball_is_refused_before_it_is_unpacked() {
    let dir = tempfile::tempdir().unwrap();
    let good = tarball(dir.path(), "1.0.0", LIBRARY);
    let evil = tarball(dir.path(), "1.0.0", b"\x7fELF something else entirely\n");
    let lock = lock(dir.path(), "1.0.0", &sri(&good), LIBRARY);
    let registry = Registry::start("1.0.0", evil.clone());
    let cache = dir.path().join("cache");
    let dest = cache.join("prebuilt-1.0.0");

    let out = fetch(dir.path(), &registry.url(), &lock, &dest);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "integrity mismatch for {PACKAGE}@1.0.0: {} says {}, the tarball is {}",
            lock.display(),
            sri(&good),
            sri(&evil)
        )),
        "{log}"
    );
    assert!(log.contains("nothing was installed"), "{log}");
    assert_nothing_installed(&cache, &dest);
}

#[test]
fn a_truncated_tarball_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = tarball(dir.path(), "1.0.0", LIBRARY);
    let lock = lock(dir.path(), "1.0.0", &sri(&good), LIBRARY);
    let registry = Registry::start("1.0.0", good[..good.len() / 2].to_vec());
    let cache = dir.path().join("cache");
    let dest = cache.join("prebuilt-1.0.0");

    let out = fetch(dir.path(), &registry.url(), &lock, &dest);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains(&format!("{PACKAGE}@1.0.0")), "{log}");
    assert!(log.contains("nothing was installed"), "{log}");
    assert_nothing_installed(&cache, &dest);
}

#[test]
fn a_tarball_of_another_version_is_refused_even_when_its_hash_is_the_locked_one() {
    // The lock pins 1.0.0 and the hash of a tarball that says it is 2.0.0: a lock edited
    // half-way, or a registry serving the wrong package under the right name.
    let dir = tempfile::tempdir().unwrap();
    let other = tarball(dir.path(), "2.0.0", LIBRARY);
    let lock = lock(dir.path(), "1.0.0", &sri(&other), LIBRARY);
    let registry = Registry::start("1.0.0", other);
    let cache = dir.path().join("cache");
    let dest = cache.join("prebuilt-1.0.0");

    let out = fetch(dir.path(), &registry.url(), &lock, &dest);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "the tarball of {PACKAGE}@1.0.0 is version '2.0.0'"
        )),
        "{log}"
    );
    assert_nothing_installed(&cache, &dest);
}

#[test]
fn a_version_the_registry_does_not_have_fails_naming_package_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let good = tarball(dir.path(), "1.0.0", LIBRARY);
    let lock = lock(dir.path(), "1.0.1", &sri(&good), LIBRARY);
    let registry = Registry::start("1.0.0", good);
    let cache = dir.path().join("cache");
    let dest = cache.join("prebuilt-1.0.1");

    let out = fetch(dir.path(), &registry.url(), &lock, &dest);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "cannot fetch {PACKAGE}@1.0.1 from {}",
            registry.url()
        )),
        "{log}"
    );
    assert_nothing_installed(&cache, &dest);
}

#[test]
fn an_unreachable_registry_fails_naming_package_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let good = tarball(dir.path(), "1.0.0", LIBRARY);
    let lock = lock(dir.path(), "1.0.0", &sri(&good), LIBRARY);
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let cache = dir.path().join("cache");
    let dest = cache.join("prebuilt-1.0.0");

    let out = fetch(dir.path(), &url, &lock, &dest);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("cannot fetch {PACKAGE}@1.0.0 from {url}")),
        "{log}"
    );
    assert_nothing_installed(&cache, &dest);
}
