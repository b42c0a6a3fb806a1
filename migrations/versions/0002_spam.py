"""Spam: model versions, spam/ham labels, and the verdict columns on messages.

Revision ID: 0002_spam
Revises: 0001_core
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_spam"
down_revision: str | None = "0001_core"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(40), server_default="spam", nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("base_model", sa.Text),
        sa.Column("metrics", postgresql.JSONB),
        sa.Column("thresholds", postgresql.JSONB),
        sa.Column("text_settings", postgresql.JSONB),
        sa.Column("active", sa.Boolean, server_default="false", nullable=False),
    )
    # At most one active version per kind: the daemon must never have to choose between two.
    op.create_index(
        "uq_model_versions_active_kind",
        "model_versions",
        ["kind"],
        unique=True,
        postgresql_where=sa.text("active"),
    )
    op.create_table(
        "spam_labels",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("message_id", sa.BigInteger, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
        sa.Column("label", sa.String(10), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("label IN ('spam', 'ham')", name="ck_spam_labels_label"),
    )
    op.create_index("ix_spam_labels_message_id", "spam_labels", ["message_id"])

    op.add_column("messages", sa.Column("spam_verdict", sa.Text))
    op.add_column("messages", sa.Column("spam_score", sa.Float))
    op.add_column(
        "messages",
        sa.Column(
            "spam_model_version_id",
            sa.Integer,
            sa.ForeignKey(
                "model_versions.id", ondelete="SET NULL", name="fk_messages_spam_model_version_id_model_versions"
            ),
        ),
    )
    op.add_column("messages", sa.Column("classified_at", TZ))
    op.create_check_constraint(
        "ck_messages_spam_verdict", "messages", "spam_verdict IN ('spam', 'unsure', 'ham')"
    )


def downgrade() -> None:
    op.drop_constraint("ck_messages_spam_verdict", "messages", type_="check")
    op.drop_column("messages", "classified_at")
    op.drop_column("messages", "spam_model_version_id")
    op.drop_column("messages", "spam_score")
    op.drop_column("messages", "spam_verdict")
    op.drop_table("spam_labels")
    op.drop_table("model_versions")
