"""A serving reader as the web app is one: a read-only connection that is reopened when the
serving path's (device, inode) changes. Queries until the stop file appears, checking in every
generation that each table holds the rows its _materia_export row records; prints a summary.

Usage: python reader.py SERVING_PATH STOP_FILE
"""

import json
import os
import sys

import duckdb

ERRORS_MAX = 20


def main() -> None:
    path, stop = sys.argv[1], sys.argv[2]
    conn, ident = None, None
    queries, seen, errors = 0, set(), []
    while not os.path.exists(stop) and len(errors) < ERRORS_MAX:
        try:
            st = os.stat(path)
            now = (st.st_dev, st.st_ino)
            if now != ident:
                if conn is not None:
                    conn.close()
                conn, ident = None, None
                candidate = duckdb.connect(path, read_only=True)
                st = os.stat(path)
                if (st.st_dev, st.st_ino) != now:
                    candidate.close()
                    continue
                conn, ident = candidate, now
            rows = conn.execute(
                "SELECT table_name, row_count, CAST(exported_at AS VARCHAR) "
                "FROM serving._materia_export"
            ).fetchall()
            if not rows:
                errors.append("empty _materia_export")
            for table, expected, exported_at in rows:
                (count,) = conn.execute(f'SELECT count(*) FROM serving."{table}"').fetchone()
                if count != expected:
                    errors.append(f"{exported_at}: {table} has {count} rows, recorded {expected}")
                seen.add(exported_at)
            queries += 1
        except Exception as e:  # noqa: BLE001 - every failure is what the test counts
            errors.append(repr(e))
    print(json.dumps({"queries": queries, "generations": len(seen), "errors": errors}))


if __name__ == "__main__":
    main()
