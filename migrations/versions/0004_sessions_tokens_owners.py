"""Dashboard sessions; token provenance, last use and revocation; sweep and lease owners.

Revision ID: 0004_sessions_tokens_owners
Revises: 0003_packs
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_sessions_tokens_owners"
down_revision = "0003_packs"
branch_labels = None
depends_on = None


def _timestamp(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    # Batch mode: SQLite adds a foreign key only by copying the table (these two are small).
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("created_by_id", sa.Integer(), nullable=True))
        batch.add_column(_timestamp("last_used_at"))
        batch.add_column(_timestamp("revoked_at"))
        batch.create_foreign_key(
            op.f("fk_api_tokens_created_by_id_api_tokens"), "api_tokens", ["created_by_id"], ["id"]
        )
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("owner_token_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_sweeps_owner_token_id_api_tokens"), "api_tokens", ["owner_token_id"], ["id"]
        )
    # A plain ADD COLUMN (no key): the jobs table is the big one.
    op.add_column("jobs", sa.Column("lease_token_id", sa.Integer(), nullable=True))
    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("expires_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["token_id"], ["api_tokens.id"], name=op.f("fk_dashboard_sessions_token_id_api_tokens")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dashboard_sessions")),
        sa.UniqueConstraint("session_hash", name=op.f("uq_dashboard_sessions_session_hash")),
    )
    op.create_index(
        op.f("ix_dashboard_sessions_token_id"), "dashboard_sessions", ["token_id"]
    )
    op.create_index(
        op.f("ix_dashboard_sessions_expires_at"), "dashboard_sessions", ["expires_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_dashboard_sessions_expires_at"), table_name="dashboard_sessions")
    op.drop_index(op.f("ix_dashboard_sessions_token_id"), table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
    op.drop_column("jobs", "lease_token_id")
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_constraint(op.f("fk_sweeps_owner_token_id_api_tokens"), type_="foreignkey")
        batch.drop_column("owner_token_id")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_constraint(op.f("fk_api_tokens_created_by_id_api_tokens"), type_="foreignkey")
        batch.drop_column("revoked_at")
        batch.drop_column("last_used_at")
        batch.drop_column("created_by_id")
