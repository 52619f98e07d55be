"""The job store's migrations: Alembic revision scripts in ``versions/``, run from code.

No ``alembic.ini`` and no ``env.py``: :func:`upgrade` builds Alembic's environment around a
connection the caller holds (inside its transaction and lock) and runs every revision from the
store's current one to the newest. A new store goes through the same revisions as an old one.
Revision ids are the schema version as four digits ("0001", "0002", ...), which is what
``/healthz`` reports as ``schema_version``.

Stores from before Alembic kept their version in ``dojo_schema_version`` (one row per step);
such a store is stamped with that version, then upgraded. Its table is left in place, untouched.

Adding a schema change: copy the newest file in ``versions/``, set ``revision`` to the next
number and ``down_revision`` to the previous one, write the DDL with ``alembic.op`` (never
``create_all``), change the models in ``schema.py`` to match, and run
``tests/service/test_migrations.py`` (it checks the models against a migrated store).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, inspect, text

HERE = Path(__file__).parent
LEGACY_TABLE = "dojo_schema_version"  # the hand-written runner's table (versions 1 and 2)


def script() -> ScriptDirectory:
    return ScriptDirectory(str(HERE), version_locations=[str(HERE / "versions")])


def head() -> int:
    """The newest schema version this code knows."""
    return int(_only(script().get_heads()))


def current(conn: Connection) -> int | None:
    """The store's schema version: Alembic's, else the legacy table's; 0 for an empty store,
    None for a revision this code does not know (a newer Dojo migrated it)."""
    rev = MigrationContext.configure(conn).get_current_revision()
    if rev is None:
        return _legacy_version(conn)
    try:
        script().get_revision(rev)
    except CommandError:
        return None
    return int(rev)


def upgrade(conn: Connection, found: int) -> None:
    """Bring the store from version ``found`` (see :func:`current`) to :func:`head`."""
    scripts = script()
    ctx = MigrationContext.configure(conn)
    if ctx.get_current_revision() is None and found > 0:
        ctx.stamp(scripts, f"{found:04d}")  # a store from before Alembic: start where it is

    def steps(rev: Any, _context: Any) -> Any:
        return scripts._upgrade_revs("head", rev)

    env = EnvironmentContext(Config(), scripts, fn=steps, destination_rev="head")
    with env:
        env.configure(connection=conn)
        env.run_migrations()


def _legacy_version(conn: Connection) -> int:
    if not inspect(conn).has_table(LEGACY_TABLE):
        return 0
    got = conn.execute(text(f"SELECT max(version) FROM {LEGACY_TABLE}")).scalar()
    return int(got or 0)


def _only(heads: Any) -> str:
    (rev,) = heads  # one line of history: a second head is a mistake in versions/
    return str(rev)
