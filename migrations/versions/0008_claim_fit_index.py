"""The index the claim walks to skip queued jobs whose memory estimate does not fit.

Revision ID: 0008_claim_fit_index
Revises: 0007_metrics_bigint_id
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_claim_fit_index"
down_revision = "0007_metrics_bigint_id"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_jobs_fit", "jobs",
        ["status", "memory_estimate_mb", sa.column("priority").desc(), "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_fit", table_name="jobs")
