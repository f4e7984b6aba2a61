"""SQLMesh configuration of the Materia transform.

The landing manifest (every landing file, oldest first) is a model variable. A new landing file
therefore changes the raw model's definition, and `sqlmesh plan --auto-apply` rebuilds raw and
everything downstream in the same supervisor cycle; `sqlmesh run` would wait for a cron tick.
The raw model reads exactly the listed files, never a glob that could change mid-run.

Environment (the same variables as every Materia step):
  LANDING_DIR  root of the landing store (default data/landing)
  STATE_DB     run ledger, for the order in which files landed (default $LANDING_DIR/.state.sqlite)
  DUCKDB_PATH  the lakehouse (default data/lakehouse.duckdb)
  MATERIA_SQLMESH_CACHE_DIR  SQLMesh's cache (default: .cache in this directory); the transform
               step points it beside the lakehouse so that a release directory can stay read-only
"""

import os
import re
import sqlite3
from pathlib import Path

from sqlmesh.core.config import (
    CategorizerConfig,
    Config,
    DuckDBConnectionConfig,
    GatewayConfig,
    ModelDefaultsConfig,
    PlanConfig,
)

ADDRESS = re.compile(r"^[0-9a-f]{64}\.csv\.gzip$")


def _env_path(name: str, default: str) -> Path:
    # An empty variable counts as unset, as for every Materia binary.
    return Path(os.environ.get(name) or default)


def _ledger_order(state_db: Path) -> dict:
    """Landing path (relative) -> run_id of the run that first landed it."""
    if not state_db.is_file():
        return {}
    try:
        db = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=10)
        try:
            rows = db.execute(
                "SELECT path, min(run_id) FROM extraction_runs "
                "WHERE status = 'success' AND path IS NOT NULL GROUP BY path"
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return {}
    return {path: run_id for path, run_id in rows}


def landing_files(landing_dir: Path, state_db: Path) -> list:
    """Absolute paths of every PSD landing file, in landing order.

    Month directories order files across months; within a month the ledger's order of first
    landing decides, then modification time (files restored without a ledger), then name.
    """
    root = landing_dir.resolve()
    order = _ledger_order(state_db)
    found = []
    for path in root.glob("psd/[0-9][0-9][0-9][0-9]/[0-9][0-9]/*.csv.gzip"):
        if not ADDRESS.match(path.name):
            continue
        relative = path.relative_to(root).as_posix()
        year, month = path.parent.parent.name, path.parent.name
        ledger = order.get(relative, float("inf"))
        found.append(((year, month, ledger, path.stat().st_mtime_ns, path.name), str(path)))
    return [p for _, p in sorted(found)]


LANDING_DIR = _env_path("LANDING_DIR", "data/landing")
STATE_DB = _env_path("STATE_DB", str(LANDING_DIR / ".state.sqlite"))
DUCKDB_PATH = _env_path("DUCKDB_PATH", "data/lakehouse.duckdb")

config = Config(
    gateways={"local": GatewayConfig(connection=DuckDBConnectionConfig(database=str(DUCKDB_PATH)))},
    default_gateway="local",
    model_defaults=ModelDefaultsConfig(dialect="duckdb"),
    # Superseded physical tables are dropped by the janitor (cycle.py, after each plan) once
    # no environment uses them: each landing file creates new versions, and the lakehouse
    # should not keep a copy per month.
    snapshot_ttl="in 1 minute",
    plan=PlanConfig(auto_categorize_changes=CategorizerConfig.all_full()),
    variables={"landing_files": landing_files(LANDING_DIR, STATE_DB)},
    cache_dir=os.environ.get("MATERIA_SQLMESH_CACHE_DIR") or None,
    # The pipeline server makes no outbound calls it does not need.
    disable_anonymized_analytics=True,
)
