"""Results read a sweep's succeeded jobs through (sweep_id, status, id), which also serves every
lookup the old sweep_id index did.

Revision ID: 0009_sweep_status_index
Revises: 0008_claim_fit_index
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0009_sweep_status_index"
down_revision = "0008_claim_fit_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_sweep_status", "jobs", ["sweep_id", "status", "id"])
    op.drop_index("ix_jobs_sweep_id", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_sweep_id", "jobs", ["sweep_id"])
    op.drop_index("ix_jobs_sweep_status", table_name="jobs")
