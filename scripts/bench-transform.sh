#!/bin/sh
# Benchmark of the incremental transform on full-size generated releases (psd-gen --snapshot
# 0..N-1, about 2.1 M rows each; later releases revise recent market years).
#
# 1. Growth curve: the releases land one per cycle (extract-psd, then transform); for each, the
#    transform's time and peak RSS (the step and everything it starts), rows read, changes
#    stored and the lakehouse's size. Goals: the 6th release at most 1.5x the 2nd; a projection
#    to 120 releases flat within 1.5x; the lakehouse growing by at most 2x the changed rows
#    (in bytes per history row of the first build); peak RSS at most 2 GiB.
# 2. Full rebuild of the N releases (`transform --full-rebuild` on a new lakehouse) against the
#    same work written by hand in DuckDB over the same files (one connection, timed inside the
#    process: the history as validity ranges over releases, the latest values, the balances;
#    without removed keys and label changes, which psd-gen's releases do not have), which must
#    find as many history rows. Goal: at most 1.2x.
# 3. A cycle with nothing new.
# Usage: BIN_DIR=... VENV=... scripts/bench-transform.sh
set -eu

bin=${BIN_DIR:?BIN_DIR must name the directory of the built binaries}
venv=${VENV:?VENV must name the SQLMesh virtualenv}
rows=${BENCH_ROWS:-2100000}
releases=${BENCH_RELEASES:-6}
cache=${BENCH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/materia/bench}
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

mkdir -p "$cache/upstream" "$work/lake" "$work/rebuilt"
export LANDING_DIR="$work/landing" STATE_DB="$work/state.sqlite"
export MATERIA_TRANSFORM_DIR="$repo/transform" MATERIA_SQLMESH="$venv/bin/sqlmesh"

# shellcheck source=scripts/bench-lib.sh disable=SC1091 # checked on its own; followed with shellcheck -x
. "$(dirname "$0")/bench-lib.sh"

# One field of the transform's --json line.
field() {
    "$venv/bin/python" -c 'import json, sys; v = json.load(open(sys.argv[1])).get(sys.argv[2]); print("" if v is None else v)' "$work/out.json" "$1"
}

printf 'release seconds peak_kib rows_read changes_stored history_rows lakehouse_bytes mode\n' >"$work/curve"
k=0
while [ "$k" -lt "$releases" ]; do
    zip="$cache/upstream/psd-$rows-s$k.zip"
    [ -f "$zip" ] || "$bin/psd-gen" --rows "$rows" --snapshot "$k" --out "$zip" 2>/dev/null
    "$bin/extract-psd" --url "$zip" 2>/dev/null >/dev/null
    echo "release $((k + 1))/$releases" >&2
    DUCKDB_PATH="$work/lake/lakehouse.duckdb" /usr/bin/time -f '%e %M' -o "$work/time.out" \
        "$bin/transform" --json >"$work/out.json" 2>"$work/stderr.out" || {
        echo "bench: transform of release $((k + 1)) failed:" >&2
        tail -n 30 "$work/stderr.out" >&2
        exit 1
    }
    read -r secs kib <"$work/time.out"
    printf '%s %s %s %s %s %s %s %s\n' "$((k + 1))" "$secs" "$kib" "$(field rows_read)" \
        "$(field changes_stored)" "$(field history_rows)" \
        "$(stat -c %s "$work/lake/lakehouse.duckdb")" "$(field mode)" >>"$work/curve"
    k=$((k + 1))
done

# A cycle with nothing new (before the full rebuild, whose success changes the last good
# fingerprint: it names another lakehouse).
t0=$(date +%s%N)
DUCKDB_PATH="$work/lake/lakehouse.duckdb" "$bin/transform" 2>"$work/stderr.out"
t1=$(date +%s%N)
grep -q "nothing new" "$work/stderr.out" || { echo "bench: expected a no-op transform:" >&2; cat "$work/stderr.out" >&2; exit 1; }

# The full rebuild, then the same work by hand over the same files, in landing order.
DUCKDB_PATH="$work/rebuilt/lakehouse.duckdb" timed full "$bin/transform" --full-rebuild
"$venv/bin/python" -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["psd"]))' \
    "$work/lake/.sqlmesh/landing-manifest.json" >"$work/files.json"
cat >"$work/hand.py" <<'PY'
import json, sys, time, duckdb
db, files, secs = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
csv = """read_csv($files, header = TRUE, auto_detect = FALSE, delim = ',', quote = '"', escape = '"',
  compression = 'gzip', filename = TRUE, strict_mode = TRUE, null_padding = FALSE, nullstr = '',
  columns = {'Commodity_Code': 'VARCHAR', 'Commodity_Description': 'VARCHAR', 'Country_Code': 'VARCHAR',
  'Country_Name': 'VARCHAR', 'Market_Year': 'INTEGER', 'Calendar_Year': 'INTEGER', 'Month': 'INTEGER',
  'Attribute_ID': 'VARCHAR', 'Attribute_Description': 'VARCHAR', 'Unit_ID': 'VARCHAR',
  'Unit_Description': 'VARCHAR', 'Value': 'DOUBLE'}) WITH ORDINALITY"""
sql = f"""
SET memory_limit = '1GB';
CREATE TABLE kept AS
SELECT list_position($files, filename) AS file, Commodity_Code AS c, Country_Code AS k,
       Market_Year AS y, Attribute_ID AS a,
       arg_max(struct_pack(Commodity_Description, Country_Name, Attribute_Description, Unit_ID,
               Unit_Description, Calendar_Year, Month, Value),
               struct_pack(Calendar_Year, Month, ordinality)) AS r,
       count(*) AS key_rows
FROM {csv} GROUP BY ALL;
CREATE TABLE files AS
SELECT file, printf('%04d-%02d', max(r.Calendar_Year * 100 + r.Month) // 100,
                    max(r.Calendar_Year * 100 + r.Month) % 100) AS release,
       sum(key_rows) AS rows_read
FROM kept GROUP BY file;
CREATE TABLE history AS
WITH final AS (
  SELECT file, release FROM files QUALIFY row_number() OVER (PARTITION BY release ORDER BY file DESC) = 1
), vals AS (
  SELECT f.release, c, k, y, a, r.Value AS value, r, lag(r.Value) OVER w AS previous,
         lag(f.release) OVER w AS previous_release
  FROM kept JOIN final AS f USING (file)
  WINDOW w AS (PARTITION BY c, k, y, a ORDER BY f.release)
)
SELECT c, k, y, a, value, release AS valid_from_release,
       lead(release) OVER (PARTITION BY c, k, y, a ORDER BY release) AS valid_to_release,
       previous_release IS NOT NULL AND value IS DISTINCT FROM previous AS revision, previous, r
FROM vals WHERE previous_release IS NULL OR value IS DISTINCT FROM previous;
CREATE TABLE latest AS SELECT * FROM history WHERE valid_to_release IS NULL;
CREATE TABLE balance AS
SELECT c, k, y, max(value) FILTER (WHERE a = '020') AS beginning_stocks,
       max(value) FILTER (WHERE a = '028') AS production, max(value) FILTER (WHERE a = '057') AS imports,
       max(value) FILTER (WHERE a = '086') AS total_supply, max(value) FILTER (WHERE a = '088') AS exports,
       max(value) FILTER (WHERE a = '125') AS domestic_consumption,
       max(value) FILTER (WHERE a = '176') AS ending_stocks, max(value) FILTER (WHERE a = '178') AS total_distribution
FROM latest WHERE a IN ('020', '028', '057', '086', '088', '125', '176', '178') GROUP BY c, k, y;
CREATE TABLE world AS SELECT c, y, sum(production) AS production, count(DISTINCT k) AS countries FROM balance GROUP BY c, y;
"""
t0 = time.perf_counter()
con = duckdb.connect(db)
for statement in sql.split(";\n"):
    if statement.strip():
        params = {"files": files} if "$files" in statement else None
        con.execute(statement, params)
with open(secs, "a") as f:
    f.write(f"{time.perf_counter() - t0:.3f}\n")
print(con.execute("SELECT count(*) FROM history").fetchone()[0])
PY
rm -f "$work/hand.duckdb"
/usr/bin/time -f '%e %M' -o "$work/time.out" "$venv/bin/python" "$work/hand.py" "$work/hand.duckdb" \
    "$work/files.json" "$work/hand.secs" >"$work/hand.rows" 2>"$work/stderr.out" || {
    echo "bench: the hand-written SQL failed:" >&2
    tail -n 30 "$work/stderr.out" >&2
    exit 1
}
cat "$work/time.out" >>"$work/hand"
last_history=$(awk 'END {print $6}' "$work/curve")
[ "$(cat "$work/hand.rows")" = "$last_history" ] || {
    echo "bench: the hand SQL found $(cat "$work/hand.rows") history rows, the transform $last_history" >&2
    exit 1
}

printf '\ntransform benchmark: %s releases of %s rows, one per cycle (%s cores)\n' "$releases" "$rows" "$(nproc)"
awk 'NR > 1 {printf "  release %d: %7.2f s, peak RSS %5d MiB, %8d rows read, %7d changes stored, history %8d rows, lakehouse %5.0f MiB (%s)\n", $1, $2, $3 / 1024, $4, $5, $6, $7 / 1048576, $8}' "$work/curve"
awk 'NR > 1 {t[$1] = $2; rss = ($3 > rss ? $3 : rss); n = $1; ch[$1] = $5; h[$1] = $6; sz[$1] = $7}
    END {
        printf "  release %d / release 2: %.2fx (goal <= 1.5x)\n", n, t[n] / t[2]
        # Least squares over releases 2..n: the cost of one more release, projected to 120.
        for (i = 2; i <= n; i++) { sx += i; sy += t[i]; sxx += i * i; sxy += i * t[i]; m++ }
        slope = (m * sxy - sx * sy) / (m * sxx - sx * sx); icept = (sy - slope * sx) / m
        printf "  projection: %.3f s per release more, release 120 %.2f s = %.2fx release 2 (goal <= 1.5x)\n", slope, icept + slope * 120, (icept + slope * 120) / t[2]
        per_row = sz[1] / h[1]; worst = 0
        for (i = 2; i <= n; i++) { g = (sz[i] - sz[i - 1]) / (ch[i] * per_row); if (g > worst) worst = g }
        printf "  lakehouse growth per release: at most %.2fx the changed rows (at %.0f bytes per history row; goal <= 2x)\n", worst, per_row
        printf "  peak RSS of a cycle: %d MiB (goal <= 2048 MiB)\n", rss / 1024
    }' "$work/curve"
read -r full_secs full_kib <"$work/full"
hand_secs=$(cat "$work/hand.secs")
printf '  full rebuild of %s releases: %.2f s, peak RSS %d MiB; by hand in DuckDB %.2f s, peak RSS %d MiB\n' \
    "$releases" "$full_secs" "$((full_kib / 1024))" "$hand_secs" "$(($(awk '{print $2}' "$work/hand") / 1024))"
awk -v s="$full_secs" -v f="$hand_secs" 'BEGIN {printf "  full rebuild %.2fx the hand-written SQL (goal <= 1.2x)\n", s / f}'
printf '  cycle with nothing new: %d ms\n' "$(((t1 - t0) / 1000000))"
