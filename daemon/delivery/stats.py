"""Delivery and outcome counts for ``mailsense status`` and ``/metrics``: how drafts fare with people.

``accepted`` is the share of replies the person sent as drafted (similarity >= 0.7) among all
recorded outcomes; ``edited`` the share sent after edits among the replies sent from a draft.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from daemon.delivery.tables import OUTCOMES
from daemon.metrics import DRAFT_DELIVERIES, DRAFT_OUTCOMES

COUNTS_SQL = text(
    """
    SELECT count(*) FILTER (WHERE delivered_via = 'drafts_folder') AS in_drafts,
           count(*) FILTER (WHERE delivered_via = 'smtp') AS sent_by_smtp,
           count(*) FILTER (WHERE status = 'approved' AND delivered_at IS NULL
                              AND delivery_phase IS DISTINCT FROM 'held' AND outcome IS NULL) AS waiting,
           count(*) FILTER (WHERE delivery_phase = 'held') AS held,
           count(*) FILTER (WHERE outcome = 'sent_as_drafted') AS sent_as_drafted,
           count(*) FILTER (WHERE outcome = 'sent_after_edits') AS sent_after_edits,
           count(*) FILTER (WHERE outcome = 'replied_without_draft') AS replied_without_draft,
           count(*) FILTER (WHERE outcome = 'discarded') AS discarded
      FROM drafts
    """
)


def delivery_counts(session: Session) -> dict[str, object]:
    counts: dict[str, object] = dict(session.execute(COUNTS_SQL).one()._mapping)
    outcomes = sum(int(str(counts[o])) for o in OUTCOMES)
    as_drafted, edited = int(str(counts["sent_as_drafted"])), int(str(counts["sent_after_edits"]))
    counts["accepted_rate"] = round(as_drafted / outcomes, 3) if outcomes else None
    counts["edited_rate"] = round(edited / (as_drafted + edited), 3) if as_drafted + edited else None
    return counts


def render(counts: dict[str, object]) -> list[str]:
    """The lines of ``mailsense status`` (nothing before the first delivery or outcome)."""
    if not any(counts[k] for k in ("in_drafts", "sent_by_smtp", "waiting", "held", *OUTCOMES)):
        return []
    lines = [f"replies: {counts['in_drafts']} put into Drafts, {counts['sent_by_smtp']} sent via SMTP, "
             f"{counts['waiting']} approved and waiting, {counts['held']} held for a person"]
    outcome_text = ", ".join(f"{o.replace('_', ' ')} {counts[o]}" for o in OUTCOMES)
    rates = []
    if counts["accepted_rate"] is not None:
        rates.append(f"accepted as drafted {float(str(counts['accepted_rate'])):.0%}")
    if counts["edited_rate"] is not None:
        rates.append(f"edited before sending {float(str(counts['edited_rate'])):.0%}")
    lines.append(f"    outcomes: {outcome_text}" + (f" ({', '.join(rates)})" if rates else ""))
    return lines


def refresh_metrics(session: Session) -> dict[str, object]:
    """Set the /metrics gauges from the database (called with the daemon's heartbeat)."""
    counts = delivery_counts(session)
    for outcome in OUTCOMES:
        DRAFT_OUTCOMES.labels(outcome=outcome).set(int(str(counts[outcome])))
    for state in ("in_drafts", "sent_by_smtp", "waiting", "held"):
        DRAFT_DELIVERIES.labels(state=state).set(int(str(counts[state])))
    return counts
