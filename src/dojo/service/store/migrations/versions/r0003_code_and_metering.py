"""Schema version 3: tenant code archives, datasets of any files, and what metering reads (the
runs of each job and the changes of each tenant's stored bytes)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def _tenant() -> sa.Column:
    return sa.Column(
        "tenant_id", sa.String(32), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    )


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.add_column(
        "datasets",
        sa.Column("kind", sa.String(16), nullable=False, server_default="drive_logs"),
    )
    op.create_table(
        "code_archives",
        sa.Column("id", sa.String(32), primary_key=True),
        _tenant(),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("files", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        _when("created_at"),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    op.create_index("ix_code_archives_tenant_id", "code_archives", ["tenant_id"])
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        _tenant(),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("chips", sa.Integer, nullable=False),
        sa.Column("gpus", sa.Integer, nullable=False),
        sa.Column("system", sa.String(64), nullable=True),
        sa.Column("agent", sa.String(128), nullable=False),
        _when("started_at"),
        _when("ended_at", nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
    )
    op.create_index("ix_job_runs_job_id", "job_runs", ["job_id"])
    op.create_index("ix_job_runs_tenant_started", "job_runs", ["tenant_id", "started_at"])
    op.create_table(
        "storage_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _tenant(),
        _when("at"),
        sa.Column("delta_bytes", sa.BigInteger, nullable=False),
        sa.Column("what", sa.String(64), nullable=False),
    )
    op.create_index("ix_storage_changes_tenant_at", "storage_changes", ["tenant_id", "at"])


def downgrade() -> None:
    raise NotImplementedError("a job store only moves forward; restore a backup to go back")
