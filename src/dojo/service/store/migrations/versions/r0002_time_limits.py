"""Schema version 2: jobs get time limits; indexes for the quota check and the newest-first list.

``IF NOT EXISTS``: stores made between the two halves of version 2 (the quota index came first)
already have the quota index.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_jobs_tenant_active ON jobs (tenant_id, status, chips, gpus)"
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_jobs_tenant_listing ON jobs (tenant_id, created_at, id)"
    )
    op.execute(
        "DROP INDEX IF EXISTS ix_jobs_tenant_created"
    )  # the listing's, now with its tie-break
    op.add_column("jobs", sa.Column("time_limit_s", sa.Integer, nullable=True))


def downgrade() -> None:
    raise NotImplementedError("a job store only moves forward; restore a backup to go back")
