"""Scheduled jobs and model versions that every daemon can load: status, gate, artifacts, job runs.

Revision ID: 0009_jobs
Revises: 0007_trust
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009_jobs"
down_revision: str | None = "0007_trust"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("model_versions", sa.Column("status", sa.String(20), nullable=False, server_default="candidate"))
    # Versions from before: the active one stays active, the others were replaced (or never used).
    op.execute("UPDATE model_versions SET status = CASE WHEN active THEN 'active' ELSE 'retired' END")
    op.create_check_constraint("ck_model_versions_status", "model_versions",
                               "status IN ('candidate', 'active', 'retired', 'rejected')")
    op.create_check_constraint("ck_model_versions_active_status", "model_versions", "active = (status = 'active')")
    op.add_column("model_versions", sa.Column("gate", JSONB))
    op.add_column("model_versions", sa.Column("labels_used", JSONB))
    op.add_column("model_versions", sa.Column("sha256", sa.String(64)))
    op.add_column("model_versions", sa.Column("activated_at", TZ))
    op.execute("UPDATE model_versions SET activated_at = created_at WHERE active")

    op.create_table(
        "model_blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "model_blob_chunks",
        sa.Column("sha256", sa.String(64), sa.ForeignKey("model_blobs.sha256", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "model_artifacts",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("model_blobs.sha256"), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_model_artifacts_sha256", "model_artifacts", ["sha256"])

    op.create_table(
        "job_runs",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("job", sa.String(40), nullable=False),
        sa.Column("started_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", TZ),
        sa.Column("outcome", sa.String(20), nullable=False, server_default="running"),
        sa.Column("detail", sa.Text),
        sa.Column("instance", sa.String(64)),
        sa.Column("version_id", sa.Integer),
        sa.Column("label_max_id", sa.BigInteger),
        sa.Column("data", JSONB),
        sa.CheckConstraint("outcome IN ('running', 'ok', 'skipped', 'failed', 'promoted', 'rejected')",
                           name="ck_job_runs_outcome"),
    )
    op.create_index("ix_job_runs_job_started", "job_runs", ["job", "started_at"])


def downgrade() -> None:
    op.drop_table("job_runs")
    op.drop_table("model_artifacts")
    op.drop_table("model_blob_chunks")
    op.drop_table("model_blobs")
    op.drop_column("model_versions", "activated_at")
    op.drop_column("model_versions", "sha256")
    op.drop_column("model_versions", "labels_used")
    op.drop_column("model_versions", "gate")
    op.drop_constraint("ck_model_versions_active_status", "model_versions", type_="check")
    op.drop_constraint("ck_model_versions_status", "model_versions", type_="check")
    op.drop_column("model_versions", "status")
