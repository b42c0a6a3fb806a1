"""Inference paths of one Mailsense model version: speed and accuracy on the test split.

    python bench/spam_speed.py --model DIR [--data TARBALL] [--max-lengths 128,256]

For each path (ONNX Runtime int8 screen + fp32 for close calls / ONNX Runtime fp32 / PyTorch fp32 /
PyTorch dynamic int8, batch 32 / batch 1, max length) it reports messages per
second for the whole classify call (texts built, tokenized, both model parts, ensemble) on
pre-parsed messages, plus parse time separately, and the test metrics at the model's own
threshold, so "faster with the same accuracy" is checked rather than assumed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.spam import metrics  # noqa: E402
from daemon.spam.model import SpamModel  # noqa: E402
from daemon.training.data import iter_raw, parse_examples  # noqa: E402

RUNTIME_OF = {"onnx+int8-screen": "auto", "onnx": "onnx", "torch-fp32": "torch", "torch-int8": "torch"}
DEFAULT_DATA = REPO / "../shared/data/spamassassin-public-corpus.tar.gz"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--max-lengths", default="", help="comma list; default: the model's own")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--limit", type=int, default=0, help="only the first N test messages")
    parser.add_argument("--paths", default="onnx+int8-screen,onnx,torch-fp32,torch-int8",
                        help="comma list of onnx+int8-screen, onnx, torch-fp32, torch-int8")
    parser.add_argument("--batch1", action="store_true", help="also time each path with batch size 1 (slow)")
    parser.add_argument("--out", default=str(REPO / "bench/results/spam_speed.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    raws = [r for r in iter_raw(args.data) if r.split == "test"]
    if args.limit:
        raws = raws[: args.limit]
    started = time.monotonic()
    examples = parse_examples(raws)
    parse_rate = len(raws) / (time.monotonic() - started)
    messages = [e.message for e in examples]
    labels = [e.label for e in examples]
    lengths = [int(x) for x in args.max_lengths.split(",") if x] or [None]
    rows = []
    for max_length in lengths:
        names = [p for p in args.paths.split(",") if p]
        paths = [(p, 32) for p in names] + ([(p, 1) for p in names] if args.batch1 else [])
        for path, batch in paths:
            model = SpamModel.load(args.model, quantize=path == "torch-int8", threads=args.threads,
                                   max_length=max_length, runtime=RUNTIME_OF[path])
            assert model.transformer.path_name == path, (model.transformer.path_name, path)
            model.scores(messages[:8])  # warm-up
            t0 = time.monotonic()
            scores = model.scores(messages, batch_size=batch)
            rate = len(messages) / (time.monotonic() - t0)
            r = metrics.report(labels, scores.tolist(), model.thresholds.spam)
            row = {"max_length": model.transformer.max_length, "path": path, "batch": batch,
                   "msgs_per_s": rate, "fpr": r.fpr, "fnr": r.fnr, "f1": r.f1, "auc": r.auc,
                   "recall_at_fpr_0.001": r.recall_at_fpr_0_001, "fp": r.confusion.fp, "fn": r.confusion.fn,
                   "rescored_in_fp32": model.last_rescored if path == "onnx+int8-screen" else None}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = {"model": str(args.model), "n": len(messages), "parse_msgs_per_s": parse_rate,
           "threads": args.threads, "cpu_count": os.cpu_count(), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print("| max length | path | batch | msg/s | FPR | FNR | F1 | AUC |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['max_length']} | {r['path']} | {r['batch']} | {r['msgs_per_s']:.0f} "
              f"| {r['fpr']:.2%} | {r['fnr']:.2%} | {r['f1']:.4f} | {r['auc']:.4f} |")
    print(f"parsing: {parse_rate:.0f} msg/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
