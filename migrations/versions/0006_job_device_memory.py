"""Jobs: the memory of the device their claim declared, the bound of the peak they may report.

Revision ID: 0006_job_device_memory
Revises: 0005_job_adapters
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_job_device_memory"
down_revision = "0005_job_adapters"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("device_memory_mb", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("device_memory_mb")
