#!/bin/sh
# The fuzz targets of fuzz/ (cargo-fuzz, libFuzzer), seeded from psd-gen output.
#   replay: build them with the pinned toolchain and run each once over its seeds and its
#           regression inputs (fuzz/regressions/TARGET/, crashes found earlier): `make test`.
#   run:    fuzz each for FUZZ_SECS seconds with cargo-fuzz on the nightly toolchain (installs
#           cargo-fuzz when missing), keeping the grown corpus in the cache: `make fuzz`.
#           Prints executions per second and coverage per target; exits 1 after a crash, whose
#           input cargo-fuzz keeps in fuzz/artifacts/TARGET/.
# Usage: BIN_DIR=... scripts/fuzz.sh replay|run
set -eu

mode=${1:-}
bin=${BIN_DIR:?BIN_DIR must name the directory of the built binaries (psd-gen)}
secs=${FUZZ_SECS:-60}
targets="csv_validator zip_entry tag_version"
repo=$(pwd)
target_root=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/materia/target}
corpus_root=${FUZZ_CORPUS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/materia/fuzz-corpus}
# Bounds: one input (libFuzzer -timeout), a whole replay, memory per fuzzing process.
input_timeout_secs=10
replay_timeout_secs=600
rss_limit_mb=2048
cargo_fuzz_version=0.13.2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

# gen ARGS...: psd-gen, quiet unless it fails.
gen() {
    "$bin/psd-gen" "$@" 2>"$work/psd-gen.err" || { cat "$work/psd-gen.err" >&2; exit 1; }
}

# seeds DIR: each target's seed corpus in DIR/TARGET. The targets read their first byte as the
# chunk size, the rest as the input.
seeds() {
    for t in $targets; do mkdir -p "$1/$t"; done
    gen --csv --rows 30 --out "$work/small.csv"
    gen --csv --rows 300 --snapshot 2 --seed 7 --out "$work/medium.csv"
    gen --rows 30 --out "$work/small.zip"
    gen --rows 300 --level 1 --snapshot 1 --out "$work/level1.zip"
    for f in small medium; do
        printf '\000' | cat - "$work/$f.csv" >"$1/csv_validator/$f-1"
        printf '\006' | cat - "$work/$f.csv" >"$1/csv_validator/$f-7"
    done
    for f in small level1; do
        printf '\000' | cat - "$work/$f.zip" >"$1/zip_entry/$f-1"
        printf '\044' | cat - "$work/$f.zip" >"$1/zip_entry/$f-37"
    done
    printf 'v1\nv9\nv10\n' >"$1/tag_version/numbers"
    printf 'v1.9.0\nv1.10.0\nv1.9.10\n' >"$1/tag_version/dotted"
    printf 'v2.0.0-rc1\nv2.0.0\nv2.0.0.1\n' >"$1/tag_version/pre-release"
}

case "$mode" in
replay)
    seeds "$work/seeds"
    export CARGO_TARGET_DIR="$target_root/fuzz"
    cargo build --manifest-path fuzz/Cargo.toml --release --locked --bins
    for t in $targets; do
        # Files as arguments: libFuzzer runs each once, no fuzzing, and fails on a crash.
        find "$work/seeds/$t" "$repo/fuzz/regressions/$t" -type f 2>/dev/null | sort >"$work/inputs"
        n=$(wc -l <"$work/inputs")
        # shellcheck disable=SC2046 # one argument per input file; names have no spaces
        timeout "$replay_timeout_secs" "$CARGO_TARGET_DIR/release/$t" -timeout="$input_timeout_secs" \
            $(cat "$work/inputs") >"$work/$t.log" 2>&1 || {
            echo "fuzz: $t failed on one of its $n inputs:" >&2
            tail -n 30 "$work/$t.log" >&2
            exit 1
        }
        echo "fuzz: $t passes its $n seed and regression inputs"
    done
    ;;
run)
    export CARGO_TARGET_DIR="$target_root/fuzz-nightly"
    rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
    if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
        cargo install --locked cargo-fuzz --version "$cargo_fuzz_version"
    fi
    seeds "$corpus_root"
    failed=""
    for t in $targets; do
        echo "fuzz: $t for ${secs}s" >&2
        mkdir -p "$repo/fuzz/regressions/$t"
        # The grown corpus comes first: libFuzzer adds new inputs to the first directory.
        if cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$corpus_root/$t" "$repo/fuzz/regressions/$t" -- \
            -max_total_time="$secs" -timeout="$input_timeout_secs" -rss_limit_mb="$rss_limit_mb" \
            -max_len=65536 -print_final_stats=1 >"$work/$t.log" 2>&1; then
            status=ok
        else
            status=FAILED
            failed="$failed $t"
        fi
        awk -v t="$t" -v s="$status" '
            /^#[0-9]+/ && / cov: / { for (i = 1; i <= NF; i++) { if ($i == "cov:") cov = $(i + 1); if ($i == "ft:") ft = $(i + 1); if ($i == "corp:") corp = $(i + 1) } }
            /^stat::number_of_executed_units:/ { runs = $2 }
            /^stat::average_exec_per_sec:/ { eps = $2 }
            END { printf "  %-14s %-6s %12s runs %8s exec/s  cov %6s  ft %6s  corpus %s\n", t, s, runs, eps, cov, ft, corp }
        ' "$work/$t.log"
        [ "$status" = ok ] || tail -n 40 "$work/$t.log" >&2
    done
    [ -z "$failed" ] || { echo "fuzz: crashes in$failed; inputs in fuzz/artifacts/" >&2; exit 1; }
    ;;
*)
    echo "usage: scripts/fuzz.sh replay|run" >&2
    exit 2
    ;;
esac
