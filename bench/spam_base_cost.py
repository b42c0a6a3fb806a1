"""What a base checkpoint costs on this machine: fine-tuning step time and fp32 inference speed.

    python bench/spam_base_cost.py [--model PATH ...] [--threads 2] [--steps 12]

Before spending hours on a fine-tune of a larger base model, this measures what one would cost: AdamW
steps at the recipe's batch (16 x 128 tokens of the transformer text built from the corpus's train split)
and batched fp32 inference, for MiniLM (the default base) and every ``--model`` given (a local
checkpoint directory; a sentence-transformers folder such as all-mpnet-base-v2 loads the same way).
The numbers are step times, not a training: the head is new and the loss means nothing here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.spam.text import TextSettings, build_text  # noqa: E402
from daemon.training.data import load_path  # noqa: E402
from daemon.training.recipe import default_base_model  # noqa: E402

DEFAULT_DATA = REPO / "../shared/data/spamassassin-public-corpus.tar.gz"
BATCH, MAX_LENGTH = 16, 128


def measure(path: str, texts: list[str], labels: list[int], steps: int) -> dict[str, float]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    model.train()
    started = 0.0
    for i in range(steps + 2):  # two warm-up steps are not timed
        batch = tokenizer(texts[i * BATCH:(i + 1) * BATCH], truncation=True, max_length=MAX_LENGTH,
                          padding=True, return_tensors="pt")
        if i == 2:
            started = time.monotonic()
        loss = model(**batch, labels=torch.tensor(labels[i * BATCH:(i + 1) * BATCH])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    step_s = (time.monotonic() - started) / steps
    model.eval()
    n = 256
    with torch.inference_mode():
        started = time.monotonic()
        for i in range(0, n, 32):
            model(**tokenizer(texts[i:i + 32], truncation=True, max_length=MAX_LENGTH, padding=True,
                              return_tensors="pt"))
        msgs_per_s = n / (time.monotonic() - started)
    return {"params_m": sum(p.numel() for p in model.parameters()) / 1e6, "step_s": step_s,
            "msgs_per_s": msgs_per_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="local base checkpoint (repeatable)")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train = load_path(args.data, split="train")
    sample = train[:max(512, (args.steps + 2) * BATCH)]
    texts = [build_text(e.message, TextSettings.for_max_length(MAX_LENGTH)) for e in sample]
    labels = [e.label for e in sample]
    models = {"default base (all-MiniLM-L6-v2)": str(default_base_model())} | {Path(m).name: m for m in args.model}
    for name, path in models.items():
        r = measure(path, texts, labels, args.steps)
        epoch_min = r["step_s"] * len(train) / BATCH / 60
        print(f"{name}: {r['params_m']:.1f} M parameters, training step ({BATCH} x {MAX_LENGTH}) "
              f"{r['step_s']:.2f} s, one epoch of {len(train)} messages about {epoch_min:.0f} min, "
              f"fp32 inference {r['msgs_per_s']:.1f} msg/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
