"""Mailsense against classic spam filters, side by side, on one train/test split.

Every system learns from ``split=train`` of the SpamAssassin public corpus and is scored on
``split=test``; spam is the positive class. Systems: the Mailsense model version (at its own
threshold, chosen on a validation part of the train split), SpamAssassin 4 (local tests +
Bayes, via spamd/spamc), bogofilter, TF-IDF + multinomial naive Bayes, and Rspamd 3 (Bayes on
sqlite3). Results go to ``bench/results/spam.json`` and a markdown table on stdout.

    python bench/spam_peers.py                        # trains Mailsense too (about an hour on 2 cores)
    python bench/spam_peers.py --mailsense-model DIR  # reuse a trained model version
    python bench/spam_peers.py --systems bogofilter,tfidf_nb

Needs ``apt-get install -y spamassassin spamc bogofilter rspamd`` and runs as root or as a user
that may start spamd/rspamd. Network tests are off for every peer.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.spam import metrics  # noqa: E402
from daemon.training.data import RawExample, iter_raw  # noqa: E402

DEFAULT_DATA = REPO / "../shared/data/spamassassin-public-corpus.tar.gz"
ALL_SYSTEMS = ("mailsense", "spamassassin", "bogofilter", "bogofilter_unsure_as_spam", "tfidf_nb", "rspamd")


@dataclass
class Scored:
    """Per test message: a score (higher = spammier) and the system's own spam verdict."""

    scores: list[float]
    verdicts: list[int]
    seconds: float


def summarise(labels: list[int], result: Scored) -> dict[str, float | int | dict[str, int]]:
    c = metrics.confusion(labels, result.verdicts)
    return {
        "fpr": metrics.fpr(c), "fnr": metrics.fnr(c), "f1": metrics.f1(c),
        "precision": metrics.precision(c), "recall": metrics.recall(c),
        "auc": metrics.roc_auc(labels, result.scores),
        "recall_at_fpr_0.001": metrics.recall_at_fpr(labels, result.scores, 0.001),
        "msgs_per_s": len(labels) / result.seconds if result.seconds else float("nan"),
        "confusion": {"tp": c.tp, "fp": c.fp, "tn": c.tn, "fn": c.fn},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listening on port {port} after {timeout:.0f} s")


def write_files(examples: list[RawExample], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, e in enumerate(examples):
        path = folder / f"{i:05d}.eml"
        path.write_bytes(e.raw)
        paths.append(path)
    return paths


# --- Mailsense ----------------------------------------------------------------------------

def run_mailsense(train: list[RawExample], test: list[RawExample], work: Path, args: argparse.Namespace) -> Scored:
    from daemon.mail.mime import Unparseable, parse_message
    from daemon.spam.model import SpamModel
    from daemon.training.data import parse_examples
    from daemon.training.train import TrainConfig, train_model

    model_dir = Path(args.mailsense_model) if args.mailsense_model else work / "mailsense-model"
    if not args.mailsense_model:
        train_model(parse_examples(train), model_dir,
                    TrainConfig(epochs=args.epochs, max_length=args.max_length), on_step=print)
    model = SpamModel.load(model_dir)
    model.scores([parse_message(test[0].raw)])  # warm-up: first call allocates
    started = time.monotonic()
    parsed, index = [], []
    for i, e in enumerate(test):
        try:
            parsed.append(parse_message(e.raw))
            index.append(i)
        except (Unparseable, Exception):
            pass  # an unparseable message gets no verdict in the daemon: counted as not spam here
    scores = model.scores(parsed, batch_size=32)
    seconds = time.monotonic() - started
    full = [0.0] * len(test)
    for i, s in zip(index, scores, strict=True):
        full[i] = float(s)
    if len(parsed) < len(test):
        print(f"mailsense: {len(test) - len(parsed)} test message(s) could not be parsed (counted as ham)")
    return Scored(full, [int(s >= model.thresholds.spam) for s in full], seconds)


# --- TF-IDF + multinomial naive Bayes ----------------------------------------------------

def run_tfidf_nb(train: list[RawExample], test: list[RawExample], work: Path, args: argparse.Namespace) -> Scored:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.naive_bayes import MultinomialNB

    def text(e: RawExample) -> str:
        return e.raw.decode("latin-1")

    vec = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=200_000)
    clf = MultinomialNB(alpha=0.01)
    clf.fit(vec.fit_transform([text(e) for e in train]), [e.label for e in train])
    started = time.monotonic()
    proba = clf.predict_proba(vec.transform([text(e) for e in test]))[:, 1]
    seconds = time.monotonic() - started
    return Scored(proba.tolist(), [int(p >= 0.5) for p in proba], seconds)


# --- bogofilter ---------------------------------------------------------------------------

def _bogofilter(train: list[RawExample], test: list[RawExample], work: Path) -> tuple[list[str], list[float], float]:
    db = work / "bogofilter"
    shutil.rmtree(db, ignore_errors=True)
    db.mkdir(parents=True)
    ham = write_files([e for e in train if e.label == 0], work / "train-ham")
    spam = write_files([e for e in train if e.label == 1], work / "train-spam")
    subprocess.run(["bogofilter", "-d", str(db), "-s", "-B", *map(str, spam)], check=True)
    subprocess.run(["bogofilter", "-d", str(db), "-n", "-B", *map(str, ham)], check=True)
    files = write_files(test, work / "test")
    started = time.monotonic()
    out = subprocess.run(["bogofilter", "-d", str(db), "-T", "-B", *map(str, files)],
                         check=False, capture_output=True, text=True).stdout
    seconds = time.monotonic() - started
    by_file = {}
    for line in out.splitlines():
        name, flag, score = line.rsplit(maxsplit=2)
        by_file[name] = (flag, float(score))
    flags = [by_file[str(f)][0] for f in files]
    scores = [by_file[str(f)][1] for f in files]
    return flags, scores, seconds


_bogo_cache: dict[str, tuple[list[str], list[float], float]] = {}


def run_bogofilter(train: list[RawExample], test: list[RawExample], work: Path, args: argparse.Namespace) -> Scored:
    if "r" not in _bogo_cache:
        _bogo_cache["r"] = _bogofilter(train, test, work)
    flags, scores, seconds = _bogo_cache["r"]
    return Scored(scores, [int(f == "S") for f in flags], seconds)


def run_bogofilter_unsure(train: list[RawExample], test: list[RawExample], work: Path,
                          args: argparse.Namespace) -> Scored:
    if "r" not in _bogo_cache:
        _bogo_cache["r"] = _bogofilter(train, test, work)
    flags, scores, seconds = _bogo_cache["r"]
    return Scored(scores, [int(f in ("S", "U")) for f in flags], seconds)


# --- SpamAssassin -------------------------------------------------------------------------

def run_spamassassin(train: list[RawExample], test: list[RawExample], work: Path,
                     args: argparse.Namespace) -> Scored:
    home = work / "sa-home"
    bayes = work / "sa-bayes"
    for d in (home, bayes):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    env = {**os.environ, "HOME": str(home)}
    cf = ["--cf", f"bayes_path {bayes}/bayes", "--cf", "bayes_auto_learn 0", "--cf", "bayes_file_mode 0777"]
    ham_dir, spam_dir = work / "sa-train-ham", work / "sa-train-spam"
    write_files([e for e in train if e.label == 0], ham_dir)
    write_files([e for e in train if e.label == 1], spam_dir)
    t0 = time.monotonic()
    subprocess.run(["sa-learn", "-L", "--dbpath", str(bayes), "--spam", str(spam_dir)], check=True, env=env,
                   capture_output=True)
    subprocess.run(["sa-learn", "-L", "--dbpath", str(bayes), "--ham", str(ham_dir)], check=True, env=env,
                   capture_output=True)
    print(f"spamassassin: Bayes learned in {time.monotonic() - t0:.0f} s")
    if os.geteuid() == 0:
        shutil.chown(home, "debian-spamd")
        for path in [bayes, *bayes.iterdir()]:
            shutil.chown(path, "debian-spamd")
    port = free_port()
    spamd = subprocess.Popen(
        ["spamd", "-L", "-x", "-u", "debian-spamd", "-H", str(home), "-l", "-i", f"127.0.0.1:{port}",
         "-A", "127.0.0.1", "--max-children", "2", "--min-children", "2", "-s", "stderr", *cf],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, 120)
        files = write_files(test, work / "test")
        started = time.monotonic()
        scores: list[float] = []
        # Two spamc clients in flight, matching spamd's two children and the two cores.
        from concurrent.futures import ThreadPoolExecutor

        def check(path: Path) -> float:
            with path.open("rb") as fh:
                out = subprocess.run(["spamc", "-d", "127.0.0.1", "-p", str(port), "-c"], stdin=fh,
                                     capture_output=True, text=True, check=False).stdout
            return float(out.split("/")[0])

        with ThreadPoolExecutor(max_workers=2) as pool:
            scores = list(pool.map(check, files))
        seconds = time.monotonic() - started
    finally:
        spamd.send_signal(signal.SIGTERM)
        spamd.wait(30)
    return Scored(scores, [int(s >= 5.0) for s in scores], seconds)


# --- Rspamd -------------------------------------------------------------------------------

_RSPAMD_OFF = ("hfilter", "once_received", "rbl", "surbl", "spf", "dkim", "dmarc", "arc", "asn", "fuzzy_check",
               "dcc", "mx_check", "neural", "reputation", "ratelimit", "replies", "greylist", "url_redirector",
               "history_redis", "rspamd_update", "external_services", "antivirus", "metadata_exporter",
               "clickhouse", "elastic", "p0f", "spamtrap", "bimi", "url_reputation", "dynamic_conf",
               "multimap", "emails", "whitelist", "phishing", "milter_headers")


def _rspamd_conf(conf: Path, normal: int, controller: int, db: Path) -> None:
    local, override = conf / "local.d", conf / "override.d"
    local.mkdir(parents=True)
    override.mkdir(parents=True)
    (override / "worker-normal.inc").write_text(f'bind_socket = "127.0.0.1:{normal}";\ncount = 1;\n')
    (override / "worker-controller.inc").write_text(
        f'bind_socket = "127.0.0.1:{controller}";\nsecure_ip = "127.0.0.1";\n')
    (override / "worker-proxy.inc").write_text("enabled = false;\n")
    (override / "worker-fuzzy.inc").write_text("enabled = false;\ncount = 0;\n")
    (override / "options.inc").write_text(
        'dns { nameserver = ["127.0.0.1:1"]; timeout = 0.1s; retransmits = 1; }\n'
        "check_all_filters = false;\n")
    (override / "logging.inc").write_text('type = "console";\nlevel = "error";\n')
    (override / "redis.conf").write_text("enabled = false;\n")
    for module in _RSPAMD_OFF:
        (override / f"{module}.conf").write_text("enabled = false;\n")
    (override / "classifier-bayes.conf").write_text(f"""
backend = "sqlite3";
tokenizer {{ name = "osb"; }}
min_learns = 200;
cache {{ type = "sqlite3"; path = "{db}/learn_cache.sqlite"; }}
statfile {{ symbol = "BAYES_HAM"; path = "{db}/bayes.ham.sqlite"; spam = false; }}
statfile {{ symbol = "BAYES_SPAM"; path = "{db}/bayes.spam.sqlite"; spam = true; }}
autolearn = false;
""")


def _rspamd_post(port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> dict:  # type: ignore[type-arg]
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST", headers=headers or {})
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = resp.read()
        return json.loads(body) if body.strip() else {"status": resp.status}


def run_rspamd(train: list[RawExample], test: list[RawExample], work: Path, args: argparse.Namespace) -> Scored:
    base = work / "rspamd"
    shutil.rmtree(base, ignore_errors=True)
    conf, db, run, logs = base / "conf", base / "db", base / "run", base / "log"
    for d in (db, run, logs):
        d.mkdir(parents=True)
    normal, controller = free_port(), free_port()
    _rspamd_conf(conf, normal, controller, db)
    cmd = ["rspamd", "-f", "-c", "/etc/rspamd/rspamd.conf", f"--var=LOCAL_CONFDIR={conf}", f"--var=DBDIR={db}",
           f"--var=RUNDIR={run}", f"--var=LOGDIR={logs}"]
    if os.geteuid() == 0:
        for root, dirs, _files in os.walk(base):
            for d in dirs:
                shutil.chown(Path(root) / d, "_rspamd", "_rspamd")
        shutil.chown(base, "_rspamd", "_rspamd")
        cmd += ["-u", "_rspamd", "-g", "_rspamd"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(base / "stderr.log", "wb"))  # noqa: SIM115
    try:
        wait_port(normal, 120)
        wait_port(controller, 120)
        t0 = time.monotonic()
        learned = 0
        for e in train:
            # Learn-Type: bulk makes Bayes learn mail it already scores as certain (see the notes).
            try:
                reply = _rspamd_post(controller, "/learnspam" if e.label else "/learnham", e.raw,
                                     {"Learn-Type": "bulk"})
                learned += bool(reply.get("success"))
            except urllib.error.HTTPError as exc:  # e.g. 208: already learned (duplicate message)
                exc.close()
        print(f"rspamd: learned {learned}/{len(train)}")
        print(f"rspamd: Bayes learned in {time.monotonic() - t0:.0f} s")
        started = time.monotonic()
        results = [_rspamd_post(normal, "/checkv2", e.raw) for e in test]
        seconds = time.monotonic() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    spam_actions = {"add header", "rewrite subject", "reject"}
    scores = [float(r.get("score", 0.0)) for r in results]
    verdicts = [int(r.get("action") in spam_actions) for r in results]
    with_bayes = sum(1 for r in results if any(s.startswith("BAYES_") for s in r.get("symbols", {})))
    print(f"rspamd: Bayes symbol present in {with_bayes}/{len(results)} test results")
    return Scored(scores, verdicts, seconds)


RUNNERS: dict[str, Callable[[list[RawExample], list[RawExample], Path, argparse.Namespace], Scored]] = {
    "mailsense": run_mailsense,
    "spamassassin": run_spamassassin,
    "bogofilter": run_bogofilter,
    "bogofilter_unsure_as_spam": run_bogofilter_unsure,
    "tfidf_nb": run_tfidf_nb,
    "rspamd": run_rspamd,
}


def markdown(results: dict[str, dict]) -> str:  # type: ignore[type-arg]
    lines = ["| system | FPR | FNR | F1 | ROC AUC | recall at FPR 0.1 % | msg/s |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['fpr']:.2%} | {r['fnr']:.2%} | {r['f1']:.4f} | {r['auc']:.4f} "
                     f"| {r['recall_at_fpr_0.001']:.3f} | {r['msgs_per_s']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS))
    parser.add_argument("--mailsense-model", help="reuse this trained model version directory")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", default=str(REPO / "bench/results/spam.json"))
    parser.add_argument("--limit", type=int, default=0, help="smoke test: every Nth message only")
    parser.add_argument("--merge", action="store_true", help="keep systems already in --out that were not rerun")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    raws = list(iter_raw(args.data))
    if args.limit:
        raws = raws[:: args.limit]
    train = [e for e in raws if e.split == "train"]
    test = [e for e in raws if e.split == "test"]
    labels = [e.label for e in test]
    print(f"train {len(train)} ({sum(e.label for e in train)} spam), test {len(test)} ({sum(labels)} spam)")
    out = Path(args.out)
    results: dict[str, dict] = {}  # type: ignore[type-arg]
    if args.merge and out.exists():
        results = json.loads(out.read_text()).get("systems", {})
    work = Path(tempfile.mkdtemp(prefix="mailsense-spam-bench-"))
    os.chmod(work, 0o755)
    try:
        for name in args.systems.split(","):
            print(f"== {name}", flush=True)
            scored = RUNNERS[name](train, test, work, args)
            results[name] = summarise(labels, scored)
            print(json.dumps(results[name]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "dataset": Path(args.data).name, "split": "test", "n_test": len(test), "n_spam": sum(labels),
        "machine": f"{os.cpu_count()} CPU cores, no GPU", "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "mailsense_model": args.mailsense_model, "systems": results,
    }, indent=2) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
