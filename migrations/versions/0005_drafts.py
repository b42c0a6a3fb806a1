"""Reply drafts: one per message (unique message_id), with citations, confidence and review status.

Revision ID: 0005_drafts
Revises: 0004_mail_actions
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_drafts"
down_revision: str | None = "0004_mail_actions"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "drafts",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column(
            "message_id",
            sa.BigInteger,
            sa.ForeignKey("messages.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("text", sa.Text),
        sa.Column("citations", postgresql.JSONB, nullable=False, server_default="[]"),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("backend", sa.String(40), nullable=False),
        sa.Column("model", sa.Text),
        sa.Column("edited_by_human", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("edited_at", TZ),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "status IN ('pending', 'needs_human', 'approved', 'rejected', 'sent')", name="ck_drafts_status"
        ),
    )
    op.create_index("ix_drafts_status", "drafts", ["status"])


def downgrade() -> None:
    op.drop_table("drafts")
