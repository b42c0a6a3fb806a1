"""What people did with the drafts: the acceptance and edit rates for ``mailsense status`` and /metrics.

A decided draft is one a person approved or rejected (``reviewed_at`` is set); drafts that
went on to ``delivered``/``sent`` count as approved. Approved drafts split by whether a person
edited the text first. Superseded drafts are nobody's decision and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from daemon.metrics import DRAFT_ACCEPTANCE, DRAFT_REVIEWS, DRAFTS_AWAITING_REVIEW

ACCEPTANCE_SQL = text("""
SELECT count(*) FILTER (WHERE status IN ('approved', 'delivered', 'sent') AND reviewed_at IS NOT NULL
                          AND NOT edited_by_human)                                     AS approved_unchanged,
       count(*) FILTER (WHERE status IN ('approved', 'delivered', 'sent') AND reviewed_at IS NOT NULL
                          AND edited_by_human)                                         AS approved_edited,
       count(*) FILTER (WHERE status = 'rejected')                                     AS rejected,
       count(*) FILTER (WHERE status IN ('pending', 'needs_human'))                    AS awaiting,
       avg(edit_similarity) FILTER (WHERE status IN ('approved', 'delivered', 'sent') AND edited_by_human)
                                                                                       AS mean_edit_similarity
FROM drafts
""")


@dataclass(frozen=True)
class Acceptance:
    approved_unchanged: int
    approved_edited: int
    rejected: int
    awaiting: int
    mean_edit_similarity: float | None  # of the edited approved drafts: 1.0 = same words

    @property
    def decided(self) -> int:
        return self.approved_unchanged + self.approved_edited + self.rejected

    def rate(self, count: int) -> float | None:
        """``count`` as a share of the decided drafts; None before the first decision."""
        return count / self.decided if self.decided else None


def acceptance(session: Session) -> Acceptance:
    row = session.execute(ACCEPTANCE_SQL).one()
    similarity = row.mean_edit_similarity
    return Acceptance(int(row.approved_unchanged), int(row.approved_edited), int(row.rejected), int(row.awaiting),
                      None if similarity is None else float(similarity))


def acceptance_lines(a: Acceptance) -> list[str]:
    """``review: 12 decided — approved unchanged 7 (58%), approved after edits 3 (25%), rejected 2 (17%)``."""
    if not a.decided:
        return [f"review: no decisions yet, {a.awaiting} draft(s) awaiting review"]
    parts = [f"{label} {n} ({a.rate(n):.0%})" for label, n in (
        ("approved unchanged", a.approved_unchanged), ("approved after edits", a.approved_edited),
        ("rejected", a.rejected))]
    line = f"review: {a.decided} decided, " + ", ".join(parts) + f"; {a.awaiting} awaiting review"
    if a.mean_edit_similarity is not None:
        line += f"; edited drafts kept {a.mean_edit_similarity:.0%} of the generated words"
    return [line]


def update_metrics(session: Session) -> Acceptance:
    """Set the review gauges of /metrics from the database (called with the heartbeat)."""
    a = acceptance(session)
    DRAFT_REVIEWS.labels("approved_unchanged").set(a.approved_unchanged)
    DRAFT_REVIEWS.labels("approved_edited").set(a.approved_edited)
    DRAFT_REVIEWS.labels("rejected").set(a.rejected)
    DRAFTS_AWAITING_REVIEW.set(a.awaiting)
    DRAFT_ACCEPTANCE.set(a.rate(a.approved_unchanged + a.approved_edited) or 0.0)
    return a
