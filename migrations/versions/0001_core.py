"""Core schema: accounts, folders with their IMAP checkpoint, messages with the work-queue state.

Revision ID: 0001_core
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_core"
down_revision: str | None = None
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("name", name="uq_accounts_name"),
    )
    op.create_table(
        "folders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger),
        sa.Column("last_uid", sa.BigInteger, server_default="0", nullable=False),
        sa.Column("highest_modseq", sa.BigInteger),
        sa.Column("connected", sa.Boolean, server_default="false", nullable=False),
        sa.Column("connected_by", sa.String(200)),
        sa.Column("last_sync_at", TZ),
        sa.Column("last_error", sa.Text),
        sa.Column("last_error_at", TZ),
        sa.UniqueConstraint("account_id", "name", name="uq_folders_account_id"),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("folder_id", sa.Integer, sa.ForeignKey("folders.id", ondelete="SET NULL")),
        sa.Column("uidvalidity", sa.BigInteger),
        sa.Column("uid", sa.BigInteger),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("message_id", sa.Text),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("received_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("subject", sa.Text),
        sa.Column("from_name", sa.Text),
        sa.Column("from_addr", sa.Text),
        sa.Column("to_addrs", postgresql.JSONB),
        sa.Column("sent_at", TZ),
        sa.Column("headers", postgresql.JSONB),
        sa.Column("body_text", sa.Text),
        sa.Column("attachments", postgresql.JSONB),
        sa.Column("parse_defects", postgresql.JSONB),
        sa.Column("stage", sa.String(40), nullable=False),
        sa.Column("attempts", sa.Integer, server_default="0", nullable=False),
        sa.Column("next_attempt_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_until", TZ),
        sa.Column("last_error", sa.Text),
        sa.Column("parked_stage", sa.String(40)),
        sa.Column("quarantine_reason", sa.Text),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("folder_id", "uidvalidity", "uid", name="uq_messages_location"),
        sa.UniqueConstraint("account_id", "content_sha256", name="uq_messages_content"),
    )
    op.create_index(
        "ix_messages_claimable",
        "messages",
        ["stage", "next_attempt_at"],
        postgresql_where=sa.text("stage NOT IN ('done', 'quarantined', 'parked')"),
    )
    op.create_index("ix_messages_message_id", "messages", ["account_id", "message_id"])


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("folders")
    op.drop_table("accounts")
