"""The claim index in the claim's order: status, priority descending, id.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_claim_order", "jobs", ["status", sa.column("priority").desc(), "id"])
    op.drop_index("ix_jobs_claim", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_claim", "jobs", ["status", "priority", "id"])
    op.drop_index("ix_jobs_claim_order", table_name="jobs")
