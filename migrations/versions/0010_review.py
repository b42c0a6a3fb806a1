"""Review of drafts: decision statuses, who/when, the machine's original text, superseding,
triggers that check transitions and announce changes, and the ``review_queue`` view.

The SQL lives in ``daemon.review.schema`` so the migration and the documentation read one copy.

Revision ID: 0010_review
Revises: 0009_jobs
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from daemon.review import schema

revision: str = "0010_review"
down_revision: str | None = "0009_jobs"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
OLD_STATUSES = "status IN ('pending', 'needs_human', 'approved', 'rejected', 'sent')"


def upgrade() -> None:
    op.add_column("drafts", sa.Column("generated_text", sa.Text))
    op.add_column("drafts", sa.Column("reviewed_by", sa.Text))
    op.add_column("drafts", sa.Column("reviewed_at", TZ))
    op.add_column("drafts", sa.Column("reject_reason", sa.Text))
    op.add_column("drafts", sa.Column("edit_similarity", sa.Float))
    op.add_column(
        "drafts",
        sa.Column("superseded_by", sa.BigInteger, sa.ForeignKey("drafts.id", ondelete="SET NULL")),
    )
    op.add_column("drafts", sa.Column("thread_key", sa.Text))
    op.create_index("ix_drafts_thread_key", "drafts", ["thread_key"])
    # Drafts written before this revision: what the machine wrote is what is there, unless a person edited it.
    op.execute("UPDATE drafts SET generated_text = text WHERE NOT edited_by_human")
    op.drop_constraint("ck_drafts_status", "drafts", type_="check")
    op.create_check_constraint("ck_drafts_status", "drafts", schema.STATUS_CHECK)
    for statement in schema.UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in schema.DOWNGRADE:
        op.execute(statement)
    op.execute("UPDATE drafts SET status = 'rejected' WHERE status = 'superseded'")
    op.execute("UPDATE drafts SET status = 'approved' WHERE status = 'delivered'")
    op.drop_constraint("ck_drafts_status", "drafts", type_="check")
    op.create_check_constraint("ck_drafts_status", "drafts", OLD_STATUSES)
    op.drop_index("ix_drafts_thread_key", "drafts")
    for column in ("thread_key", "superseded_by", "edit_similarity", "reject_reason", "reviewed_at",
                   "reviewed_by", "generated_text"):
        op.drop_column("drafts", column)
