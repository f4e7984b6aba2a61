#!/bin/sh
# The pipeline's build job (`make ci-build`): compiles the workspace once and leaves in dist/
# what the later jobs use, so that none of them compiles again:
#   dist/tests.tar.zst            a nextest archive of every test binary, the workspace's binaries
#                                 and DuckDB's library (nextest archives the binaries of crates
#                                 with integration tests; .config/nextest.toml archive.include
#                                 adds the others and the library)
#   dist/tools/cargo-nextest      the pinned cargo-nextest that runs it (scripts/ci-test.sh)
#   dist/release/bin/, lib/       the release binaries and the DuckDB library they load
#                                 ($ORIGIN/../lib), as a release directory has them
#
# Usage: scripts/ci-build.sh BINARY...   (the Makefile passes its BINARIES)
# Needs CARGO_TARGET_DIR and the binaries already built (`make build`: the same flags, so the
# archive compiles nothing new). cargo-nextest comes from PATH when it is the pinned version,
# else `cargo install --locked` from crates.io into $MATERIA_CACHE (kept by the CI cache).
set -eu

# The cargo-nextest every job uses; archives are read by the version that wrote them.
nextest_version=0.9.143
install_timeout_secs=1800
archive_timeout_secs=3600

[ $# -ge 1 ] || { echo "usage: scripts/ci-build.sh BINARY..." >&2; exit 2; }
target=${CARGO_TARGET_DIR:?CARGO_TARGET_DIR must name the target directory}
cache=${MATERIA_CACHE:-$HOME/.cache/materia}
cargo=${CARGO:-cargo}

# The pinned cargo-nextest: on PATH, or installed once into the cache.
nextest=""
if found=$(command -v cargo-nextest 2>/dev/null) &&
    "$found" nextest --version 2>/dev/null | grep -qx "cargo-nextest $nextest_version.*"; then
    nextest=$found
else
    root="$cache/cargo-nextest-$nextest_version"
    if ! "$root/bin/cargo-nextest" nextest --version 2>/dev/null | grep -qx "cargo-nextest $nextest_version.*"; then
        echo "ci-build: installing cargo-nextest $nextest_version from crates.io into $root" >&2
        timeout "$install_timeout_secs" "$cargo" install --locked --quiet --root "$root" \
            "cargo-nextest@$nextest_version" ||
            { echo "ci-build: cannot install cargo-nextest $nextest_version" >&2; exit 1; }
    fi
    nextest="$root/bin/cargo-nextest"
fi

rm -rf dist
mkdir -p dist/tools dist/release/bin dist/release/lib
# --profile ci: its archive.include settings (the profile inherits them from default).
timeout "$archive_timeout_secs" "$nextest" nextest archive --release --locked --workspace \
    --profile ci --archive-file dist/tests.tar.zst
cp "$nextest" dist/tools/cargo-nextest

for b in "$@"; do
    cp "$target/release/$b" dist/release/bin/
done
cp "$target/lib/libduckdb.so" dist/release/lib/
# A staged release must start: the loader finds DuckDB beside it, or the artifact is useless.
for b in "$@"; do
    dist/release/bin/"$b" --version >/dev/null ||
        { echo "ci-build: dist/release/bin/$b does not start (DuckDB from dist/release/lib?)" >&2; exit 1; }
done
echo "ci-build: dist/tests.tar.zst ($(du -h dist/tests.tar.zst | cut -f 1)), $# binaries in dist/release/bin" >&2
