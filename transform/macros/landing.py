"""Macros over the landing manifest (the `landing_files_<dataset>` and `psd_stage_files`
variables set in config.py)."""

from sqlglot import exp
from sqlmesh import macro


@macro()
def landing_file_list(evaluator, files):
    """A dataset's landing files as a DuckDB list literal, oldest first: ['/a.csv.gzip', ...].

    Called as `@landing_file_list(@VAR('psd_stage_files'))`: the variable is named literally,
    so SQLMesh knows which models a dataset's new file changes. A list variable renders as a
    parenthesised tuple, which DuckDB does not read as a list of files; a dataset without files
    (no variable) is NULL here, and becomes an empty list.
    """
    return exp.Array(expressions=_items(files))


def _items(files):
    """The file expressions of a `landing_files_<dataset>` variable (none when it is unset)."""
    if isinstance(files, (exp.Array, exp.Tuple)):
        return list(files.expressions)
    if files is None or isinstance(files, exp.Null):
        return []
    return [files]


@macro()
def landing_lines(evaluator, files):
    """Every line of a dataset's landing files as a subquery `(line, filename, landing_row)`.

    For datasets whose validated CSV has no quotes and no `|` (extract-prices: dates, numbers
    and series ids), each line is read whole, so a model can split the header from the rows
    whatever the columns are (the series list is configuration). Called as
    `@landing_lines(@VAR('landing_files_prices'))`, like `landing_file_list`. A dataset without
    files gives no rows, not an error: read_csv refuses an empty list, and an extractor that has
    not landed anything yet must not break the models of the others.
    """
    items = _items(files)
    if not items:
        return exp.maybe_parse(
            "(SELECT NULL::TEXT AS line, NULL::TEXT AS filename, NULL::BIGINT AS landing_row"
            " WHERE FALSE)",
            dialect="duckdb",
        )
    query = exp.maybe_parse(
        "(SELECT column0 AS line, filename, ordinality AS landing_row"
        " FROM read_csv(FILES, header = FALSE, auto_detect = FALSE, delim = '|',"
        " quote = '\"', escape = '\"', compression = 'gzip', filename = TRUE,"
        " strict_mode = TRUE, null_padding = FALSE, columns = {'column0': 'VARCHAR'})"
        " WITH ORDINALITY)",
        dialect="duckdb",
    )
    for node in query.find_all(exp.Column):
        if node.name == "FILES":
            node.replace(exp.Array(expressions=items))
            break
    return query
