"""Daemon instances with heartbeats, claims counted per stage, and each folder's start point.

Revision ID: 0007_trust
Revises: 0006_draft_skips
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_trust"
down_revision: str | None = "0006_draft_skips"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("heartbeat_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("stopped_at", TZ),
    )
    op.add_column("messages", sa.Column("claims", sa.Integer, nullable=False, server_default="0"))
    op.add_column("folders", sa.Column("start_uid", sa.BigInteger))
    op.add_column("folders", sa.Column("start_from", sa.Text))
    op.add_column("folders", sa.Column("started_at", TZ))


def downgrade() -> None:
    op.drop_column("folders", "started_at")
    op.drop_column("folders", "start_from")
    op.drop_column("folders", "start_uid")
    op.drop_column("messages", "claims")
    op.drop_table("instances")
