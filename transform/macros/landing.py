"""Macros over the landing manifest (the `landing_files` variable set in config.py)."""

from sqlglot import exp
from sqlmesh import macro


@macro()
def landing_file_list(evaluator):
    """The landing files as a DuckDB list literal, oldest first: ['/a.csv.gzip', ...].

    A plain `@landing_files` renders as a parenthesised tuple, which DuckDB does not read as a
    list of files.
    """
    files = evaluator.var("landing_files") or []
    return exp.Array(expressions=[exp.Literal.string(f) for f in files])
