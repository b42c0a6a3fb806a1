"""``mailsense models list|show|activate|rollback`` and ``mailsense retrain tokens|full``.

Handlers take ``(args, settings)`` and return the exit code; ``daemon/cli.py`` wires them in
through :func:`register`. ``status_lines`` adds the active version and the scheduled jobs'
last runs to ``mailsense status``.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from sqlalchemy import select

from daemon.config import Settings
from daemon.db.session import Database
from daemon.errors import CommandError
from daemon.spam import artifacts, registry
from daemon.spam.tables import ModelVersion


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = subparsers.add_parser("models", help="spam model versions: list, show, activate, rollback")
    sub = models.add_subparsers(dest="models_command", required=True)
    listing = sub.add_parser("list", help="every version with its status and gate figures")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_list)
    show = sub.add_parser("show", help="one version: metrics, gate decision, labels used")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_show)
    activate = sub.add_parser("activate", help="make a version the active one (running daemons switch to it)")
    activate.add_argument("id", type=int)
    activate.set_defaults(handler=cmd_activate)
    sub.add_parser("rollback", help="mark the active version rejected and return to the one active before it"
                   ).set_defaults(handler=cmd_rollback)

    retrain = subparsers.add_parser("retrain", help="run a retraining job now (as the scheduler would)")
    retrain.add_argument("job", choices=("tokens", "full"),
                         help="'tokens': refit token statistics and thresholds; 'full': fine-tune a new version")
    retrain.add_argument("--force", action="store_true",
                         help="run even without new labels or below [learning] min_per_class (the gate still decides)")
    retrain.set_defaults(handler=cmd_retrain)


def _fmt_time(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"


def _gate_cell(gate: dict[str, Any] | None) -> str:
    if not gate:
        return "not gated"
    d = gate.get("decision", {})
    live = "" if d.get("fpr_live") is None else f" (live {d['fpr_live']:.2%}/{d['recall_live']:.3f})"
    return f"FPR/recall {d.get('fpr_candidate', 0):.2%}/{d.get('recall_candidate', 0):.3f}{live}"


def version_summary(row: ModelVersion) -> dict[str, Any]:
    used = row.labels_used or {}
    return {"id": row.id, "status": row.status, "created_at": row.created_at, "activated_at": row.activated_at,
            "stored": bool(row.sha256), "sha256": row.sha256, "path": row.path,
            "labels": (used.get("train") or {}).get("n"), "gate": _gate_cell(row.gate)}


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    db = Database.open(settings, writable=False)
    try:
        with db.session() as session:
            rows = [version_summary(r) for r in session.scalars(
                select(ModelVersion).where(ModelVersion.kind == registry.KIND).order_by(ModelVersion.id))]
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    if not rows:
        print("no model versions yet: run `mailsense setup`")
        return 0
    print(f"{'id':>5}  {'status':9}  {'created':16}  {'stored':6}  {'labels':>6}  gate (candidate vs live)")
    for r in rows:
        print(f"{r['id']:>5}  {r['status']:9}  {_fmt_time(r['created_at']):16}  {'yes' if r['stored'] else 'no':6}  "
              f"{r['labels'] if r['labels'] is not None else '-':>6}  {r['gate']}")
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    db = Database.open(settings, writable=False)
    try:
        with db.session() as session:
            row = session.get(ModelVersion, args.id)
            if row is None or row.kind != registry.KIND:
                raise CommandError(f"no spam model version {args.id}; `mailsense models list` shows them")
            data = version_summary(row) | {"base_model": row.base_model, "thresholds": row.thresholds,
                                           "metrics": (row.metrics or {}).get("validation"),
                                           "gate": row.gate, "labels_used": row.labels_used}
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(data, default=str, indent=2))
        return 0
    print(f"version {data['id']}: {data['status']}, created {_fmt_time(data['created_at'])}, "
          f"last activated {_fmt_time(data['activated_at'])}")
    stored = f"stored in the database, sha256 {str(data['sha256'])[:12]}" if data["stored"] else "not stored"
    print(f"  files: {data['path']} ({stored})")
    print(f"  thresholds: {json.dumps(data['thresholds'])}")
    validation = data["metrics"] or {}
    if validation:
        print(f"  validation: FPR {validation.get('fpr', 0):.4%}, recall {validation.get('recall', 0):.4f}, "
              f"F1 {validation.get('f1', 0):.4f} ({validation.get('n_ham')} ham, {validation.get('n_spam')} spam)")
    gate = data["gate"]
    if gate:
        decision = gate["decision"]
        held = gate.get("held_out", {})
        print(f"  gate: {decision['reason']}")
        print(f"    held-out set: {held.get('n')} messages ({held.get('evaluation_corpus')} from the evaluation "
              f"corpus, {held.get('labels')} newest labels); margins {json.dumps(gate.get('margins'))}")
    else:
        print("  gate: not gated (trained or installed by hand)")
    used = data["labels_used"]
    if used:
        train = used.get("train") or {}
        print(f"  labels used: {train.get('n', 0)} ({train.get('spam', 0)} spam, {train.get('ham', 0)} ham), "
              f"ids {train.get('id_range')}, from {(train.get('time_range') or ['-'])[0]} "
              f"to {(train.get('time_range') or ['-', '-'])[-1]}")
        for source, counts in sorted((train.get("by_source") or {}).items()):
            print(f"    {source}: {counts.get('spam', 0)} spam, {counts.get('ham', 0)} ham")
        if used.get("left_out_for_balance"):
            print(f"    left out for class balance ([learning] max_class_ratio): {used['left_out_for_balance']} "
                  "older labels of the larger class")
        held = used.get("held_out") or {}
        print(f"  held out (never trained on): {held.get('n', 0)} labels, ids {held.get('id_range')}")
    return 0


def _activate(db: Database, settings: Settings, version_id: int) -> str:
    """Activate ``version_id`` after checking its files can be loaded; store them for other daemons if needed."""
    with db.session() as session, session.begin():
        row = session.get(ModelVersion, version_id)
        if row is None or row.kind != registry.KIND:
            raise CommandError(f"no spam model version {version_id}; `mailsense models list` shows them")
        try:
            directory = registry.version_directory(session, row, artifacts.models_dir(settings))
        except (FileNotFoundError, artifacts.ArtifactError) as exc:
            raise CommandError(f"version {version_id} cannot be activated: {exc}") from None
        if not row.sha256:
            artifacts.store_version(session, version_id, directory)
        registry.activate_version(session, version_id)
        return str(directory)


def cmd_activate(args: argparse.Namespace, settings: Settings) -> int:
    db = Database.open(settings, writable=True)
    try:
        directory = _activate(db, settings, args.id)
    finally:
        db.dispose()
    print(f"version {args.id} is active ({directory}); running daemons switch to it within "
          f"{settings.spam.reload_seconds:g}s")
    return 0


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    db = Database.open(settings, writable=True)
    try:
        with db.session() as session:
            current = registry.active_version(session)
            previous = session.scalars(
                select(ModelVersion).where(ModelVersion.kind == registry.KIND, ModelVersion.status == "retired",
                                           ModelVersion.activated_at.is_not(None))
                .order_by(ModelVersion.activated_at.desc(), ModelVersion.id.desc())).first()
            if current is None or previous is None:
                raise CommandError("nothing to roll back to: no version was active before the current one")
            current_id, previous_id = current.id, previous.id
        _activate(db, settings, previous_id)
        with db.session() as session, session.begin():
            registry.reject_version(session, current_id)  # not picked by the next rollback again
    finally:
        db.dispose()
    print(f"rolled back: version {previous_id} is active, version {current_id} is marked rejected")
    return 0


def cmd_retrain(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.learning import retrain

    db = Database.open(settings, writable=True)
    try:
        job = retrain.refresh_token_statistics if args.job == "tokens" else retrain.fine_tune
        result = job(settings, db, None, "command", args.force)
    finally:
        db.dispose()
    print(f"{result.job}: {result.outcome}: {result.detail} ({result.seconds:.1f}s)")
    return 1 if result.outcome == "failed" else 0


def status_lines(settings: Settings, db: Database) -> list[str]:
    """The active model version and each scheduled job's last run, for ``mailsense status``."""
    from daemon.learning.jobs import job_summary

    lines: list[str] = []
    with db.session() as session:
        active = registry.active_version(session)
    if active is not None:
        lines.append(f"spam model: version {active.id} active since {_fmt_time(active.activated_at)}"
                     + (f", {_gate_cell(active.gate)}" if active.gate else "")
                     + ("" if active.sha256 else " (files not stored in the database)"))
    runs = job_summary(db)
    if runs:
        lines.append("scheduled jobs (last run; outcomes in the last 24 h):")
        for run in runs:
            took = f" in {float(run['seconds']):.1f}s" if run["seconds"] is not None else " (running)"
            counts = ", ".join(f"{k} {v}" for k, v in sorted(run["last_day"].items()))
            lines.append(f"    {run['job']}: {run['outcome']} {_fmt_time(run['started_at'])}{took}: "
                         f"{run['detail'] or ''}" + (f" [{counts}]" if counts else ""))
    return lines
