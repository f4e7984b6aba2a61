#!/bin/sh
# The demo: a generated PSD bulk zip and a generated FRED coffee prices CSV served on loopback,
# then two supervisor cycles (the due extractors of workflows.toml, extract-psd and
# extract-prices -> transform -> export-serving; in the second no extractor is due yet, and
# transform and export-serving keep what they built: `unchanged`), the
# materia-status table, a few rows of serving.global_balance and of the stocks-to-use beside
# price table read from the published
# serving file, and materia-web started on it: the overview page and the coffee API fetched.
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

prices=data/upstream/fredgraph.csv
if [ ! -f "$prices" ]; then
    echo "== generating a FRED coffee prices CSV (monthly, 1990 to 2025)"
    # A deterministic walk in US cents per pound, shaped like FRED's fredgraph.csv: the
    # robustas start three months later (`.` is FRED's old missing value).
    awk 'BEGIN {
        print "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM"
        a = 90; r = 55; s = 7
        for (y = 1990; y <= 2025; y++) for (m = 1; m <= 12; m++) {
            s = (s * 16807) % 2147483647; a = a * (0.94 + (s % 1000) / 8000)
            s = (s * 16807) % 2147483647; r = r * (0.94 + (s % 1000) / 8000)
            if (a < 40) a = 40; if (a > 400) a = 400; if (r < 25) r = 25; if (r > 300) r = 300
            printf "%04d-%02d-01,%.2f,%s\n", y, m, a, (y == 1990 && m <= 3) ? "." : sprintf("%.2f", r)
        }
    }' >"$prices.tmp" && mv "$prices.tmp" "$prices"
fi

served=$(scripts/serve-dir.sh data/upstream)
server_pid=${served% *}
port=${served#* }
web_pid=""
trap 'kill "$server_pid" 2>/dev/null || true; [ -z "$web_pid" ] || kill "$web_pid" 2>/dev/null || true' EXIT INT TERM
export PSD_URL="http://127.0.0.1:$port/psd_alldata_csv.zip"
export PRICES_URL="http://127.0.0.1:$port/fredgraph.csv"

echo "== materia-status --due: the extractors of workflows.toml due now"
"$bin/materia-status" --due
echo "== supervisor --once: the due extractors -> transform -> export-serving"
MATERIA_BIN_DIR="$bin" sh scripts/supervisor.sh --once
echo "== supervisor --once again: no extractor due yet, nothing to transform or export"
MATERIA_BIN_DIR="$bin" sh scripts/supervisor.sh --once

echo "== materia-status --max-age extract-psd=35d --max-age extract-prices=3d --max-age export-serving=2h"
"$bin/materia-status" --max-age extract-psd=35d --max-age extract-prices=3d --max-age export-serving=2h
echo "== landing files"
find "$LANDING_DIR/psd" "$LANDING_DIR/prices" -type f | sort

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
print("serving.coffee_stocks_to_use_price: world stocks-to-use and the marketing year's average price")
db.sql("""
    SELECT marketing_year, series, round(stocks_to_use, 3) AS stocks_to_use,
           round(avg_price, 1) AS avg_price, price_unit, price_months
    FROM serving.coffee_stocks_to_use_price
    ORDER BY market_year DESC, series
    LIMIT 6
""").show()
PY

echo "== materia-web on $SERVING_DUCKDB_PATH"
web_log=data/materia-web.demo.log
"$bin/materia-web" --listen 127.0.0.1:0 >/dev/null 2>"$web_log" &
web_pid=$!
# It logs its address once the first generation is read and it accepts connections.
tries=0
until grep -q "listening on" "$web_log" 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 600 ] || ! kill -0 "$web_pid" 2>/dev/null; then
        cat "$web_log" >&2
        echo "demo: materia-web did not start" >&2
        exit 1
    fi
    sleep 0.1
done
web=$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\),.*/\1/p' "$web_log" | head -n 1)
"$venv/bin/python" - "http://$web" <<'PY'
import json, re, sys, urllib.request
base = sys.argv[1]
with urllib.request.urlopen(base + "/", timeout=30) as r:
    page = r.read().decode()
    title = re.search(r"<title>(.*?)</title>", page).group(1)
    print(f"GET / -> {r.status}, {len(page)} bytes: {title}")
url = base + "/api/v1/global-balance?commodity=0711100"
with urllib.request.urlopen(url, timeout=30) as r:
    body = json.load(r)
    print(f"GET /api/v1/global-balance?commodity=0711100 -> {r.status}, {len(body['rows'])} market years of {body['commodity']} {body['unit']}; the latest:")
    print(json.dumps(body["rows"][-1], indent=2))
PY
# SIGTERM: it finishes what it is answering and exits 0.
kill "$web_pid"
wait "$web_pid" || { echo "demo: materia-web did not stop cleanly" >&2; exit 1; }
web_pid=""
echo "== done. Keep the site running with: make web   (then open http://127.0.0.1:8080/)"

