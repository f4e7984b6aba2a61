"""Macros over the landing manifest (the `landing_files_<dataset>` variables set in config.py)."""

from sqlglot import exp
from sqlmesh import macro


@macro()
def landing_file_list(evaluator, files):
    """A dataset's landing files as a DuckDB list literal, oldest first: ['/a.csv.gzip', ...].

    Called as `@landing_file_list(@VAR('landing_files_psd'))`: the variable is named literally,
    so SQLMesh knows which models a dataset's new file changes. A list variable renders as a
    parenthesised tuple, which DuckDB does not read as a list of files; a dataset without files
    (no variable) is NULL here, and becomes an empty list.
    """
    if isinstance(files, (exp.Array, exp.Tuple)):
        items = files.expressions
    elif files is None or isinstance(files, exp.Null):
        items = []
    else:
        items = [files]
    return exp.Array(expressions=items)
