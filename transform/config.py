"""SQLMesh configuration of the Materia transform.

The landing manifest (every landing file of every dataset, oldest first) becomes one model
variable per dataset, `landing_files_<dataset>`. A new landing file therefore changes the
definition of the models that read its dataset (and of no other), and `sqlmesh plan
--auto-apply` rebuilds them and everything downstream in the same supervisor cycle; `sqlmesh
run` would wait for a cron tick. A raw model reads exactly the listed files, never a glob that
could change mid-run.

Environment (the same variables as every Materia step):
  MATERIA_LANDING_MANIFEST  JSON file {"<dataset>": ["/abs/path.csv.gzip", ...]} in landing order,
               written by the transform step for this cycle (the files it fingerprinted and
               checks afterwards). Unset, as when SQLMesh runs by hand: the landing directory is
               listed here, each dataset ordered by month, then modification time, then name,
               without the files the state DB holds in quarantine (as the transform skips them).
  LANDING_DIR  root of the landing store (default data/landing), listed without a manifest
  STATE_DB     the state DB read for quarantined files (default $LANDING_DIR/.state.sqlite)
  DUCKDB_PATH  the lakehouse (default data/lakehouse.duckdb)
  MATERIA_SQLMESH_CACHE_DIR  SQLMesh's cache (default: .cache in this directory); the transform
               step points it beside the lakehouse so that a release directory can stay read-only
"""

import json
import os
import re
from pathlib import Path

from sqlmesh.core.config import (
    CategorizerConfig,
    Config,
    DuckDBConnectionConfig,
    GatewayConfig,
    ModelDefaultsConfig,
    PlanConfig,
)

# Beside this file: SQLMesh and cycle.py load config.py with this directory on sys.path.
from state_db import quarantined

ADDRESS = re.compile(r"^[0-9a-f]{64}\.csv\.gzip$")
# As landing_store::is_dataset_name: `state` is the backup remote's state DB snapshots.
DATASET = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
RESERVED = {"state"}


def _env_path(name: str, default: str) -> Path:
    # An empty variable counts as unset, as for every Materia binary.
    return Path(os.environ.get(name) or default)


def listed(landing_dir: Path, state_db: Path) -> dict:
    """{dataset: absolute paths of its landing files}, each ordered by month directory, then
    modification time, then name: the order without the ledger, for SQLMesh run by hand.
    Files quarantined in `state_db` are left out, as the transform step leaves them out."""
    root = landing_dir.resolve()
    if not root.is_dir():
        return {}
    held = quarantined(state_db)
    manifest = {}
    for dataset in sorted(p for p in root.iterdir() if p.is_dir()):
        if not DATASET.match(dataset.name) or dataset.name in RESERVED:
            continue
        found = []
        for path in dataset.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/*.csv.gzip"):
            if ADDRESS.match(path.name) and path.relative_to(root).as_posix() not in held:
                year, month = path.parent.parent.name, path.parent.name
                found.append(((year, month, path.stat().st_mtime_ns, path.name), str(path)))
        manifest[dataset.name] = [p for _, p in sorted(found)]
    return manifest


def landing_manifest(landing_dir: Path) -> dict:
    """The transform step's manifest when it names one, else the landing directory listed."""
    path = os.environ.get("MATERIA_LANDING_MANIFEST")
    if not path:
        return listed(landing_dir, _env_path("STATE_DB", str(landing_dir / ".state.sqlite")))
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if not isinstance(manifest, dict) or not all(
        DATASET.match(d) and isinstance(files, list) and all(isinstance(p, str) for p in files)
        for d, files in manifest.items()
    ):
        raise ValueError(f"{path} is not a landing manifest ({{dataset: [paths]}})")
    return manifest


LANDING_DIR = _env_path("LANDING_DIR", "data/landing")
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
    variables={
        f"landing_files_{dataset}": files
        for dataset, files in landing_manifest(LANDING_DIR).items()
    },
    cache_dir=os.environ.get("MATERIA_SQLMESH_CACHE_DIR") or None,
    # The pipeline server makes no outbound calls it does not need.
    disable_anonymized_analytics=True,
)
