#!/bin/sh
# Benchmark of the transform on the full-size generated dataset (one landing file, about 2.1 M
# rows): the build through SQLMesh (`transform --force` on an empty lakehouse, the whole step)
# against the floor, the same SQL (models and audits rendered by SQLMesh from the project
# beforehand, plus the step's own checks) executed directly by DuckDB in one connection, timed
# inside the process; the floor must build the same row counts. Then a cycle with nothing new
# (`transform`), and a SQLMesh plan with nothing to do.
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

# The floor's SQL, rendered by SQLMesh from the project itself (nothing copied by hand): each
# model in dependency order, then every audit the models declare (the built-in ones with their
# arguments, and transform/audits/*.sql), as SQLMesh runs them: SELECT count(*) over the audit's
# query; then the transform step's own checks (rows per landing file, rows per serving table,
# balance identity violations). Rendered SQL names the catalog after the file stem: render
# against a file named like the floor.
models="raw.psd_rows:VIEW staging.psd:VIEW cleaned.psd_values:TABLE cleaned.psd_latest:TABLE serving.estimate_revisions:TABLE serving.commodity_balance:TABLE serving.global_balance:TABLE"
floor_sql="$work/floor.sql"
audited_sql="$work/floor_audited.sql"
(cd transform && DUCKDB_PATH="$work/render/floor.duckdb" "$venv/bin/python" - "$floor_sql" "$audited_sql" "$models") <<'PY'
import sys
from sqlmesh.core.context import Context

floor_path, audited_path, specs = sys.argv[1], sys.argv[2], sys.argv[3].split()
context = Context(paths=["."])
models, audits = [], []
for spec in specs:
    name, kind = spec.split(":")
    models.append(f"CREATE {kind} {name} AS\n{context.render(name).sql(dialect='duckdb')};\n")
    model = context.get_model(name)
    for audit, args in model.audits_with_args:
        query = model.render_audit_query(audit, this_model=name, **args).sql(dialect="duckdb")
        audits.append(f"-- {name}: {audit.name}\nSELECT count(*) FROM ({query}) AS audit;\n")
if not audits:
    sys.exit("bench: the models declare no audits")
schemas = "".join(f"CREATE SCHEMA {s};\n" for s in ("raw", "staging", "cleaned", "serving"))
checks = [
    "SELECT landing_sha256, sum(key_rows)::BIGINT, count(*) FROM cleaned.psd_values GROUP BY landing_sha256;\n",
    *(f"SELECT count(*) FROM serving.{t};\n" for t in ("commodity_balance", "global_balance", "estimate_revisions")),
]
with open(floor_path, "w") as f:
    f.write(schemas + "".join(models))
with open(audited_path, "w") as f:
    f.write(schemas + "".join(models) + "".join(audits) + "".join(checks))
print(f"rendered {len(models)} models and {len(audits)} audits", file=sys.stderr)
PY

# The floor runs the SQL in one DuckDB connection and times only that: Python's start-up and
# `import duckdb` are not part of DuckDB's work (GNU time still gives the process's peak RSS).
floor_py="$work/floor.py"
cat >"$floor_py" <<'PY'
import sys, time, duckdb
db, sql, secs = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(sql).read()
t0 = time.perf_counter()
duckdb.connect(db).execute(text)
with open(secs, "a") as f:
    f.write(f"{time.perf_counter() - t0:.3f}\n")
PY

# shellcheck source=scripts/bench-lib.sh disable=SC1091 # checked on its own; followed with shellcheck -x
. "$(dirname "$0")/bench-lib.sh"

i=0
while [ "$i" -lt "$runs" ]; do
    i=$((i + 1))
    echo "run $i/$runs" >&2
    rm -rf "$work/lake" && mkdir -p "$work/lake"
    DUCKDB_PATH="$work/lake/lakehouse.duckdb" timed sqlmesh "$bin/transform" --force
    rm -f "$work/floor.duckdb"
    timed floor "$venv/bin/python" "$floor_py" "$work/floor.duckdb" "$floor_sql" "$work/floor.secs"
    rm -f "$work/floor.duckdb"
    timed floor_audited "$venv/bin/python" "$floor_py" "$work/floor.duckdb" "$audited_sql" "$work/floor_audited.secs"
done
# The floor built what SQLMesh built: the same tables with the same row counts.
"$venv/bin/python" - "$work/lake/lakehouse.duckdb" "$work/floor.duckdb" <<'PY' || exit 1
import sys, duckdb
tables = ["cleaned.psd_values", "cleaned.psd_latest", "serving.estimate_revisions", "serving.commodity_balance", "serving.global_balance"]
def counts(path):
    c = duckdb.connect(path, read_only=True)
    return {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
lake, floor = counts(sys.argv[1]), counts(sys.argv[2])
if lake != floor:
    sys.exit(f"bench: the floor built other row counts than SQLMesh: {floor} vs {lake}")
print("  floor and SQLMesh built the same row counts: " + ", ".join(f"{t} {n}" for t, n in lake.items()), file=sys.stderr)
PY
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
f=$(median "$work/floor.secs" 1)
printf '\ntransform benchmark: %s rows, %s runs each, medians (%s cores)\n' "$rows" "$runs" "$(nproc)"
printf '  %-52s %8.2f s, peak RSS %s KiB\n' "transform via SQLMesh (plan + janitor + checks)" "$s" "$(median "$work/sqlmesh" 2)"
printf '  %-52s %8.2f s, peak RSS %s KiB\n' "same SQL directly in DuckDB (floor)" "$f" "$(median "$work/floor" 2)"
a=$(median "$work/floor_audited.secs" 1)
printf '  %-52s %8.2f s, peak RSS %s KiB\n' "same SQL plus the models' audit queries (floor)" "$a" "$(median "$work/floor_audited" 2)"
awk -v s="$s" -v f="$f" 'BEGIN {printf "  SQLMesh %.2fx the model SQL alone\n", s/f}'
awk -v s="$s" -v a="$a" 'BEGIN {printf "  SQLMesh overhead %.2fx the floor with audits (goal <= 1.5x)\n", s/a}'
awk -v u="$(median "$work/noop" 1)" 'BEGIN {printf "  cycle with nothing new (transform): %.0f ms (goal < 5 s)\n", u/1000}'
printf '  sqlmesh plan with nothing to do: %s s\n' "$(median "$work/plan_noop" 1)"
