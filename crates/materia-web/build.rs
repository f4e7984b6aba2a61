//! Finds Apache ECharts for embedding: the verified npm package that `make echarts` fetched
//! (scripts/fetch-npm.sh, third-party/echarts.lock), named by `ECHARTS_DIR` when that is set,
//! else where `make echarts` keeps it: `$MATERIA_CACHE` (default `~/.cache/materia`)
//! `/npm/echarts-<version>`, so plain `cargo build` works after `make echarts`. Without it the
//! build stops here with a message that says what to run, instead of at an `include_bytes!`
//! error.

use std::env;
use std::path::{Path, PathBuf};

/// The files of the package the binary embeds, as listed in the lock file.
const FILES: [(&str, &str); 2] = [
    ("MATERIA_ECHARTS_JS", "dist/echarts.common.min.js"),
    ("MATERIA_ECHARTS_LICENSE", "LICENSE"),
];

fn main() {
    for var in ["ECHARTS_DIR", "MATERIA_CACHE", "HOME"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../third-party/echarts.lock");
    println!("cargo::rerun-if-changed={}", lock.display());
    let version = std::fs::read_to_string(&lock)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("version=").map(str::to_owned))
        })
        .unwrap_or_else(|| fail(&format!("cannot read version= from {}", lock.display())));
    println!("cargo::rustc-env=MATERIA_ECHARTS_VERSION={version}");

    let (dir, from) = match env::var_os("ECHARTS_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => (PathBuf::from(dir), "ECHARTS_DIR"),
        None => (
            cache_dir().join(format!("npm/echarts-{version}")),
            "the default cache (MATERIA_CACHE, else ~/.cache/materia; ECHARTS_DIR unset)",
        ),
    };
    for (var, name) in FILES {
        let path = dir.join(name);
        if !path.is_file() {
            fail(&format!(
                "no {name} in {} ({from}): run `make echarts` (fetches and verifies echarts \
                 {version}, third-party/echarts.lock), or set ECHARTS_DIR to the directory \
                 that holds it",
                dir.display()
            ));
        }
        println!("cargo::rerun-if-changed={}", path.display());
        println!("cargo::rustc-env={var}={}", path.display());
    }
}

/// `MATERIA_CACHE`, else `$HOME/.cache/materia`: the Makefile's default.
fn cache_dir() -> PathBuf {
    if let Some(dir) = env::var_os("MATERIA_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache/materia"),
        None => fail("neither ECHARTS_DIR, MATERIA_CACHE nor HOME is set"),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("materia-web: {message}");
    std::process::exit(1);
}
