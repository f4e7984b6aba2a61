"""SQLMesh configuration of the Materia transform.

The landing manifest (every landing file of every dataset, oldest first) becomes one model
variable per dataset, `landing_files_<dataset>`. A new landing file therefore changes the
definition of the models that read its dataset (and of no other), and `sqlmesh plan
--auto-apply` rebuilds them and everything downstream in the same supervisor cycle; `sqlmesh
run` would wait for a cron tick. A raw model reads exactly the listed files, never a glob that
could change mid-run.

PSD is incremental (history.py): `psd_stage_files` are the files this cycle reads (the new ones,
or all of them for a full rebuild; cycle.py sets MATERIA_STAGE_FILES), and `psd_history`, a
digest of the psd file list and of the history's build (MATERIA_HISTORY_BUILD, new with each
full rebuild), makes each new file and each full rebuild a new version of the models on top of
the history table, which SQLMesh does not see change.

Environment (the same variables as every Materia step):
  MATERIA_LANDING_MANIFEST  JSON file {"<dataset>": ["/abs/path.csv.gzip", ...]} in landing order,
               written by the transform step for this cycle (the files it fingerprinted and
               checks afterwards). Unset, as when SQLMesh runs by hand: the landing directory is
               listed here, each dataset ordered by month, then modification time, then name,
               without the files the state DB holds in quarantine (as the transform skips them).
  LANDING_DIR  root of the landing store (default data/landing), listed without a manifest
  STATE_DB     the state DB read for quarantined files (default $LANDING_DIR/.state.sqlite)
  DUCKDB_PATH  the lakehouse (default data/lakehouse.duckdb)
  MATERIA_STAGE_FILES  JSON list of the psd files this cycle stages (set by cycle.py); unset: the
               manifest's psd files
  MATERIA_HISTORY_BUILD  the history's build id (set by cycle.py; history.py)
  MATERIA_HISTORY_SEQUENCE  the last file's sequence the history holds after this cycle
  MATERIA_SQLMESH_CACHE_DIR  SQLMesh's cache (default: .cache in this directory); the transform
               step points it beside the lakehouse so that a release directory can stay read-only
"""

import hashlib
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


def history_variables(manifest: dict) -> dict:
    """`psd_stage_files` and `psd_history` (see the module's docstring)."""
    files = manifest.get("psd", [])
    staged = os.environ.get("MATERIA_STAGE_FILES")
    build = os.environ.get("MATERIA_HISTORY_BUILD", "")
    digest = hashlib.sha256("\n".join([build, *files]).encode()).hexdigest()
    sequence = os.environ.get("MATERIA_HISTORY_SEQUENCE")
    return {
        # The views on top of the history show files up to this one (history.Decision.sequence);
        # by hand, everything.
        "psd_built_sequence": int(sequence) if sequence else 2_147_483_647,
        # Never an empty list: the raw view must bind (a cycle without new files reads none).
        "psd_stage_files": json.loads(staged) if staged and staged != "[]" else files,
        "psd_history": digest,
    }


LANDING_DIR = _env_path("LANDING_DIR", "data/landing")
DUCKDB_PATH = _env_path("DUCKDB_PATH", "data/lakehouse.duckdb")
# DuckDB's memory for the build: a cycle's memory stays flat as history grows, and larger work
# (a full rebuild of many releases) spills to `<lakehouse>.tmp` instead of growing.
MEMORY_LIMIT = "1GB"
MANIFEST = landing_manifest(LANDING_DIR)

config = Config(
    gateways={
        "local": GatewayConfig(
            connection=DuckDBConnectionConfig(
                database=str(DUCKDB_PATH),
                connector_config={
                    "memory_limit": MEMORY_LIMIT,
                    # Spilled work beside the lakehouse (DuckDB's default), named.
                    "temp_directory": str(DUCKDB_PATH) + ".tmp",
                },
            )
        )
    },
    default_gateway="local",
    model_defaults=ModelDefaultsConfig(dialect="duckdb"),
    # Superseded physical tables are dropped by the janitor (cycle.py, after each plan) once
    # no environment uses them: each landing file creates new versions, and the lakehouse
    # should not keep a copy per month.
    snapshot_ttl="in 1 minute",
    plan=PlanConfig(auto_categorize_changes=CategorizerConfig.all_full()),
    variables={
        **{f"landing_files_{dataset}": files for dataset, files in MANIFEST.items()},
        **history_variables(MANIFEST),
    },
    cache_dir=os.environ.get("MATERIA_SQLMESH_CACHE_DIR") or None,
    # The pipeline server makes no outbound calls it does not need.
    disable_anonymized_analytics=True,
)
