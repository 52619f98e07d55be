"""The job store's Alembic migrations: a new store, and stores made by Dojo before Alembic.

``fixtures/store_v{1,2}.{sqlite,postgresql}.sql`` are the statements that Dojo's schema v1
(commit 6605067) and v2 (the last hand-written runner) ran on an empty store: their models'
``CREATE TABLE``/``CREATE INDEX`` compiled for each dialect, then the version stamp.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, MetaData, insert, inspect, select, text

from dojo.errors import DojoConfigError
from dojo.service.placement import Placement
from dojo.service.store import jobstore, migrations
from dojo.service.store.db import Database
from dojo.service.store.schema import Base, Dataset, Job

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

# every shape of the placement column that Dojo wrote before the typed Placement
PLACEMENTS: dict[str, dict[str, Any] | None] = {
    "job_chips": {
        "resource": "chips",
        "system": "exapod",
        "count": 30,
        "block": "exapod0/cabinet0/tray0",
        "level": "tray",
        "contiguous": True,
        "chip_ranges": [[0, 25], [50, 55]],
        "tiles": ["exapod0/cabinet0/tray0/tile0", "exapod0/cabinet0/tray0/tile2"],
        "hosts": ["exapod0/cabinet0"],
    },
    "job_preempt": {
        "resource": "chips",
        "system": "exapod",
        "count": 5,
        "block": "exapod0/cabinet1/tray0/tile0",
        "level": "tile",
        "contiguous": True,
        "chip_ranges": [[300, 305]],
        "tiles": ["exapod0/cabinet1/tray0/tile0"],
        "hosts": ["exapod0/cabinet1"],
        "preempt": True,
    },
    "job_gpus": {"resource": "gpus", "count": 8},
    "job_queued": None,
}


def _statements(version: int, dialect: str) -> list[str]:
    sql = (FIXTURES / f"store_v{version}.{dialect}.sql").read_text()
    lines = [ln for ln in sql.splitlines() if not ln.startswith("--")]
    return [st.strip() for st in "\n".join(lines).split(";") if st.strip()]


def _fill(conn: Connection) -> None:
    """Rows in every table, through the old store's own tables (reflected, not today's models)."""
    t = MetaData()
    t.reflect(conn)
    conn.execute(
        insert(t.tables["tenants"]),
        [
            {
                "id": "ten_old",
                "name": "old",
                "disabled": False,
                "max_concurrent_jobs": 4,
                "max_chips": 100,
                "max_gpus": 8,
                "max_storage_bytes": 1 << 30,
                "created_at": T0,
            }
        ],
    )
    conn.execute(
        insert(t.tables["tokens"]),
        [
            {
                "id": "tok_old",
                "tenant_id": "ten_old",
                "role": "tenant",
                "name": "t",
                "prefix": "dojo_abc",
                "hash": "0" * 64,
                "created_at": T0,
            }
        ],
    )
    conn.execute(
        insert(t.tables["datasets"]),
        [
            {
                "id": "ds_old",
                "tenant_id": "ten_old",
                "name": "logs",
                "source": "upload",
                "size_bytes": 3,
                "files": 1,
                "created_at": T0,
            }
        ],
    )
    conn.execute(
        insert(t.tables["dataset_files"]),
        [
            {
                "dataset_id": "ds_old",
                "name": "a.mcap",
                "size_bytes": 3,
                "sha256": "1" * 64,
                "created_at": T0,
            }
        ],
    )
    conn.execute(
        insert(t.tables["jobs"]),
        [
            {
                "id": job_id,
                "tenant_id": "ten_old",
                "name": job_id,
                "kind": "eval",
                "status": "queued" if placement is None else "running",
                "priority": 0,
                "compute_unit": "gpus" if job_id == "job_gpus" else "chips",
                "compute_count": 8 if job_id == "job_gpus" else 5,
                "chips": 0 if job_id == "job_gpus" else 5,
                "gpus": 8 if job_id == "job_gpus" else 0,
                "spec": {"policy": "expert"},
                "placement": placement,
                "attempt": 1,
                "max_attempts": 3,
                "log_bytes": 5,
                "metric_rows": 1,
                "created_at": T0,
                "updated_at": T0,
            }
            for job_id, placement in PLACEMENTS.items()
        ],
    )
    conn.execute(
        insert(t.tables["job_logs"]), [{"job_id": "job_chips", "offset": 0, "data": b"hello"}]
    )
    conn.execute(
        insert(t.tables["job_metrics"]),
        [{"job_id": "job_chips", "seq": 1, "data": {"step": 1, "loss": 0.5}, "created_at": T0}],
    )
    conn.execute(
        insert(t.tables["models"]),
        [
            {
                "id": "mod_old",
                "tenant_id": "ten_old",
                "job_id": "job_chips",
                "name": "policy.pt",
                "path": "tenants/ten_old/models/mod_old",
                "size_bytes": 7,
                "sha256": "2" * 64,
                "created_at": T0,
            }
        ],
    )


def _differences(conn: Connection) -> list[Any]:
    """What Alembic's autogenerate would change to make the store match today's models."""
    diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    legacy = migrations.LEGACY_TABLE
    return [d for d in diffs if not (d[0] == "remove_table" and d[1].name == legacy)]


def test_a_new_store_runs_every_revision_and_matches_the_models(db_url: str) -> None:
    db = Database(db_url)
    try:
        assert db.version() == 0
        assert db.migrate() == 0
        assert db.version() == migrations.head() == 3
        assert db.migrate() == 3  # and again: nothing to do
        with db.engine.connect() as conn:
            assert _differences(conn) == []
            assert not inspect(conn).has_table(migrations.LEGACY_TABLE)
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
    finally:
        db.dispose()


@pytest.mark.parametrize("version", [1, 2])
def test_a_store_made_before_alembic_upgrades_in_place_with_its_rows(
    db_url: str, version: int
) -> None:
    db = Database(db_url)
    try:
        with db.engine.begin() as conn:
            for statement in _statements(version, db.dialect):
                conn.execute(text(statement))
            _fill(conn)
        assert db.version() == version
        assert db.migrate() == version
        assert db.version() == migrations.head() == 3
        with db.engine.connect() as conn:
            assert _differences(conn) == []
            indexes = {ix["name"] for ix in inspect(conn).get_indexes("jobs")}
            assert {"ix_jobs_tenant_active", "ix_jobs_tenant_listing"} <= indexes
            assert "ix_jobs_tenant_created" not in indexes
            for table, count in (
                ("tenants", 1),
                ("tokens", 1),
                ("datasets", 1),
                ("dataset_files", 1),
                ("jobs", len(PLACEMENTS)),
                ("job_logs", 1),
                ("job_metrics", 1),
                ("models", 1),
            ):
                assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() == count
        with db.session(readonly=True) as s:
            jobs = {j.id: j for j in s.scalars(select(Job))}
            for job_id, placement in PLACEMENTS.items():
                job = jobs[job_id]
                assert job.placement == placement and job.time_limit_s is None
                assert job.created_at.replace(tzinfo=timezone.utc) == T0
                if placement is not None:  # the typed value reads each shape, and writes it back
                    assert Placement.from_dict(placement).to_dict() == placement
            assert jobstore.get(s, "ten_old", "job_chips").placement == PLACEMENTS["job_chips"]
            assert jobstore.read_log(s, "job_chips", 0, 100) == b"hello"
            # datasets from before files datasets existed hold drive logs
            assert {d.kind for d in s.scalars(select(Dataset))} == {"drive_logs"}
        assert db.migrate() == 3
    finally:
        db.dispose()


def test_a_store_newer_than_this_code_is_refused(db_url: str) -> None:
    db = Database(db_url)
    try:
        db.migrate()
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(DojoConfigError, match="unknown to this Dojo"):
            db.migrate()
        assert db.version() == -1
    finally:
        db.dispose()


def test_a_legacy_store_newer_than_this_code_is_refused(db_url: str) -> None:
    db = Database(db_url)
    try:
        with db.engine.begin() as conn:
            for statement in _statements(2, db.dialect):
                conn.execute(text(statement))
            conn.execute(text("UPDATE dojo_schema_version SET version = 4"))
        with pytest.raises(DojoConfigError, match="version 4, newer than this Dojo's 3"):
            db.migrate()
    finally:
        db.dispose()
