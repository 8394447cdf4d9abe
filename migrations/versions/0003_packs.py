"""Packs: each job's pack key (jobs that may train in one process) and the pack it ran in.

Revision ID: 0003_packs
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_packs"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("pack_key", sa.String(200), nullable=True))
        batch.add_column(sa.Column("pack_id", sa.String(32), nullable=True))
    op.create_index("ix_jobs_pack_id", "jobs", ["pack_id"])
    op.create_index(
        "ix_jobs_pack_order", "jobs", ["pack_key", "status", sa.column("priority").desc(), "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_pack_order", table_name="jobs")
    op.drop_index("ix_jobs_pack_id", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("pack_id")
        batch.drop_column("pack_key")
