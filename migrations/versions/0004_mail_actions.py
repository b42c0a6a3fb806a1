"""Mailbox actions of the file stage: one row per message, committed before the IMAP command.

Revision ID: 0004_mail_actions
Revises: 0003_kb
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_mail_actions"
down_revision: str | None = "0003_kb"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mail_actions",
        sa.Column("message_id", sa.BigInteger, sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("verdict", sa.String(10), nullable=False),
        sa.Column("keyword", sa.String(100)),
        sa.Column("destination", sa.Text),
        sa.Column("status", sa.String(10), nullable=False, server_default="pending"),
        sa.Column("detail", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('pending', 'done', 'skipped')", name="ck_mail_actions_status"),
    )


def downgrade() -> None:
    op.drop_table("mail_actions")
