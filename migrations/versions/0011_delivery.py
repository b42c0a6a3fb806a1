"""Delivery of approved drafts, exactly once, and what the person did with them.

Revision ID: 0011_delivery
Revises: 0010_review
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_delivery"
down_revision: str | None = "0010_review"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("drafts", sa.Column("outgoing_message_id", sa.Text, unique=True))
    op.add_column("drafts", sa.Column("delivered_at", TZ))
    op.add_column("drafts", sa.Column("delivery_attempts", sa.Integer, nullable=False, server_default="0"))
    op.add_column("drafts", sa.Column("delivery_error", sa.Text))
    op.add_column("drafts", sa.Column("delivered_via", sa.Text))
    op.add_column("drafts", sa.Column("delivery_phase", sa.Text))
    op.add_column("drafts", sa.Column("delivery_next_at", TZ))
    op.add_column("drafts", sa.Column("delivered_sha256", sa.String(64)))
    op.add_column("drafts", sa.Column("outcome", sa.Text))
    op.add_column("drafts", sa.Column("sent_similarity", sa.Float))
    op.add_column("drafts", sa.Column("outcome_at", TZ))
    op.create_check_constraint("ck_drafts_delivered_via", "drafts", "delivered_via IN ('drafts_folder', 'smtp')")
    op.create_check_constraint(
        "ck_drafts_delivery_phase", "drafts", "delivery_phase IN ('delivering', 'smtp_data', 'held')"
    )
    op.create_check_constraint(
        "ck_drafts_outcome", "drafts",
        "outcome IN ('sent_as_drafted', 'sent_after_edits', 'replied_without_draft', 'discarded')",
    )
    op.create_index("ix_drafts_outcome", "drafts", ["outcome"])
    op.create_table(
        "sent_checkpoints",
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("folder", sa.Text, nullable=False),
        sa.Column("uidvalidity", sa.BigInteger, nullable=False),
        sa.Column("last_uid", sa.BigInteger, nullable=False),
        sa.Column("checked_at", TZ, nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("sent_checkpoints")
    op.drop_index("ix_drafts_outcome", "drafts")
    for name in ("ck_drafts_outcome", "ck_drafts_delivery_phase", "ck_drafts_delivered_via"):
        op.drop_constraint(name, "drafts", type_="check")
    for column in ("outcome_at", "sent_similarity", "outcome", "delivered_sha256", "delivery_next_at",
                   "delivery_phase", "delivered_via", "delivery_error", "delivery_attempts", "delivered_at",
                   "outgoing_message_id"):
        op.drop_column("drafts", column)
