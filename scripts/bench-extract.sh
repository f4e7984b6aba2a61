#!/bin/sh
# Benchmark of extract-psd on a full-size generated PSD zip served over loopback, against
#   curl -o f.zip URL && unzip -p f.zip | pigz -6 > out.csv.gz     (and the same with gzip -6)
# Runs alternate (extract, pigz, gzip, extract, ...); reports medians, ratios, peak RSS, and the
# unchanged (HTTP 304) path. Figures come from one run on one machine: compare ratios, not seconds.
# Usage: BIN_DIR=... scripts/bench-extract.sh   (BENCH_RUNS, BENCH_ROWS, BENCH_DIR optional)
set -eu

bin=${BIN_DIR:?BIN_DIR must name the directory of the built binaries}
runs=${BENCH_RUNS:-5}
rows=${BENCH_ROWS:-2100000}
cache=${BENCH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/materia/bench}
work=$(mktemp -d)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

mkdir -p "$cache/upstream"
zip="$cache/upstream/psd-$rows.zip"
if [ ! -f "$zip" ]; then
    echo "generating $zip" >&2
    "$bin/psd-gen" --rows "$rows" --out "$zip"
fi
served=$(scripts/serve-dir.sh "$cache/upstream")
server_pid=${served% *}
url="http://127.0.0.1:${served#* }/psd-$rows.zip"

# timed LABEL CMD...: appends "seconds kib" to $work/LABEL
timed() {
    label=$1
    shift
    /usr/bin/time -f '%e %M' -o "$work/time.out" "$@" >/dev/null 2>"$work/stderr.out" || {
        echo "bench: $label failed:" >&2
        cat "$work/stderr.out" >&2
        exit 1
    }
    cat "$work/time.out" >>"$work/$label"
}

median() { # column of file -> median
    awk -v c="$2" '{print $c}' "$1" | sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}

i=0
while [ "$i" -lt "$runs" ]; do
    i=$((i + 1))
    echo "run $i/$runs" >&2
    rm -rf "$work/x"
    timed extract "$bin/extract-psd" --landing-dir "$work/x/landing" --url "$url"
    rm -f "$work/f.zip" "$work/out.csv.gz"
    timed pigz sh -c "curl -fsS -o '$work/f.zip' '$url' && unzip -p '$work/f.zip' | pigz -6 > '$work/out.csv.gz'"
    rm -f "$work/f.zip" "$work/out.csv.gz"
    timed gzip sh -c "curl -fsS -o '$work/f.zip' '$url' && unzip -p '$work/f.zip' | gzip -6 > '$work/out.csv.gz'"
done
# The unchanged path: conditional request answered 304 against the last landing. GNU time
# counts in 10 ms steps, too coarse here: nanosecond clock reads around the process instead.
i=0
while [ "$i" -lt "$runs" ]; do
    i=$((i + 1))
    t0=$(date +%s%N)
    "$bin/extract-psd" --landing-dir "$work/x/landing" --url "$url" 2>"$work/stderr.out" || {
        cat "$work/stderr.out" >&2
        exit 1
    }
    t1=$(date +%s%N)
    grep -q 'HTTP 304' "$work/stderr.out" || { echo "bench: expected an unchanged (304) run" >&2; exit 1; }
    echo "$(((t1 - t0) / 1000)) 0" >>"$work/unchanged"
done
landed=$(find "$work/x/landing/psd" -type f -exec du -b {} + | awk '{print $1}')

e=$(median "$work/extract" 1)
p=$(median "$work/pigz" 1)
g=$(median "$work/gzip" 1)
rss=$(median "$work/extract" 2)
rss_max=$(awk '{print $2}' "$work/extract" | sort -n | tail -n 1)
u=$(median "$work/unchanged" 1)
unzip -p "$zip" | gzip -6 | wc -c >"$work/gzip.size"
printf '\nextract-psd benchmark: %s rows, %s runs each, medians (%s cores)\n' "$rows" "$runs" "$(nproc)"
printf '  %-44s %8.2f s\n' "extract-psd (download+validate+land)" "$e"
printf '  %-44s %8.2f s\n' "curl && unzip -p | pigz -6" "$p"
printf '  %-44s %8.2f s\n' "curl && unzip -p | gzip -6" "$g"
awk -v e="$e" -v p="$p" -v g="$g" 'BEGIN {printf "  ratio extract/pigz %.2fx, extract/gzip %.2fx (goal <= 1.0x pigz)\n", e/p, e/g}'
printf '  peak RSS extract-psd: median %s KiB, max %s KiB (goal <= 65536 KiB)\n' "$rss" "$rss_max"
awk -v u="$u" 'BEGIN {printf "  unchanged (HTTP 304) run: %.1f ms (goal < 50 ms)\n", u/1000}'
printf '  landing gzip %s bytes; gzip -6 of the same CSV %s bytes\n' "$landed" "$(cat "$work/gzip.size")"
