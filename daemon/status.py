"""``mailsense status``: what a person checks first when mail seems stuck.

Per folder it also says where ingestion started (``[accounts] start_from``, recorded on the first
connect): "why was my old mail not processed?" is answered here, not in the source.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import cast

from sqlalchemy import text
from sqlalchemy.orm import Session

from daemon.db import instances
from daemon.delivery import stats as delivery_stats
from daemon.learning import labels
from daemon.review import stats as review_stats

STAGES_SQL = text(
    """
    SELECT a.name AS account, COALESCE(f.name, '(' || m.source || ')') AS folder, m.stage, count(*) AS n
      FROM messages m
      JOIN accounts a ON a.id = m.account_id
      LEFT JOIN folders f ON f.id = m.folder_id
     GROUP BY 1, 2, 3
     ORDER BY 1, 2, 3
    """
)

ERRORS_SQL = text(
    """
    SELECT id, stage, parked_stage, attempts, COALESCE(quarantine_reason, last_error) AS error
      FROM messages
     WHERE stage IN ('parked', 'quarantined') OR last_error IS NOT NULL
     ORDER BY updated_at DESC
     LIMIT 10
    """
)


def collect(session: Session, stale_after_seconds: float = 30.0) -> dict[str, list[dict[str, object]]]:
    """Everything ``mailsense status`` shows; a heartbeat older than ``stale_after_seconds`` is a dead daemon."""
    return {
        "folders": [dict(r) for r in instances.folder_states(session, stale_after_seconds)],
        "stages": [dict(r._mapping) for r in session.execute(STAGES_SQL)],
        "problems": [dict(r._mapping) for r in session.execute(ERRORS_SQL)],
        "delivery": [delivery_stats.delivery_counts(session)],
        "review": [dataclasses.asdict(review_stats.acceptance(session))],
        "labels": labels.label_counts(session),
        "label_totals": labels.label_totals(session),
        "bootstraps": labels.bootstraps(session),
    }


def render(status: dict[str, list[dict[str, object]]], extra_lines: list[str]) -> str:
    lines: list[str] = []
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for row in status["stages"]:
        n = cast(int, row["n"])  # count(*): the driver gives an int; the row dicts are typed object
        counts.setdefault((str(row["account"]), str(row["folder"])), {})[str(row["stage"])] = n
    seen: set[tuple[str, str]] = set()
    for row in status["folders"]:
        key = (str(row["account"]), str(row["folder"]))
        seen.add(key)
        state = "connected" if row["connected"] else "not connected"
        lines.append(f"{key[0]} / {key[1]}: {state}, UIDVALIDITY {row['uidvalidity']}, last UID {row['last_uid']}"
                     + (f", HIGHESTMODSEQ {row['highest_modseq']}" if row["highest_modseq"] else "")
                     + (f", last sync {row['last_sync_at']:%Y-%m-%d %H:%M:%S}" if row["last_sync_at"] else ""))
        lines.append(f"    {describe_start(row)}")
        lines.append(f"    messages: {_fmt_counts(counts.get(key, {}))}")
        if row["last_error"]:
            lines.append(f"    last error ({row['last_error_at']:%Y-%m-%d %H:%M:%S}): {row['last_error']}")
    for key, by_stage in sorted(counts.items()):
        if key not in seen:
            lines.append(f"{key[0]} / {key[1]}")
            lines.append(f"    messages: {_fmt_counts(by_stage)}")
    if not lines:
        lines.append("no accounts seen yet: configure [[accounts]] and run `mailsense run`, or `mailsense import`")
    for db in status.get("database", []):
        if db["kind"] == "embedded":
            lines.insert(0, f"database: embedded, {db['data_dir']} (state_dir from {db['state_dir_from']})")
        else:
            lines.insert(0, f"database: {db['url']}")
    if status["problems"]:
        lines.append("recent problems:")
        for row in status["problems"]:
            where = f"{row['stage']}" + (f" (at {row['parked_stage']})" if row["parked_stage"] else "")
            lines.append(f"    message {row['id']}: {where}, attempts {row['attempts']}: {row['error']}")
    for delivery in status.get("delivery", []):
        lines.extend(delivery_stats.render(delivery))
    if "labels" in status:
        lines.extend(labels.render_counts(status["labels"], status.get("label_totals", [])))
        lines.extend(labels.render_bootstraps(status.get("bootstraps", [])))
    lines.extend(extra_lines)
    for row in status.get("review", []):
        lines.extend(review_stats.acceptance_lines(review_stats.Acceptance(**row)))  # type: ignore[arg-type]
    return "\n".join(lines)


def describe_start(row: dict[str, object]) -> str:
    """The folder's start point for a person, e.g. ``start: new mail only, from UID 1234 on 2026-12-02 08:10``.

    ``start_uid`` is the last UID that was already there, so the first UID taken is one more.
    """
    recorded, uid, at = row.get("start_from"), row.get("start_uid"), row.get("started_at")
    if not recorded:
        return "start: not chosen yet (on the first connect, from [accounts] start_from)"
    when = f" on {at:%Y-%m-%d %H:%M}" if isinstance(at, datetime) else ""
    first = (uid if isinstance(uid, int) else 0) + 1
    if recorded == "new mail only":
        return f"start: new mail only, from UID {first}{when}"
    if str(recorded).startswith("since "):
        return f"start: mail {recorded} and new mail from UID {first}{when}"
    return f"start: {recorded}{when}"


def _fmt_counts(by_stage: dict[str, int]) -> str:
    if not by_stage:
        return "none"
    return ", ".join(f"{stage} {n}" for stage, n in sorted(by_stage.items()))
