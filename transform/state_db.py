"""The state DB as the SQLMesh project reads it when run by hand: the landing files held in
quarantine (`materia-status quarantine`), read-only, with the standard library alone.

It reads as run-ledger's `Ledger::open_read_only` does. SQLite reads a WAL database through
its `-shm` index, which the first reader creates; a reader that may not write the directory
(an operator's own user against the service user's `/data/materia/landing`) cannot, and SQLite
refuses the read. When that happens and no `-wal` file exists, every committed row is in the
main file, so it is read again as an immutable file: no lock, no `-shm`.
"""

import sqlite3
from pathlib import Path
from urllib.parse import quote


def _held(uri: str) -> set:
    con = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        table = con.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'landing_quarantine'"
        ).fetchone()
        if table is None:
            return set()
        rows = con.execute("SELECT path FROM landing_quarantine WHERE released_at IS NULL")
        return {path for (path,) in rows}
    finally:
        con.close()


def quarantined(state_db: Path) -> set:
    """Landing paths (relative to the landing root) held in quarantine by the state DB; none
    without a state DB or from one older than quarantines (schema 5)."""
    if not state_db.is_file():
        return set()
    path = state_db.resolve()
    uri = f"file:{quote(str(path))}?mode=ro"
    try:
        return _held(uri)
    except sqlite3.OperationalError:
        if Path(f"{path}-wal").exists():
            raise
        return _held(f"{uri}&immutable=1")
