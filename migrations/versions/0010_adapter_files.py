"""Adapter zips move to files beside the database (scheduler.blob_store): ``job_adapters.file``
names one; ``archive`` stays, nullable, for the zips stored before this revision.

Revision ID: 0010_adapter_files
Revises: 0009_sweep_status_index
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_adapter_files"
down_revision = "0009_sweep_status_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_adapters") as batch:
        batch.add_column(sa.Column("file", sa.String(64), nullable=True))
        batch.alter_column("archive", existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    # Rows whose zip is a file cannot go back to a non-null archive column without it.
    op.execute("DELETE FROM job_adapters WHERE archive IS NULL")
    with op.batch_alter_table("job_adapters") as batch:
        batch.alter_column("archive", existing_type=sa.LargeBinary(), nullable=False)
        batch.drop_column("file")
