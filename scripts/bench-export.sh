#!/bin/sh
# Benchmark of export-serving on the serving tables built from the full-size generated dataset:
# the whole step (copy, _materia_export, checkpoint, fsync, read-only re-check, rename) against
# the same copy done by DuckDB itself in one process (in-memory DuckDB, ATTACH both files,
# CREATE TABLE AS SELECT per table, CHECKPOINT), timed inside that process after `import
# duckdb` (the step is timed whole: its start-up is its own cost). Runs alternate; medians;
# peak RSS (the floor's includes the Python interpreter). Also the unchanged path: a run whose
# lakehouse holds what the published file holds (fingerprint of every serving table, compared,
# nothing written), against the export it saves.
# Usage: BIN_DIR=... VENV=... scripts/bench-export.sh
set -eu

bin=${BIN_DIR:?BIN_DIR must name the directory of the built binaries}
venv=${VENV:?VENV must name the SQLMesh virtualenv}
runs=${BENCH_RUNS:-5}
rows=${BENCH_ROWS:-2100000}
cache=${BENCH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/materia/bench}
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

mkdir -p "$cache/upstream"
zip="$cache/upstream/psd-$rows.zip"
[ -f "$zip" ] || "$bin/psd-gen" --rows "$rows" --out "$zip"
export LANDING_DIR="$work/landing" STATE_DB="$work/state.sqlite" DUCKDB_PATH="$work/lakehouse.duckdb"
export MATERIA_TRANSFORM_DIR="$repo/transform" MATERIA_SQLMESH="$venv/bin/sqlmesh"
echo "building the lakehouse ($rows rows)" >&2
"$bin/extract-psd" --url "$zip" 2>/dev/null
"$bin/transform" 2>/dev/null

floor_py="$work/floor.py"
cat >"$floor_py" <<'PY'
import sys, time, duckdb
lake, out, secs = sys.argv[1], sys.argv[2], sys.argv[3]
# Timed from here: Python's start-up and `import duckdb` are not part of DuckDB's copy.
t0 = time.perf_counter()
c = duckdb.connect()
c.execute(f"ATTACH '{lake}' AS lakehouse (READ_ONLY)")
c.execute(f"ATTACH '{out}' AS out")
c.execute("CREATE SCHEMA out.serving")
for (t,) in c.execute("SELECT table_name FROM information_schema.tables WHERE table_catalog = 'lakehouse' AND table_schema = 'serving'").fetchall():
    c.execute(f"CREATE TABLE out.serving.{t} AS SELECT * FROM lakehouse.serving.{t}")
c.execute("CHECKPOINT out")
c.execute("DETACH out")
with open(secs, "a") as f:
    f.write(f"{time.perf_counter() - t0:.3f}\n")
PY

# shellcheck source=scripts/bench-lib.sh disable=SC1091 # checked on its own; followed with shellcheck -x
. "$(dirname "$0")/bench-lib.sh"

i=0
while [ "$i" -lt "$runs" ]; do
    i=$((i + 1))
    echo "run $i/$runs" >&2
    # The published file removed: this run exports (unchanged content is not published again).
    rm -f "$work/analytics.duckdb"
    SERVING_DUCKDB_PATH="$work/analytics.duckdb" timed export "$bin/export-serving"
    SERVING_DUCKDB_PATH="$work/analytics.duckdb" timed unchanged "$bin/export-serving"
    rm -f "$work/floor.duckdb"
    timed floor "$venv/bin/python" "$floor_py" "$DUCKDB_PATH" "$work/floor.duckdb" "$work/floor.secs"
done

e=$(median "$work/export" 1)
f=$(median "$work/floor.secs" 1)
printf '\nexport-serving benchmark: serving tables of %s rows, %s runs each, medians (%s cores)\n' "$rows" "$runs" "$(nproc)"
"$venv/bin/python" -c "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); print('  tables:', ', '.join(f'{t} {n}' for t, n in c.execute('SELECT table_name, row_count FROM serving._materia_export ORDER BY 1').fetchall()))" "$work/analytics.duckdb"
printf '  %-52s %8.2f s, peak RSS %s KiB\n' "export-serving (copy, checks, fsync, rename)" "$e" "$(median "$work/export" 2)"
printf '  %-52s %8.2f s, peak RSS %s KiB\n' "DuckDB ATTACH + CREATE TABLE AS (floor)" "$f" "$(median "$work/floor" 2)"
awk -v e="$e" -v f="$f" 'BEGIN {printf "  export-serving %.2fx the floor (goal <= 1.2x)\n", e/f}'
u=$(median "$work/unchanged" 1)
printf '  %-52s %8.2f s, peak RSS %s KiB\n' "export-serving, content unchanged (fingerprint only)" "$u" "$(median "$work/unchanged" 2)"
awk -v e="$e" -v u="$u" 'BEGIN {printf "  unchanged run %.2fx an export\n", u/e}'
status=$(SERVING_DUCKDB_PATH="$work/analytics.duckdb" "$bin/export-serving" --json 2>/dev/null)
case $status in
*'"status":"unchanged"'*) ;;
*) echo "bench: the unchanged run did not report unchanged: $status" >&2; exit 1 ;;
esac
