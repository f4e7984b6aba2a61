#!/bin/sh
# The demo: a generated PSD bulk zip served on loopback, extracted twice (new, then unchanged
# via a conditional request), the run ledger as operators query it, then the transform into
# the lakehouse, the export of the serving file, and a few rows of serving.global_balance read
# from it as the web app reads it.
# Runs from the repository root with the development defaults (data/...).
set -eu

bin=${BIN_DIR:?BIN_DIR must name the directory of the built binaries}
venv=${VENV:?VENV must name the SQLMesh virtualenv}
rows=${DEMO_ROWS:-2100000}
export LANDING_DIR="${LANDING_DIR:-data/landing}"
export STATE_DB="${STATE_DB:-$LANDING_DIR/.state.sqlite}"
export DUCKDB_PATH="${DUCKDB_PATH:-data/lakehouse.duckdb}"
export SERVING_DUCKDB_PATH="${SERVING_DUCKDB_PATH:-data/analytics.duckdb}"
export MATERIA_SQLMESH="${MATERIA_SQLMESH:-$venv/bin/sqlmesh}"

mkdir -p data/upstream
zip=data/upstream/psd_alldata_csv.zip
if [ ! -f "$zip" ]; then
    echo "== generating a PSD bulk zip ($rows rows)"
    "$bin/psd-gen" --rows "$rows" --out "$zip"
fi

served=$(scripts/serve-dir.sh data/upstream)
server_pid=${served% *}
port=${served#* }
trap 'kill "$server_pid" 2>/dev/null || true' EXIT INT TERM
export PSD_URL="http://127.0.0.1:$port/psd_alldata_csv.zip"

echo "== extract-psd (first run)"
"$bin/extract-psd" --json
echo "== extract-psd (second run: upstream unchanged)"
"$bin/extract-psd" --json

echo "== run ledger: SELECT extractor, status, finished_at FROM extraction_runs ORDER BY run_id DESC LIMIT 20"
python3 - "$STATE_DB" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT extractor, status, finished_at FROM extraction_runs ORDER BY run_id DESC LIMIT 20").fetchall()
print(f"{'extractor':<10} {'status':<10} finished_at")
for extractor, status, finished in rows:
    print(f"{extractor:<10} {status:<10} {finished}")
PY
echo "== landing files"
find "$LANDING_DIR/psd" -type f | sort

echo "== transform (SQLMesh: raw -> staging -> cleaned -> serving)"
"$bin/transform" --json
echo "== export-serving (publish analytics.duckdb atomically)"
"$bin/export-serving" --json
echo "== serving.global_balance in $SERVING_DUCKDB_PATH: green coffee, latest market years"
"$venv/bin/python" - "$SERVING_DUCKDB_PATH" <<'PY'
import duckdb, sys
db = duckdb.connect(sys.argv[1], read_only=True)
db.sql("""
    SELECT commodity, market_year, unit, production, exports, ending_stocks,
           round(stocks_to_use, 3) AS stocks_to_use, country_count
    FROM serving.global_balance
    WHERE commodity_code = '0711100'
    ORDER BY market_year DESC
    LIMIT 5
""").show()
PY
