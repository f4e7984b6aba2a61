//! Stops the build early, with a message that says what to do, when the prebuilt DuckDB
//! library is not where `DUCKDB_LIB_DIR` says (otherwise the failure is a linker error about
//! `-lduckdb` at the very end of the build).

use std::env;
use std::path::Path;

fn main() {
    println!("cargo::rerun-if-env-changed=DUCKDB_LIB_DIR");
    if env::var_os("CARGO_FEATURE_BUNDLED").is_some() {
        return;
    }
    let library = match env::var("CARGO_CFG_TARGET_OS").as_deref() {
        Ok("macos") => "libduckdb.dylib",
        Ok("windows") => "duckdb.dll",
        _ => "libduckdb.so",
    };
    let Some(dir) = env::var_os("DUCKDB_LIB_DIR").filter(|d| !d.is_empty()) else {
        eprintln!(
            "lakehouse: DUCKDB_LIB_DIR is not set. Build through make (`make build` fetches and \
             verifies DuckDB's prebuilt {library}, third-party/duckdb.lock), or set DUCKDB_LIB_DIR \
             to the directory that holds it, or compile DuckDB from source with \
             `make build DUCKDB=bundled` (cargo: --features lakehouse/bundled)"
        );
        std::process::exit(1);
    };
    let path = Path::new(&dir).join(library);
    if !path.is_file() {
        eprintln!(
            "lakehouse: DUCKDB_LIB_DIR={} holds no {library}; run `make duckdb` to fetch it",
            Path::new(&dir).display()
        );
        std::process::exit(1);
    }
    println!("cargo::rerun-if-changed={}", path.display());
}
