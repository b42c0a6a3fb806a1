"""Labels with account, detail and weight; the correction tracker's and the bootstrap's tables.

Revision ID: 0008_labels
Revises: 0007_trust
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_labels"
down_revision: str | None = "0007_trust"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("spam_labels", sa.Column("account_id", sa.Integer,
                                           sa.ForeignKey("accounts.id", ondelete="CASCADE")))
    op.add_column("spam_labels", sa.Column("detail", sa.Text))
    op.add_column("spam_labels", sa.Column("weight", sa.Float, nullable=False, server_default="1"))
    op.execute("UPDATE spam_labels l SET account_id = m.account_id FROM messages m WHERE m.id = l.message_id")
    op.create_index("ix_spam_labels_created_at", "spam_labels", ["created_at"])

    op.create_table(
        "learning_folders",
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(500), primary_key=True),
        sa.Column("uidvalidity", sa.BigInteger, nullable=False),
        sa.Column("uid_next", sa.BigInteger, nullable=False),
        sa.Column("highest_modseq", sa.BigInteger),
        sa.Column("checked_at", TZ, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "learning_places",
        sa.Column("message_id", sa.BigInteger, sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("folder", sa.String(500), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger),
        sa.Column("uid", sa.BigInteger),
        sa.Column("filing_seen", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("kind IN ('junk', 'trash', 'other')", name="ck_learning_places_kind"),
    )
    op.create_table(
        "learning_correspondents",
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("address", sa.Text, primary_key=True),
        sa.Column("messages", sa.Integer, nullable=False, server_default="1"),
        sa.Column("last_at", TZ, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "learning_bootstraps",
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("started_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", TZ),
        sa.Column("spam", sa.Integer, nullable=False, server_default="0"),
        sa.Column("ham", sa.Integer, nullable=False, server_default="0"),
        sa.Column("detail", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("learning_bootstraps")
    op.drop_table("learning_correspondents")
    op.drop_table("learning_places")
    op.drop_table("learning_folders")
    op.drop_index("ix_spam_labels_created_at", "spam_labels")
    op.drop_column("spam_labels", "weight")
    op.drop_column("spam_labels", "detail")
    op.drop_column("spam_labels", "account_id")
