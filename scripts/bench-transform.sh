#!/bin/sh
# Benchmark of the transform on the full-size generated dataset (one landing file, about 2.1 M
# rows): the build through SQLMesh (`transform --force` on an empty lakehouse) against the floor,
# the same SQL (rendered by SQLMesh beforehand, plus the models' blocking audits as plain
# queries) executed directly by DuckDB in one process; then
# a cycle with nothing new (`transform`), and a SQLMesh plan with nothing to do.
# Runs alternate; medians. Usage: BIN_DIR=... VENV=... scripts/bench-transform.sh
set -eu

bin=${BIN_DIR:?BIN_DIR must name the directory of the built binaries}
venv=${VENV:?VENV must name the SQLMesh virtualenv}
runs=${BENCH_RUNS:-5}
rows=${BENCH_ROWS:-2100000}
cache=${BENCH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/materia/bench}
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

mkdir -p "$cache/upstream" "$work/render"
zip="$cache/upstream/psd-$rows.zip"
[ -f "$zip" ] || "$bin/psd-gen" --rows "$rows" --out "$zip"
export LANDING_DIR="$work/landing" STATE_DB="$work/state.sqlite"
export MATERIA_TRANSFORM_DIR="$repo/transform" MATERIA_SQLMESH="$venv/bin/sqlmesh"
"$bin/extract-psd" --url "$zip" 2>/dev/null

# The floor's SQL: each model rendered by SQLMesh, in dependency order, as DuckDB statements.
# Rendered SQL names the catalog after the file stem: render against a file named like the floor.
models="raw.psd_rows:VIEW staging.psd:VIEW cleaned.psd_values:TABLE cleaned.psd_latest:TABLE serving.estimate_revisions:TABLE serving.commodity_balance:TABLE serving.global_balance:TABLE"
floor_sql="$work/floor.sql"
: >"$floor_sql"
# The first SQLMesh command on a fresh state prints "Initializing new project state..." on stdout.
(cd transform && DUCKDB_PATH="$work/render/floor.duckdb" "$venv/bin/sqlmesh" render raw.psd_rows >/dev/null)
for schema in raw staging cleaned serving; do echo "CREATE SCHEMA $schema;" >>"$floor_sql"; done
for m in $models; do
    name=${m%%:*}
    kind=${m#*:}
    {
        printf 'CREATE %s %s AS\n' "$kind" "$name"
        (cd transform && DUCKDB_PATH="$work/render/floor.duckdb" "$venv/bin/sqlmesh" render "$name" --no-format)
        printf ';\n'
    } >>"$floor_sql"
done

# The blocking audits SQLMesh runs after each table model (the `audits` of transform/models),
# as the same queries in plain SQL: the floor with them does all the data work the transform does.
audit() { # TABLE KEY_COLUMNS NOT_NULL_COLUMNS
    nn=$(echo "$3" | sed 's/, */ IS NULL OR /g')
    cat <<SQL
SELECT count(*) FROM $1;
SELECT count(*) FROM (SELECT $2 FROM $1 GROUP BY $2 HAVING count(*) > 1);
SELECT count(*) FROM $1 WHERE $nn IS NULL;
SQL
}
audited_sql="$work/floor_audited.sql"
{
    cat "$floor_sql"
    audit cleaned.psd_values "landing_seq, commodity_code, country_code, market_year, attribute_id" "landing_seq, landing_sha256, commodity_code, country_code, market_year, attribute_id, calendar_year, month"
    audit cleaned.psd_latest "commodity_code, country_code, market_year, attribute_id" "commodity_code, country_code, market_year, attribute_id, landing_sha256"
    audit serving.estimate_revisions "commodity_code, country_code, market_year, attribute_id, revised_in" "commodity_code, country_code, market_year, attribute_id, revised_in, landing_sha256"
    audit serving.commodity_balance "commodity_code, country_code, market_year" "commodity_code, country_code, market_year, landing_sha256"
    audit serving.global_balance "commodity_code, market_year" "commodity_code, market_year"
} >"$audited_sql"

# shellcheck source=scripts/bench-lib.sh disable=SC1091 # checked on its own; followed with shellcheck -x
. "$(dirname "$0")/bench-lib.sh"

i=0
while [ "$i" -lt "$runs" ]; do
    i=$((i + 1))
    echo "run $i/$runs" >&2
    rm -rf "$work/lake" && mkdir -p "$work/lake"
    DUCKDB_PATH="$work/lake/lakehouse.duckdb" timed sqlmesh "$bin/transform" --force
    rm -f "$work/floor.duckdb"
    timed floor "$venv/bin/python" -c 'import duckdb, sys; duckdb.connect(sys.argv[1]).execute(open(sys.argv[2]).read())' "$work/floor.duckdb" "$floor_sql"
    rm -f "$work/floor.duckdb"
    timed floor_audited "$venv/bin/python" -c 'import duckdb, sys; duckdb.connect(sys.argv[1]).execute(open(sys.argv[2]).read())' "$work/floor.duckdb" "$audited_sql"
done
export DUCKDB_PATH="$work/lake/lakehouse.duckdb"
i=0
while [ "$i" -lt "$runs" ]; do
    i=$((i + 1))
    t0=$(date +%s%N)
    "$bin/transform" 2>"$work/stderr.out"
    t1=$(date +%s%N)
    grep -q "nothing new" "$work/stderr.out" || { echo "bench: expected a no-op transform:" >&2; cat "$work/stderr.out" >&2; exit 1; }
    echo "$(((t1 - t0) / 1000)) 0" >>"$work/noop"
    timed plan_noop sh -c "cd transform && '$venv/bin/sqlmesh' plan --auto-apply --no-prompts --skip-tests --skip-linter"
done

s=$(median "$work/sqlmesh" 1)
f=$(median "$work/floor" 1)
printf '\ntransform benchmark: %s rows, %s runs each, medians (%s cores)\n' "$rows" "$runs" "$(nproc)"
printf '  %-52s %8.2f s, peak RSS %s KiB\n' "transform via SQLMesh (plan + janitor + checks)" "$s" "$(median "$work/sqlmesh" 2)"
printf '  %-52s %8.2f s, peak RSS %s KiB\n' "same SQL directly in DuckDB (floor)" "$f" "$(median "$work/floor" 2)"
a=$(median "$work/floor_audited" 1)
printf '  %-52s %8.2f s, peak RSS %s KiB\n' "same SQL plus the models' audit queries (floor)" "$a" "$(median "$work/floor_audited" 2)"
awk -v s="$s" -v f="$f" 'BEGIN {printf "  SQLMesh %.2fx the model SQL alone\n", s/f}'
awk -v s="$s" -v a="$a" 'BEGIN {printf "  SQLMesh overhead %.2fx the floor with audits (goal <= 1.5x)\n", s/a}'
awk -v u="$(median "$work/noop" 1)" 'BEGIN {printf "  cycle with nothing new (transform): %.0f ms (goal < 5 s)\n", u/1000}'
printf '  sqlmesh plan with nothing to do: %s s\n' "$(median "$work/plan_noop" 1)"
