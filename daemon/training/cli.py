"""Spam commands: ``train spam``, ``classify``, ``eval spam`` and ``setup-model``.

Handlers take ``(args, settings)`` and return the exit code; ``daemon/cli.py`` wires them in
through :func:`register`. Output names files and figures, never message text.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.config import Settings
from daemon.db.session import Database

if TYPE_CHECKING:
    from daemon.spam.model import LoadOptions, SpamModel

log = logging.getLogger(__name__)

EXIT_HAM, EXIT_SPAM, EXIT_ERROR = 0, 1, 2



def _load_model(args: argparse.Namespace, settings: Settings) -> SpamModel:
    """``--model``, else ``spam.model_dir``, else the active version in the database."""
    from daemon.spam import registry
    from daemon.spam.artifacts import models_dir
    from daemon.spam.model import SpamModel

    options: LoadOptions = {"quantize": settings.spam.int8, "threads": settings.spam.threads or None,
                            "runtime": settings.spam.runtime}
    explicit = getattr(args, "model", None)
    if explicit:
        return SpamModel.load(Path(explicit), **options)
    db = Database.open(settings, writable=False)
    try:
        with db.session() as session:
            loaded = registry.load_configured(session, settings.spam.model_dir,
                                              models_dir(settings), **options)
    finally:
        db.dispose()
    if loaded is None:
        raise LookupError("no active spam model: run `mailsense setup` or `mailsense train spam --activate`")
    return loaded[1]


def cmd_train_spam(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.spam import registry
    from daemon.spam.artifacts import models_dir
    from daemon.training.data import DataError, load_database, load_path
    from daemon.training.train import TrainConfig, train_model

    config = TrainConfig(
        base_model=Path(args.base) if args.base else None, epochs=args.epochs, max_length=args.max_length,
        seed=args.seed, target_fpr=args.target_fpr, threads=args.threads,
        learning_rate=args.learning_rate or TrainConfig.learning_rate, cv_folds=args.cv_folds,
        cv_jobs=args.cv_jobs,
    )
    out = Path(args.out) if args.out else (
        models_dir(settings) / datetime.now(UTC).strftime("spam-%Y%m%d-%H%M%S"))
    db = Database.open(settings, writable=True)
    try:
        if args.data == "db":
            with db.session() as session:
                examples = load_database(session)
        else:
            examples = load_path(args.data, split=args.split)
        result = train_model(examples, out, config, on_step=print)
        with db.session() as session, session.begin():
            version_id = registry.register(session, result, activate=args.activate)
    except (DataError, FileExistsError, ValueError) as exc:
        print(f"mailsense: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        db.dispose()
    t = result.thresholds
    print(f"model version {version_id} in {out}" + (" (active)" if args.activate else ""))
    print(f"thresholds: spam >= {t.spam:.4f}, unsure >= {t.unsure:.4f} (target FPR {t.target_fpr:.2%})")
    return 0


def cmd_classify(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.mail.mime import Unparseable, parse_message

    try:
        model = _load_model(args, settings)
    except (LookupError, FileNotFoundError) as exc:
        print(f"mailsense: {exc}", file=sys.stderr)
        return EXIT_ERROR
    parsed = []
    failed = False
    for name in args.files:
        try:
            parsed.append((name, parse_message(Path(name).read_bytes())))
        except (OSError, Unparseable) as exc:
            print(f"{name}\terror\t{exc}", file=sys.stderr)
            failed = True
    verdicts = model.classify([m for _, m in parsed], batch_size=settings.spam.batch_size)
    for (name, _), v in zip(parsed, verdicts, strict=True):
        print(f"{name}\t{v.verdict}\t{v.score:.4f}")
    if failed:
        return EXIT_ERROR
    # "unsure" is not spam: it goes to review, so scripts treat it like ham.
    return EXIT_SPAM if any(v.verdict == "spam" for v in verdicts) else EXIT_HAM


def cmd_eval_spam(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.training import evaluation as metrics
    from daemon.training.data import DataError, load_path

    try:
        model = _load_model(args, settings)
        examples = load_path(args.data, split=args.split)
    except (LookupError, FileNotFoundError, DataError) as exc:
        print(f"mailsense: {exc}", file=sys.stderr)
        return EXIT_ERROR
    started = time.monotonic()
    scores = model.scores([e.message for e in examples], batch_size=settings.spam.batch_size)
    seconds = time.monotonic() - started
    threshold = args.threshold if args.threshold is not None else model.thresholds.spam
    report = metrics.report([e.label for e in examples], scores.tolist(), threshold)
    print(f"model: {model.directory}")
    print(metrics.format_report(report))
    unsure = sum(1 for s in scores if model.thresholds.unsure <= s < model.thresholds.spam)
    print(f"\nunsure band [{model.thresholds.unsure:.4f}, {model.thresholds.spam:.4f}): {unsure} messages")
    print(f"speed: {len(examples) / seconds:.1f} messages/s")
    return 0


def _ensure_starter(settings: Settings, db: Database) -> None:
    from daemon.training.starter import ensure_starter_model

    version_id = ensure_starter_model(settings, db, on_step=print)
    print(f"active spam model version: {version_id}")


def cmd_setup_model(args: argparse.Namespace, settings: Settings) -> int:
    db = Database.open(settings, writable=True)
    try:
        _ensure_starter(settings, db)
    finally:
        db.dispose()
    return 0


def setup(settings: Settings, db: Database) -> None:
    """Part of ``mailsense setup``: a fresh install gets the starter model, trained once and cached."""
    if settings.spam.enabled and not settings.spam.model_dir:
        _ensure_starter(settings, db)


def status_lines(settings: Settings, db: Database) -> list[str]:
    """For ``mailsense status``: which spam model is active (or that none is), and verdicts so far."""
    from daemon.spam import registry

    with db.session() as session:
        row = registry.active_version(session)
        verdicts = registry.verdict_counts(session)
    if row is None:
        lines = ["spam model: none active; messages wait at the classify stage (run `mailsense setup`)"]
    else:
        f1 = ((row.metrics or {}).get("validation") or {}).get("f1")
        lines = [f"spam model: version {row.id} from {row.created_at:%Y-%m-%d}"
                 + (f", validation F1 {f1:.3f}" if isinstance(f1, float) else "") + f" ({row.path})"]
    if verdicts:
        lines.append("spam verdicts: " + ", ".join(f"{v} {verdicts.get(v, 0)}" for v in ("spam", "unsure", "ham")))
    return lines


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = subparsers.add_parser("train", help="train a model").add_subparsers(dest="train_target", required=True)
    spam = train.add_parser("spam", help="fine-tune a spam model version and register it")
    spam.add_argument("--data", required=True,
                      help="manifest.tsv folder or .tar.gz, folder with ham/ and spam/, or 'db' for stored labels")
    spam.add_argument("--split", default="train", help="manifest split to train on (default: train)")
    spam.add_argument("--base", help="base checkpoint directory (default: the bundled all-MiniLM-L6-v2)")
    spam.add_argument("--epochs", type=float, default=3.0, help="maximum epochs (default 3; early stopping)")
    spam.add_argument("--max-length", type=int, default=128,
                      help="tokens per message (default 128, see docs/benchmarks.md)")
    spam.add_argument("--learning-rate", type=float,
                      help="peak learning rate of the fine-tune (default 5e-5, see docs/benchmarks.md)")
    spam.add_argument("--target-fpr", type=float, default=0.001, help="ham share allowed above the spam threshold")
    spam.add_argument("--seed", type=int, default=42)
    spam.add_argument("--cv-folds", type=int, default=0, metavar="K",
                      help="fit ensemble weights and thresholds on out-of-fold scores of K cross-fitting folds "
                           "(K more fine-tunes; steadier false-positive rate, see docs/benchmarks.md); default off")
    spam.add_argument("--cv-jobs", type=int, default=1, metavar="N",
                      help="cross-fitting folds run side by side (default 1; on 2 cores: --cv-jobs 2 --threads 1)")
    spam.add_argument("--threads", type=int, help="torch threads (default: all cores; 1 is faster on a busy machine)")
    spam.add_argument("--out", help="model version directory (default: state_dir/models/spam-<time>)")
    spam.add_argument("--activate", action="store_true", help="make it the active spam model")
    spam.set_defaults(handler=cmd_train_spam)

    classify = subparsers.add_parser("classify", help="print verdict and score per message file; "
                                     "exit 0 = all ham (or unsure), 1 = some spam, 2 = error")
    classify.add_argument("files", nargs="+", metavar="FILE")
    classify.add_argument("--model", help="model version directory (default: the active version)")
    classify.set_defaults(handler=cmd_classify)

    ev = subparsers.add_parser("eval", help="evaluate a model").add_subparsers(dest="eval_target", required=True)
    es = ev.add_parser("spam", help="FPR, FNR, precision, recall, F1, ROC AUC, recall at FPR 0.1 %%")
    es.add_argument("--data", required=True, help="labelled data, as for train spam")
    es.add_argument("--split", default="test", help="manifest split to evaluate (default: test)")
    es.add_argument("--model", help="model version directory (default: the active version)")
    es.add_argument("--threshold", type=float, help="spam threshold (default: the model's own)")
    es.set_defaults(handler=cmd_eval_spam)

    setup = subparsers.add_parser("setup-model", help="train and activate the starter spam model if none is active")
    setup.set_defaults(handler=cmd_setup_model)
