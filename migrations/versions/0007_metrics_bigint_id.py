"""metrics.id is 64-bit: past 2^31 training points every metrics call failed on Postgres.

SQLite keeps INTEGER PRIMARY KEY, which is its 64-bit rowid already.

Revision ID: 0007_metrics_bigint_id
Revises: 0006_job_device_memory
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_metrics_bigint_id"
down_revision = "0006_job_device_memory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # The serial's sequence is already bigint-ranged only if it says so: widen both.
    op.alter_column("metrics", "id", type_=sa.BigInteger(), existing_type=sa.Integer(),
                    existing_nullable=False)
    op.execute("ALTER SEQUENCE IF EXISTS metrics_id_seq AS bigint")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER SEQUENCE IF EXISTS metrics_id_seq AS integer")
    op.alter_column("metrics", "id", type_=sa.Integer(), existing_type=sa.BigInteger(),
                    existing_nullable=False)
