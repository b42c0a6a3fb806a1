"""Ensemble inputs compared on out-of-fold rows: spam missed per number of train ham allowed above the threshold.

    python bench/spam_oof.py VERSION [VERSION ...]                      # each version's stacker as trained
    python bench/spam_oof.py V1 V2 [V3] --average                      # transformer and token logits averaged
    python bench/spam_oof.py VERSION ... --list-inputs --data CORPUS    # + list-mail flag and its interactions
    python bench/spam_oof.py VERSION ... --embedding MODEL --data CORPUS  # + a frozen sentence-embedding model

A version trained with ``train spam --cv-folds 5`` keeps ``out_of_fold.npz``: for every train message, the
transformer, token and sender outputs of models that did not learn from it. Refitting the stacker by a
second-level 5-fold CV on those rows tells whether another input would rank spam above the hardest ham,
without touching the test split and without another fine-tune. Two versions trained with different seeds
have different folds, so the average of their out-of-fold logits is still out of fold for every row.
The test split is never read here. The table counts spam below the threshold that
``metrics.threshold_at_fpr`` sets when n ham may score above it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.mail.mime import ParsedMessage  # noqa: E402
from daemon.spam import metrics  # noqa: E402
from daemon.spam.text import TextSettings, build_text  # noqa: E402
from daemon.training.data import load_path  # noqa: E402

DEFAULT_DATA = REPO / "../shared/data/spamassassin-public-corpus.tar.gz"
HAM_ALLOWED = (0, 1, 2, 3, 5, 8, 12)
LIST_HEADERS = ("list-id", "list-unsubscribe", "list-post", "mailing-list")


def stacked_out_of_fold(columns: list[np.ndarray], labels: np.ndarray, seed: int = 7) -> np.ndarray:
    """The stacker's own cross-validated score for every row (standardised inputs, balanced classes)."""
    x = np.column_stack(columns)
    fold = np.random.RandomState(seed).permutation(len(labels)) % 5
    z = np.zeros(len(labels))
    for f in range(5):
        fit, held = fold != f, fold == f
        mean, sd = x[fit].mean(0), x[fit].std(0)
        sd[sd == 0] = 1
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)
        z[held] = model.fit((x[fit] - mean) / sd, labels[fit]).decision_function((x[held] - mean) / sd)
    return z


def spam_missed(z: np.ndarray, labels: np.ndarray) -> list[int]:
    """Spam below the product's threshold rule when ``n`` ham may score at or above it."""
    n_ham = int((labels == 0).sum())
    spam = z[labels == 1]
    return [int((spam < metrics.threshold_at_fpr(labels.tolist(), z.tolist(), n / n_ham)).sum())
            for n in HAM_ALLOWED]


def is_list_mail(message: ParsedMessage) -> bool:
    precedence = (message.header("precedence") or "").strip().lower()
    return any(h in message.headers for h in LIST_HEADERS) or precedence in ("list", "bulk")


def embedding_logits(messages: list[ParsedMessage], labels: np.ndarray, model_path: str) -> np.ndarray:
    """Out-of-fold logits of a logistic regression on frozen, normalised sentence embeddings."""
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(model_path, device="cpu")
    encoder.max_seq_length = 256
    texts = [build_text(m, TextSettings.for_max_length(256)) for m in messages]
    started = time.monotonic()
    vectors = encoder.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
    print(f"embedded {len(texts)} messages in {time.monotonic() - started:.0f} s", flush=True)
    out = np.zeros(len(labels))
    for fit, held in StratifiedKFold(5, shuffle=True, random_state=11).split(vectors, labels):
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000).fit(vectors[fit], labels[fit])
        out[held] = model.decision_function(vectors[held])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="+", help="model version directories with out_of_fold.npz")
    parser.add_argument("--average", action="store_true", help="also stack the versions' averaged logits")
    parser.add_argument("--list-inputs", action="store_true", help="add list-mail flag, flag*t, flag*k")
    parser.add_argument("--embedding", help="local sentence-transformers model: add its frozen-embedding logit")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the corpus the versions were trained on")
    args = parser.parse_args()

    rows = {Path(v).name: np.load(Path(v) / "out_of_fold.npz") for v in args.versions}
    labels = next(iter(rows.values()))["labels"]
    if any(not np.array_equal(r["labels"], labels) for r in rows.values()):
        parser.error("the versions were not trained on the same messages in the same order")

    extra: dict[str, list[np.ndarray]] = {}
    if args.list_inputs or args.embedding:
        messages = [e.message for e in load_path(args.data, split="train")]
        if len(messages) != len(labels):
            parser.error(f"--data has {len(messages)} train messages, the versions {len(labels)}")
        if args.list_inputs:
            extra["list"] = [np.array([float(is_list_mail(m)) for m in messages])]
        if args.embedding:
            extra["embedding"] = [embedding_logits(messages, labels, args.embedding)]

    def inputs(t: np.ndarray, k: np.ndarray, senders: np.ndarray) -> dict[str, list[np.ndarray]]:
        base = [t, k, *np.minimum(senders, 0).T]
        variants = {"as trained": base}
        if "list" in extra:
            flag = extra["list"][0]
            variants["+ list inputs"] = [*base, flag, flag * t, flag * k]
        if "embedding" in extra:
            variants["+ embedding"] = base + extra["embedding"]
        return variants

    groups = {name: [r] for name, r in rows.items()}
    if args.average and len(rows) > 1:
        groups[" + ".join(rows) + " (averaged)"] = list(rows.values())
    allowed = "/".join(map(str, HAM_ALLOWED))
    print(f"spam missed (of {int(labels.sum())}) at {allowed} train ham (of {int((labels == 0).sum())}) "
          "above the threshold")
    for name, group in groups.items():
        t = np.mean([r["transformer"] for r in group], axis=0)
        k = np.mean([r["tokens"] for r in group], axis=0)
        for variant, columns in inputs(t, k, group[0]["senders"]).items():
            print(f"{name:40s} {variant:15s} {spam_missed(stacked_out_of_fold(columns, labels), labels)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
