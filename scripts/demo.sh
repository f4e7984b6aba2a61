#!/bin/sh
# The demo: a generated PSD bulk zip served on loopback, then two supervisor cycles
# (extract-psd -> transform -> export-serving; the second finds upstream unchanged), the
# materia-status table, and a few rows of serving.global_balance read from the published
# serving file as the web app reads it.
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

echo "== supervisor --once: extract-psd -> transform -> export-serving"
MATERIA_BIN_DIR="$bin" sh scripts/supervisor.sh --once
echo "== supervisor --once again: upstream unchanged (HTTP 304), nothing to transform"
MATERIA_BIN_DIR="$bin" sh scripts/supervisor.sh --once

echo "== materia-status --max-age extract-psd=35d --max-age export-serving=2h"
"$bin/materia-status" --max-age extract-psd=35d --max-age export-serving=2h
echo "== landing files"
find "$LANDING_DIR/psd" -type f | sort

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
