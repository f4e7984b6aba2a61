//! Every place that names the DuckDB release agrees: the library this test process loaded,
//! [`lakehouse::DUCKDB_RELEASE`], the prebuilt library's lock (`third-party/duckdb.lock`), the
//! Rust crate's pin (`Cargo.toml`) and the Python package SQLMesh uses
//! (`transform/requirements.txt`). A mismatch fails here, before it can reach a server; the
//! steps also refuse to start with another release (exit 2), see `check_library`.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

fn repo() -> PathBuf {
    test_support::repo_root()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap()
}

/// `1.5.6` from `v1.5.6`.
fn release_number() -> &'static str {
    lakehouse::DUCKDB_RELEASE.trim_start_matches('v')
}

#[test]
fn the_loaded_library_is_the_release_the_build_names() {
    assert_eq!(
        lakehouse::library_version().unwrap(),
        lakehouse::DUCKDB_RELEASE
    );
    lakehouse::check_library().unwrap();
}

#[test]
fn the_prebuilt_library_lock_names_the_same_release() {
    let lock = read("third-party/duckdb.lock");
    let value = |key: &str| {
        lock.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= line in third-party/duckdb.lock"))
            .to_owned()
    };
    assert_eq!(value("package"), "@duckdb/node-bindings-linux-x64");
    assert_eq!(value("duckdb_version"), lakehouse::DUCKDB_RELEASE);
    // DuckDB's npm bindings are versioned `<release>-r.<n>`.
    let version = value("version");
    assert!(
        version.starts_with(&format!("{}-r.", release_number())),
        "third-party/duckdb.lock pins {version}, not a build of DuckDB {}",
        lakehouse::DUCKDB_RELEASE
    );
    assert!(value("integrity").starts_with("sha512-"));
    assert!(value("file").starts_with("libduckdb.so "));
}

#[test]
fn the_python_side_pins_the_same_release() {
    let pins = read("transform/requirements.txt");
    let pin = pins
        .lines()
        .find_map(|l| l.trim().strip_prefix("duckdb=="))
        .expect("transform/requirements.txt pins no duckdb==");
    let pin = pin.split([' ', ';', '\\']).next().unwrap();
    assert_eq!(pin, release_number(), "Python duckdb=={pin}");
}

#[test]
fn the_rust_crate_pins_the_same_release() {
    // duckdb-rs 1.MMmmpp.x is DuckDB MM.mm.pp: 1.10506.1 is DuckDB 1.5.6.
    let manifest = read("Cargo.toml");
    let line = manifest
        .lines()
        .find(|l| l.starts_with("duckdb = "))
        .expect("no duckdb in [workspace.dependencies]");
    let version = line
        .split('"')
        .nth(1)
        .unwrap()
        .trim_start_matches('=')
        .to_owned();
    let encoded = version.split('.').nth(1).unwrap();
    let (major, rest) = encoded.split_at(encoded.len() - 4);
    let (minor, patch) = rest.split_at(2);
    let decoded = format!(
        "{}.{}.{}",
        major.parse::<u32>().unwrap(),
        minor.parse::<u32>().unwrap(),
        patch.parse::<u32>().unwrap()
    );
    assert_eq!(decoded, release_number(), "crate duckdb {version}");
}

#[test]
fn the_library_is_found_beside_the_binary_through_its_rpath() {
    let library = lakehouse::loaded_library();
    if cfg!(feature = "bundled") {
        assert_eq!(library, None, "a bundled build maps no libduckdb");
        return;
    }
    let library = library.expect("no libduckdb mapped by this process");
    // Test binaries live in <target>/release/deps and load <target>/release/lib/libduckdb.so.
    let exe = std::env::current_exe().unwrap();
    let expected = exe.parent().unwrap().join("../lib/libduckdb.so");
    assert_eq!(
        library.canonicalize().unwrap(),
        expected.canonicalize().unwrap(),
        "loaded from {}",
        library.display()
    );
}
