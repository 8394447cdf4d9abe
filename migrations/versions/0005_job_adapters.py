"""Job adapters: the zip of a train job's trained adapter, one per job (latest attempt).

Revision ID: 0005_job_adapters
Revises: 0004_sessions_tokens_owners
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_job_adapters"
down_revision = "0004_sessions_tokens_owners"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_adapters",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("archive", sa.LargeBinary(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column(
            "analysis",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_adapters_job_id_jobs")),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_adapters")),
    )


def downgrade() -> None:
    op.drop_table("job_adapters")
