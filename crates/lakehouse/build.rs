//! Finds DuckDB's prebuilt library for the link and for running, so that plain `cargo build`,
//! `cargo test` and `cargo nextest run` work after `make duckdb`, with no variable set:
//! - the library is `DUCKDB_LIB_DIR`'s when that is set, else where `make duckdb` keeps it:
//!   `$MATERIA_CACHE` (default `~/.cache/materia`) `/npm/duckdb-node-bindings-linux-x64-<version>`,
//!   the version of `third-party/duckdb.lock`;
//! - it is linked (hard link, else copy) to where the run path `$ORIGIN/../lib`
//!   (`.cargo/config.toml`) looks from this build's profile directory: `<target>/lib` for the
//!   binaries in `<target>/<profile>/` and `<target>/<profile>/lib` for the test binaries in
//!   `<target>/<profile>/deps`, in whatever target directory and profile cargo builds.
//!
//! When the library is missing the build stops here, saying what to run, instead of at a
//! linker error about `-lduckdb` at the very end of the build.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    for var in ["DUCKDB_LIB_DIR", "MATERIA_CACHE", "HOME"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    if env::var_os("CARGO_FEATURE_BUNDLED").is_some() {
        return;
    }
    let library = match env::var("CARGO_CFG_TARGET_OS").as_deref() {
        Ok("macos") => "libduckdb.dylib",
        Ok("windows") => "duckdb.dll",
        _ => "libduckdb.so",
    };
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../third-party/duckdb.lock");
    println!("cargo::rerun-if-changed={}", lock.display());
    let version = fs::read_to_string(&lock)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("version=").map(str::to_owned))
        })
        .unwrap_or_else(|| fail(&format!("cannot read version= from {}", lock.display())));

    let (dir, from) = match env::var_os("DUCKDB_LIB_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => (PathBuf::from(dir), "DUCKDB_LIB_DIR"),
        None => (
            cache_dir().join(format!("npm/duckdb-node-bindings-linux-x64-{version}")),
            "the default cache (MATERIA_CACHE, else ~/.cache/materia; DUCKDB_LIB_DIR unset)",
        ),
    };
    let path = dir.join(library);
    if !path.is_file() {
        fail(&format!(
            "no {library} in {} ({from}): run `make duckdb` (fetches and verifies DuckDB's \
             prebuilt library {version}, third-party/duckdb.lock), or set DUCKDB_LIB_DIR to the \
             directory that holds it, or compile DuckDB from source with `make build \
             DUCKDB=bundled` (cargo: --features lakehouse/bundled)",
            dir.display()
        ));
    }
    println!("cargo::rerun-if-changed={}", path.display());
    println!("cargo::rustc-link-search=native={}", dir.display());

    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        // OUT_DIR is <target>/<profile>/build/lakehouse-<hash>/out.
        let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
        let Some(profile_dir) = out_dir.ancestors().nth(3).filter(|d| d.is_dir()) else {
            fail(&format!(
                "OUT_DIR {} is not <target>/<profile>/build/<crate>/out",
                out_dir.display()
            ));
        };
        let mut run_path_dirs = vec![profile_dir.join("lib")];
        if let Some(target_dir) = profile_dir.parent() {
            run_path_dirs.push(target_dir.join("lib"));
        }
        for lib_dir in run_path_dirs {
            let placed = lib_dir.join(library);
            place(&path, &placed).unwrap_or_else(|e| {
                fail(&format!(
                    "cannot put {} at {} (where the run path $ORIGIN/../lib finds it): {e}",
                    path.display(),
                    placed.display()
                ))
            });
            // A removed copy is put back by the next build.
            println!("cargo::rerun-if-changed={}", placed.display());
        }
    }
}

/// `MATERIA_CACHE`, else `$HOME/.cache/materia`: the Makefile's default.
fn cache_dir() -> PathBuf {
    if let Some(dir) = env::var_os("MATERIA_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache/materia"),
        None => fail("neither DUCKDB_LIB_DIR, MATERIA_CACHE nor HOME is set"),
    }
}

/// `from` at `to`: left alone when `to` already has the same bytes, else a hard link (a copy
/// across file systems) put in place by one rename, so a concurrent build never sees half a
/// library.
fn place(from: &Path, to: &Path) -> std::io::Result<()> {
    if same_bytes(from, to) {
        return Ok(());
    }
    let dir = to.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".libduckdb.new.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    if fs::hard_link(from, &tmp).is_err() {
        fs::copy(from, &tmp)?;
        // The source's time, so the copy does not look changed to the next build (it is a
        // rerun-if-changed input).
        let modified = fs::metadata(from)?.modified()?;
        fs::File::options()
            .write(true)
            .open(&tmp)?
            .set_modified(modified)?;
    }
    fs::rename(&tmp, to)
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(ma), Ok(mb)) if ma.len() == mb.len() => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                if (ma.dev(), ma.ino()) == (mb.dev(), mb.ino()) {
                    return true;
                }
            }
            matches!((fs::read(a), fs::read(b)), (Ok(x), Ok(y)) if x == y)
        }
        _ => false,
    }
}

fn fail(message: &str) -> ! {
    eprintln!("lakehouse: {message}");
    std::process::exit(1);
}
