#!/bin/sh
# Disaster-recovery drill: restore the landing data from the backup into an empty directory,
# rebuild the lakehouse and the serving file from it alone, and prove every serving table
# identical in content to the live one (order-independent checksums). Touches nothing live.
#
# Usage: BIN_DIR=... VENV=... scripts/dr-drill.sh
# Environment: the live LANDING_DIR, DUCKDB_PATH, SERVING_DUCKDB_PATH (development defaults
# data/...); BACKUP_REMOTE and, for r2:, R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY, R2_ENDPOINT.
# Without BACKUP_REMOTE the drill first pushes to data/backup (a local remote), as `make
# dr-drill` does on the demo's data. DR_DRILL_DIR keeps the rebuilt files (default: a temp dir,
# removed at the end).
set -eu

bin=${BIN_DIR:?BIN_DIR must name the directory of the built binaries}
venv=${VENV:?VENV must name the SQLMesh virtualenv}
live_landing=${LANDING_DIR:-data/landing}
live_serving=${SERVING_DUCKDB_PATH:-data/analytics.duckdb}
export MATERIA_SQLMESH="${MATERIA_SQLMESH:-$venv/bin/sqlmesh}"
[ -f "$live_serving" ] || { echo "dr-drill: no live serving file at $live_serving (run the pipeline first)" >&2; exit 2; }

if [ -z "${BACKUP_REMOTE:-}" ]; then
    BACKUP_REMOTE=data/backup
    export BACKUP_REMOTE
    echo "== backup-sync push to the local remote $BACKUP_REMOTE"
    LANDING_DIR=$live_landing "$bin/backup-sync" push
fi

if [ -n "${DR_DRILL_DIR:-}" ]; then
    work=$DR_DRILL_DIR
    mkdir -p "$work"
    [ -z "$(ls -A "$work")" ] || { echo "dr-drill: $work is not empty" >&2; exit 2; }
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT INT TERM
fi

# Everything below runs against the drill's own directories only.
export LANDING_DIR="$work/landing" STATE_DB="$work/state.sqlite"
export DUCKDB_PATH="$work/lakehouse.duckdb" SERVING_DUCKDB_PATH="$work/analytics.duckdb"
unset METRICS_DIR

echo "== backup-sync restore --to $work/landing (every file checked against its name)"
"$bin/backup-sync" restore --to "$work/landing"
echo "== transform from the restored landing files alone"
"$bin/transform"
echo "== export-serving"
"$bin/export-serving"

echo "== serving tables: live $live_serving against rebuilt $SERVING_DUCKDB_PATH"
"$venv/bin/python" - "$live_serving" "$SERVING_DUCKDB_PATH" <<'PY'
import sys
import duckdb

live, rebuilt = (duckdb.connect(p, read_only=True) for p in sys.argv[1:3])

def tables(c):
    return sorted(r[0] for r in c.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'serving' AND table_name <> '_materia_export'").fetchall())

def columns(c, t):
    return c.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'serving' AND table_name = ? ORDER BY ordinal_position", [t]).fetchall()

def checksum(c, t):
    # Order-independent: the sum of every row's hash, and the row count.
    return c.execute(f'SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0) FROM serving."{t}" t').fetchone()

failed = []
if tables(live) != tables(rebuilt):
    failed.append(f"tables differ: live {tables(live)}, rebuilt {tables(rebuilt)}")
print(f"{'table':<24} {'rows':>10} {'checksum':>22}  result")
for t in tables(live):
    if t not in tables(rebuilt):
        continue
    a, b = checksum(live, t), checksum(rebuilt, t)
    same = a == b and columns(live, t) == columns(rebuilt, t)
    print(f"{t:<24} {a[0]:>10} {a[1] % 10**20:>22}  {'identical' if same else 'DIFFERENT'}")
    if not same:
        failed.append(f"{t}: live {a}, rebuilt {b}")
if failed:
    print("dr-drill: FAILED: " + "; ".join(failed), file=sys.stderr)
    sys.exit(1)
print("dr-drill: every serving table rebuilt from the backup alone is identical to the live one")
PY
