#!/bin/sh
# The demo: a generated PSD bulk zip served on loopback, extracted twice (new, then unchanged
# via a conditional request), and the run ledger as operators query it.
# Runs from the repository root with the development defaults (data/...).
set -eu

bin=${BIN_DIR:?BIN_DIR must name the directory of the built binaries}
rows=${DEMO_ROWS:-2100000}
export LANDING_DIR="${LANDING_DIR:-data/landing}"
export STATE_DB="${STATE_DB:-$LANDING_DIR/.state.sqlite}"

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
