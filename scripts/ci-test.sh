#!/bin/sh
# A pipeline's test:<crate> job (`make ci-test CRATE=<crate>`): runs that crate's tests, and
# only them, from the build job's nextest archive (dist/, see scripts/ci-build.sh), without
# compiling anything. The archive is extracted into a fresh directory and the tests see this
# checkout (--workspace-remap): nothing of the build job's disk is used.
#
# Usage: scripts/ci-test.sh CRATE
# The caller has set up what the crate's tests need (the Makefile's ci-test target: the system
# tools, and the virtualenvs or gitlab-ci-local named in CRATE_NEEDS). The JUnit report goes to
# dist/junit/CRATE.xml, also when tests fail. Exit: nextest's (0 all passed, 100 some failed,
# 4 no tests for this crate), 2 usage or a missing archive.
set -eu

# A bound on the whole run of one crate's tests (each test is bounded by .config/nextest.toml).
run_timeout_secs=3600

[ $# -eq 1 ] || { echo "usage: scripts/ci-test.sh CRATE" >&2; exit 2; }
crate=$1
case "$crate" in
    '' | *[!a-z0-9_-]*) echo "ci-test: '$crate' is not a crate name" >&2; exit 2 ;;
esac
archive=dist/tests.tar.zst
nextest=dist/tools/cargo-nextest
for f in "$archive" "$nextest"; do
    [ -f "$f" ] || { echo "ci-test: no $f: this job needs the build job's artifacts" >&2; exit 2; }
done

extract="$PWD/target/ci-archive"
# Where nextest's `ci` profile writes its JUnit report (its store under the target directory).
reports="$extract/target/nextest/ci ${CARGO_TARGET_DIR:-$PWD/target}/nextest/ci $PWD/target/nextest/ci"
rm -rf "$extract"
for d in $reports; do rm -f "$d/junit.xml"; done
mkdir -p "$extract" dist/junit
status=0
timeout "$run_timeout_secs" "$nextest" nextest run --profile ci --archive-file "$archive" \
    --extract-to "$extract" --workspace-remap "$PWD" -E "package($crate)" || status=$?
for d in $reports; do
    if [ -f "$d/junit.xml" ]; then
        cp "$d/junit.xml" "dist/junit/$crate.xml"
        break
    fi
done
[ -f "dist/junit/$crate.xml" ] || echo "ci-test: nextest wrote no JUnit report for $crate" >&2
[ "$status" -eq 124 ] && echo "ci-test: the tests of $crate ran longer than ${run_timeout_secs}s" >&2
exit "$status"
