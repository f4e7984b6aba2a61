"""The PSD history: every key's value as validity ranges over releases, kept outside SQLMesh's
versioning and appended to by the transform step, one landing file at a time.

A landing file's release is the greatest Calendar_Year-Month stamp in it (`YYYY-MM`). Files are
applied in build order: by release, then by landing order (the manifest's). Applying a file
stages its kept rows in `history.psd_incoming`, renders the change set (the SQLMesh model
`history.psd_changes`: a hash join of the file against every key's current range), closes the
ranges it replaces (`valid_to_release` = the file's release) and appends it. A file whose
release is the last built release replaces that release's final state: the ranges the previous
file of that release opened are deleted and those it closed reopened, then the new file is
applied. The tables (external models, `external_models.yaml`):

  history.psd_value_history  the ranges (one row per key and range; see the yaml)
  history.psd_files          every file applied, in build order (`sequence`, 1 = first), its
                             release, rows read, distinct keys, changes stored; `superseded`
                             when a later file of its release replaced it
  history.build_state        the project digest the history was built with, and the build's
                             id (new with each full rebuild)

Incremental when the history can be trusted; otherwise a full rebuild (every file again, in
one transaction, the same fold), with the reason:
  requested (--full-rebuild); no lakehouse; no history in it; the project's files changed since
  it was built; a built file no longer read (quarantined); a file not yet built that landed
  before the last built one (released from quarantine, restored); a new file whose release is
  older than the last built release.

Everything a cycle writes to these tables is one DuckDB transaction: a cycle killed at any point
leaves the history as it was before it, or as it is after it.
"""

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parent
TABLES = ("psd_value_history", "psd_incoming", "psd_files")
KEY = ("commodity_code", "country_code", "market_year", "attribute_id")


@dataclass
class Decision:
    """What a cycle does with the history: `stage` are the files it reads."""

    mode: str  # "incremental" or "full"
    reason: str | None
    stage: list = field(default_factory=list)
    # Names this build of the history: new with each full rebuild, kept by incremental cycles.
    # config.py folds it into `psd_history`, so a full rebuild also rebuilds every model on top.
    build: str = ""
    # The sequence of the last file the history will hold once this cycle commits: the views
    # on top show no more than this (config.py: `psd_built_sequence`), so that until the plan
    # has switched them, serving shows the previous build even though the history committed.
    sequence: int = 0


@dataclass
class OutOfOrder(Exception):
    """A new file's release is older than the last built release: rebuild in release order."""

    reason: str


def relative(path: str) -> str:
    """`psd/YYYY/MM/<sha256>.csv.gzip` of a landing path, as operators name files."""
    return "/".join(Path(path).parts[-4:])


def sha_of(path: str) -> str:
    return Path(path).name.split(".", 1)[0]


def ddl() -> str:
    """CREATE statements of the history tables, from external_models.yaml (one definition)."""
    from sqlmesh.utils.yaml import load

    models = {m["name"]: m["columns"] for m in load(PROJECT / "external_models.yaml")}
    statements = ["CREATE SCHEMA IF NOT EXISTS history"]
    for table in TABLES:
        columns = ", ".join(f"{c} {t}" for c, t in models[f"history.{table}"].items())
        statements.append(f"CREATE TABLE IF NOT EXISTS history.{table} ({columns})")
    statements.append(
        "CREATE TABLE IF NOT EXISTS history.build_state (project_digest TEXT, build TEXT)"
    )
    return ";\n".join(statements)


def decide(lakehouse: Path, files: list, digest: str | None, requested: bool) -> Decision:
    """Incremental (stage the files not built yet) or full (stage all), and why."""

    def full(reason: str) -> Decision:
        return Decision("full", reason, list(files), new_build(), len(files))

    if requested:
        return full("requested (--full-rebuild)")
    if not lakehouse.is_file():
        return full(f"no lakehouse at {lakehouse}")
    import duckdb

    con = duckdb.connect(str(lakehouse), read_only=True)
    try:
        found = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'history' "
            "AND table_name IN ('psd_value_history', 'psd_files', 'build_state')"
        ).fetchone()[0]
        if found < 3:
            return full("the lakehouse has no history yet")
        state = con.execute("SELECT project_digest, build FROM history.build_state").fetchone()
        built = con.execute(
            "SELECT landing_sha256, path FROM history.psd_files ORDER BY sequence"
        ).fetchall()
    finally:
        con.close()
    if state is None:
        return full("the lakehouse has no history yet")
    if digest and state[0] != digest:
        return full("the project's files changed since the history was built")
    listed = [sha_of(p) for p in files]
    read = set(listed)
    for sha, path in built:
        if sha not in read:
            return full(f"landing file {path} was built and is not read any more (quarantined)")
    built_shas = {sha for sha, _ in built}
    for path in files[: len(built)]:
        if sha_of(path) not in built_shas:
            return full(
                f"landing file {relative(path)} landed before the last built file "
                "(released from quarantine or restored)"
            )
    return Decision("incremental", None, list(files[len(built) :]), state[1], len(files))


def new_build() -> str:
    import uuid

    return uuid.uuid4().hex


def render(context, model: str) -> str:
    return context.render(model).sql(dialect="duckdb")


# The staging chain, bottom up: each model reads the one before it.
STAGING = ("raw.psd_rows", "staging.psd", "staging.psd_keys")


def render_staging(context) -> str:
    """One query reading the staged files: each model of STAGING rendered on its own, its
    reference to the one below replaced by a CTE (SQLMesh's own expansion mangles read_csv's
    `columns` struct), so the query does not depend on the views the plan creates later."""
    from sqlglot import exp

    rendered = {}
    for model in STAGING:
        query = context.render(model)
        for table in list(query.find_all(exp.Table)):
            for below in rendered:
                schema, name = below.split(".")
                # The model's name, or its physical table once SQLMesh has built a version.
                if table.name == name or table.name.startswith(f"{schema}__{name}__"):
                    cte = exp.to_table("__" + below.replace(".", "_"))
                    table.replace(cte.as_(table.alias_or_name))
        rendered[model] = query
    *below, top = STAGING
    ctes = ", ".join(f"__{m.replace('.', '_')} AS ({rendered[m].sql(dialect='duckdb')})" for m in below)
    return f"WITH {ctes} SELECT * FROM ({rendered[top].sql(dialect='duckdb')})"


def apply(context, decision: Decision, files: list, digest: str | None, landed: dict) -> dict:
    """Stages `decision.stage` and applies each file in build order, in one transaction.
    Raises OutOfOrder (nothing written) when an incremental cycle meets an older release."""
    started = time.monotonic()
    position = {sha_of(p): i for i, p in enumerate(files)}
    con = context.engine_adapter.connection.cursor()
    result = {"mode": decision.mode, "full_reason": decision.reason, "files_applied": 0}
    try:
        con.execute("BEGIN TRANSACTION")
        if decision.mode == "full":
            for table in (*TABLES, "build_state"):
                con.execute(f"DROP TABLE IF EXISTS history.{table}")
        con.execute(ddl())
        applied = []
        if decision.stage:
            # Read each staged file once: typed, one row per file and key (staging.psd_keys).
            keys_sql = render_staging(context)
            con.execute(f"CREATE OR REPLACE TEMP TABLE staged AS {keys_sql}")
            stats = con.execute(
                "SELECT landing_sha256, max(calendar_year * 100 + month), "
                "sum(key_rows)::BIGINT, count(*) FROM staged GROUP BY landing_sha256"
            ).fetchall()
            by_sha = {sha: (stamp, rows, keys) for sha, stamp, rows, keys in stats}
            for path in decision.stage:
                sha = sha_of(path)
                stamp, rows, keys = by_sha.get(sha, (None, 0, 0))
                want = landed.get(sha)
                if want is not None and rows != want:
                    raise RuntimeError(
                        f"the lakehouse read {rows} rows of landing file {relative(path)} "
                        f"({keys} distinct keys) but it landed with {want} rows"
                    )
                if keys == 0:
                    raise RuntimeError(f"no rows read from landing file {relative(path)}")
                release = f"{stamp // 100:04d}-{stamp % 100:02d}"
                applied.append((release, position[sha], sha, path, rows, keys))
            applied.sort()
        last = con.execute(
            "SELECT release, sequence FROM history.psd_files ORDER BY sequence DESC LIMIT 1"
        ).fetchone()
        last_release, sequence = (last[0], last[1]) if last else (None, 0)
        if applied and last_release is not None and applied[0][0] < last_release:
            release, _, _, path, _, _ = applied[0]
            raise OutOfOrder(
                f"landing file {relative(path)} is release {release}, older than the last "
                f"built release {last_release}"
            )
        changes_sql = render(context, "history.psd_changes")
        key_match = " AND ".join(f"h.{k} = c.{k}" for k in KEY)
        rows_read = changes_stored = 0
        for release, _, sha, path, rows, keys in applied:
            sequence += 1
            con.execute("DELETE FROM history.psd_incoming")
            con.execute(
                "INSERT INTO history.psd_incoming BY NAME SELECT * EXCLUDE (landing_seq), "
                "$release AS release, $sequence AS sequence FROM staged WHERE landing_sha256 = $sha",
                {"release": release, "sequence": sequence, "sha": sha},
            )
            if release == last_release:
                # The later file of a release is its final state: undo the earlier one.
                con.execute(
                    "DELETE FROM history.psd_value_history WHERE valid_from_release = $r",
                    {"r": release},
                )
                con.execute(
                    "UPDATE history.psd_value_history SET valid_to_release = NULL "
                    "WHERE valid_to_release = $r",
                    {"r": release},
                )
                con.execute(
                    "UPDATE history.psd_files SET superseded = TRUE WHERE release = $r",
                    {"r": release},
                )
            con.execute(f"CREATE OR REPLACE TEMP TABLE changes AS {changes_sql}")
            con.execute(
                "UPDATE history.psd_value_history AS h SET valid_to_release = $r FROM changes AS c "
                f"WHERE h.valid_to_release IS NULL AND {key_match}",
                {"r": release},
            )
            con.execute("INSERT INTO history.psd_value_history BY NAME SELECT * FROM changes")
            stored = con.execute("SELECT count(*) FROM changes").fetchone()[0]
            con.execute(
                "INSERT INTO history.psd_files VALUES ($seq, $sha, $path, $r, FALSE, $rows, $keys, $n)",
                {
                    "seq": sequence,
                    "sha": sha,
                    "path": relative(path),
                    "r": release,
                    "rows": rows,
                    "keys": keys,
                    "n": stored,
                },
            )
            print(
                f"history: applied {relative(path)} as release {release} (sequence {sequence}):"
                f" {rows} rows read, {stored} changes stored",
                flush=True,
            )
            last_release = release
            rows_read += rows
            changes_stored += stored
        con.execute("DELETE FROM history.psd_incoming")
        con.execute("DELETE FROM history.build_state")
        con.execute(
            "INSERT INTO history.build_state VALUES ($d, $b)",
            {"d": digest or "", "b": decision.build},
        )
        con.execute("DROP TABLE IF EXISTS staged")
        con.execute("DROP TABLE IF EXISTS changes")
        kill_point("history-commit")
        con.execute("COMMIT")
        result.update(
            files_applied=len(applied),
            rows_read=rows_read,
            changes_stored=changes_stored,
            history_rows=con.execute("SELECT count(*) FROM history.psd_value_history").fetchone()[0],
            append_secs=round(time.monotonic() - started, 3),
        )
        return result
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass
        raise
    finally:
        con.close()


def kill_point(name: str) -> None:
    """Fault injection for the crash tests (crates/transform/tests/pipeline.rs): with
    MATERIA_TEST_KILL_AT=<name> the process kills itself here with SIGKILL, as power loss or the
    OOM killer would. Points: `history-commit` (everything written, not committed), `plan`
    (committed, SQLMesh's plan not started)."""
    if os.environ.get("MATERIA_TEST_KILL_AT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def request_from_env() -> tuple:
    """(full rebuild requested, project digest, landed rows by sha256) from the transform step."""
    requested = os.environ.get("MATERIA_FULL_REBUILD") == "1"
    digest = os.environ.get("MATERIA_PROJECT_DIGEST") or None
    landed = {}
    path = os.environ.get("MATERIA_LANDED_ROWS")
    if path:
        with open(path, encoding="utf-8") as f:
            landed = json.load(f).get("psd", {})
    return requested, digest, landed
