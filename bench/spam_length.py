"""Max length of the spam transformer: 128 vs 256 vs 512 tokens on one cheap, identical protocol.

    python bench/spam_length.py [--lengths 128,256,512] [--sample 800] [--epochs 1] [--threads 1]

Each length trains a complete model version the way the starter model does (the transformer for
``--epochs`` on a stratified ``--sample`` of the train split; token statistics, ensemble and thresholds
on the whole train split and its validation part), then scores the test split. A full 3-epoch run
per length costs 30-60 minutes on 2 cores; this protocol compares what the length alone buys at a
cost that allows all three in one sitting. Results: ``bench/results/spam_length.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.spam import metrics  # noqa: E402
from daemon.spam.model import SpamModel, sigmoid  # noqa: E402
from daemon.training.data import load_path  # noqa: E402
from daemon.training.train import TrainConfig, train_model  # noqa: E402

DEFAULT_DATA = REPO / "../shared/data/spamassassin-public-corpus.tar.gz"


def score_length(length: int, train: list, test: list, args: argparse.Namespace, work: Path) -> dict:
    config = TrainConfig(epochs=args.epochs, max_length=length, transformer_max_train=args.sample,
                         threads=args.threads, progress=False)
    result = train_model(train, work / f"len{length}", config, on_step=lambda msg: print(f"  [{length}] {msg}"))
    model = SpamModel.load(result.path, runtime="torch", threads=args.threads)
    labels = [e.label for e in test]
    t_texts, k_texts = model.texts([e.message for e in test])
    started = time.monotonic()
    t = model.transformer.logits(t_texts)
    transformer_s = time.monotonic() - started
    k = model.tokens.logits(k_texts)
    alone = metrics.report(labels, sigmoid(t).tolist(), 0.5)
    senders = model.sender_features([e.message for e in test])
    full = metrics.report(labels, sigmoid(model.ensemble.logit(t, k, senders)).tolist(), model.thresholds.spam)
    return {
        "fine_tune_s": result.metrics["training"]["train_runtime_s"],
        "transformer_alone": {"auc": alone.auc, "recall_at_fpr_0.001": alone.recall_at_fpr_0_001,
                              "f1_at_logit_0": alone.f1},
        "with_tokens": {"fp": full.confusion.fp, "fn": full.confusion.fn, "fpr": full.fpr, "fnr": full.fnr,
                        "f1": full.f1, "auc": full.auc},
        "transformer_msgs_per_s": len(test) / transformer_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--lengths", default="128,256,512")
    parser.add_argument("--sample", type=int, default=800, help="messages the transformer is fine-tuned on")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "bench/results/spam_length.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    train, test = load_path(args.data, split="train"), load_path(args.data, split="test")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="spam-length-") as work:
        for length in (int(x) for x in args.lengths.split(",")):
            results[str(length)] = score_length(length, train, test, args, Path(work))
            print(length, json.dumps(results[str(length)]), flush=True)
    out = {"dataset": Path(args.data).name, "split": "test", "date": time.strftime("%Y-%m-%d"),
           "protocol": {"sample": args.sample, "epochs": args.epochs, "threads": args.threads},
           "lengths": results}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
