//! Finds Apache ECharts for embedding: `ECHARTS_DIR` names the verified npm package that
//! `make echarts` fetched (scripts/fetch-npm.sh, third-party/echarts.lock). Without it the build
//! stops here with a message that says what to run, instead of at an `include_bytes!` error.

use std::env;
use std::path::{Path, PathBuf};

/// The files of the package the binary embeds, as listed in the lock file.
const FILES: [(&str, &str); 2] = [
    ("MATERIA_ECHARTS_JS", "dist/echarts.common.min.js"),
    ("MATERIA_ECHARTS_LICENSE", "LICENSE"),
];

fn main() {
    println!("cargo::rerun-if-env-changed=ECHARTS_DIR");
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

    let Some(dir) = env::var_os("ECHARTS_DIR").filter(|d| !d.is_empty()) else {
        fail(
            "ECHARTS_DIR is not set. Build through make (`make build` fetches and verifies the \
             echarts npm package, third-party/echarts.lock), or run `make echarts` and set \
             ECHARTS_DIR to the directory it names",
        );
    };
    let dir = PathBuf::from(dir);
    for (var, name) in FILES {
        let path = dir.join(name);
        if !path.is_file() {
            fail(&format!(
                "ECHARTS_DIR={} holds no {name}; run `make echarts` to fetch echarts {version}",
                dir.display()
            ));
        }
        println!("cargo::rerun-if-changed={}", path.display());
        println!("cargo::rustc-env={var}={}", path.display());
    }
}

fn fail(message: &str) -> ! {
    eprintln!("materia-web: {message}");
    std::process::exit(1);
}
