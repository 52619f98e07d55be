"""The catalog: DuckDB views over the clip store's Parquet tables, for SQL questions and mining.

>>> con = connect("store")
>>> con.sql("SELECT family, count(*) FROM clips GROUP BY family").fetchall()

Views: ``drives``, ``clips``, ``frames``, ``telemetry``, ``poses``, ``events``, ``labels``,
``scene`` and ``autolabels`` (written by `dojo autolabel`) (the columns are in :mod:`dojo.data.store`). A table that no drive of the store has
(``scene`` in a store ingested before it existed) is an empty, typed view. DuckDB reads the Parquet files where they lie and
pushes filters and column choices down into them, so a question about one column of a few
drives reads little more than that. A store on another fsspec filesystem is registered with
DuckDB, which then reads through it.
"""

from __future__ import annotations

import os
from typing import Any

import duckdb
import pyarrow as pa

from dojo.data.store import ADDED_TABLES, OPTIONAL_TABLES, TABLE_FILES, TABLES, Store
from dojo.errors import DojoConfigError


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(
    store: Store | str | os.PathLike[str], threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per store table (empty tables typed too)."""
    st = store if isinstance(store, Store) else Store(store)
    con = duckdb.connect(":memory:")
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    prefix = ""
    if not st.local:
        con.register_filesystem(st.fs)
        prefix = f"{st.fs.protocol[0] if isinstance(st.fs.protocol, tuple) else st.fs.protocol}://"
    have_drives = bool(st.drive_ids())
    for name, schema in (TABLES | OPTIONAL_TABLES).items():
        files = st.path("drives", "*", TABLE_FILES[name])
        some_lack = name in ADDED_TABLES or name in OPTIONAL_TABLES
        if have_drives and (not some_lack or st.fs.glob(files)):
            pattern = prefix + files
            con.execute(
                f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_quote(pattern)}, union_by_name = true)"
            )
        else:
            _empty_view(con, name, schema)
    return con


def _empty_view(con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema) -> None:
    con.register(f"_empty_{name}", schema.empty_table())
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM _empty_{name}")


def empty_catalog() -> duckdb.DuckDBPyConnection:
    """A connection with the catalog's views, all empty but typed: SQL is checked against it."""
    con = duckdb.connect(":memory:")
    for name, schema in (TABLES | OPTIONAL_TABLES).items():
        _empty_view(con, name, schema)
    return con


def query(
    store: Store | str | os.PathLike[str], sql: str
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one SQL statement on the catalog: (column names, rows)."""
    if not isinstance(sql, str) or not sql.strip():
        raise DojoConfigError(f"sql={sql!r} must be a non-empty SQL statement.")
    con = connect(store)
    try:
        rel = con.sql(sql)
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0]
        raise DojoConfigError(f"The query failed: {first}") from e
    if rel is None:  # a statement without a result (e.g. SET)
        return [], []
    try:
        return list(rel.columns), rel.fetchall()
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0]
        raise DojoConfigError(f"The query failed: {first}") from e


__all__ = ["connect", "empty_catalog", "query"]
