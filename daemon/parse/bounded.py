"""Parsing under a deadline: the MIME parse runs in a child process, which is killed when it overruns.

Why a process. ``daemon.mail.mime`` caps what each step reads and keeps each step linear, so every
cost we know of is bounded (the hostile-mail benchmark, ``bench/hostile.py``, measures the worst).
But the stdlib email parser it builds on has superlinear corners of its own that cannot be capped
without rewriting it (header parameters, nesting depth times lines), and one we do not know of
would stall a pipeline worker for as long as the input makes it. A time limit inside the worker
cannot stop that: a regex match is one C call that neither a signal handler nor an exception
interrupts until it returns, and a thread cannot be stopped at all; a parse thread past its
deadline would go on holding a core and, as the regex engine holds the GIL, the whole daemon. A
process can be killed. So the stage hands each message to a child process and waits at most the
budget for the answer; past it the child is killed, the message is quarantined with the reason
(its raw bytes stay stored; ``mailsense requeue`` tries again), and the next message gets a fresh child.

The child is ``python -m daemon.parse.bounded``, started once per worker thread that parses at the
same time and reused: a plain interpreter, not a fork (the daemon has threads and open database
connections a forked child would inherit mid-use) and not ``multiprocessing`` (whose ``spawn``
re-imports the daemon's main module in every child). Starting one costs about half a second of
imports; a message crosses a pipe each way (about a millisecond, some 50 ms for 20 MB).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from daemon.mail.mime import ParsedMessage, Unparseable

log = logging.getLogger(__name__)

DEFAULT_PARSE = "daemon.mail.mime:parse_message"
START_SECONDS = 60.0
"""How long a new child may take to import before it counts as failed (seconds, on a busy machine)."""
_LENGTH = struct.Struct(">Q")


class ParseTimeout(Exception):
    """The parse ran past its budget; the child doing it was killed. The text is the quarantine reason."""


class ParseFailed(Exception):
    """The parse raised something other than ``Unparseable``, or its process died (out of memory, a crash)."""


class _NoChild(Exception):
    """A parse process could not be started: the machine's fault, not the message's."""


def _load(spec: str) -> Callable[[bytes], ParsedMessage]:
    module, _, name = spec.partition(":")
    function: Callable[[bytes], ParsedMessage] = getattr(importlib.import_module(module), name)
    return function


def _write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_LENGTH.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> bytes | None:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    payload = stream.read(length)
    return payload if len(payload) == length else None


def serve() -> None:
    """The child: parse each message it is sent and answer with the result or the error, until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the daemon's terminal is the daemon's to handle
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing printed may end up inside a reply
    config = _read_frame(requests)
    if config is None:
        return
    path, spec = pickle.loads(config)
    sys.path[:0] = [entry for entry in path if entry not in sys.path]
    parse = _load(spec)
    _write_frame(replies, pickle.dumps(("ready", None)))
    while (raw := _read_frame(requests)) is not None:
        reply: tuple[str, Any]
        try:
            reply = ("ok", parse(raw))
        except Unparseable as exc:
            reply = ("unparseable", str(exc))
        except Exception as exc:  # the parent decides what it means; this process only reports it
            reply = ("error", f"{type(exc).__name__}: {str(exc)[:200]}")
        _write_frame(replies, pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))


class _Child:
    """One parse process and its pipes."""

    def __init__(self, spec: str) -> None:
        # The same daemon package as ours, wherever the interpreter would look first.
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daemon.parse.bounded"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            close_fds=True, env=env,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.requests, self.replies = self.process.stdin, self.process.stdout
        try:
            _write_frame(self.requests, pickle.dumps(([p for p in sys.path if p], spec)))
            kind, _ = self.receive(START_SECONDS)
        except (OSError, EOFError, TimeoutError):
            kind = "dead"
        if kind != "ready":
            self.kill()
            raise _NoChild(f"the parse process did not start ({self.exit_status()})")

    def receive(self, seconds: float) -> tuple[str, Any]:
        """The next reply; TimeoutError if it is not complete within ``seconds``, EOFError if the child died."""
        deadline = time.monotonic() + seconds
        head = self._read(_LENGTH.size, deadline)
        (length,) = _LENGTH.unpack(head)
        reply: tuple[str, Any] = pickle.loads(self._read(length, deadline))
        return reply

    def _read(self, size: int, deadline: float) -> bytes:
        fd = self.replies.fileno()
        chunks: list[bytes] = []
        while size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, min(size, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def alive(self) -> bool:
        return self.process.poll() is None

    def exit_status(self) -> str:
        code = self.process.poll()
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()
        for stream in (self.requests, self.replies):
            with contextlib.suppress(OSError):
                stream.close()


class BoundedParser:
    """``parse`` (a ``"module:function"`` taking raw bytes) run in child processes with a time budget.

    Thread-safe: each thread that parses while the others do gets a child of its own. With a
    budget of 0 the parse runs in-process with no deadline (for a one-off command, or where no
    process can be started).
    """

    def __init__(self, budget_seconds: float, parse: str = DEFAULT_PARSE) -> None:
        self.budget_seconds = budget_seconds
        self.spec = parse
        self._idle: list[_Child] = []
        self._lock = threading.Lock()
        self._warned = False
        self._in_process: Callable[[bytes], ParsedMessage] | None = None if budget_seconds > 0 else _load(parse)

    def parse(self, raw: bytes) -> ParsedMessage:
        """The parse of ``raw``; raises ``Unparseable``, ``ParseTimeout`` or ``ParseFailed``.

        Where no parse process can be started at all (a broken installation, no free memory), the
        message is parsed in this process without a deadline and the error logged once: the caps in
        ``daemon.mail.mime`` still bound every known cost, and mail keeps flowing.
        """
        if self._in_process is not None:
            return self._in_process(raw)
        try:
            child = self._take()
            try:
                _write_frame(child.requests, raw)
            except OSError:  # it died while idle: not this message's doing, so once more on a new one
                child.kill()
                child = _Child(self.spec)
                _write_frame(child.requests, raw)
        except (_NoChild, OSError) as exc:
            if not self._warned:
                log.error("cannot start a parse process (%s); parsing in-process, without a deadline", exc)
                self._warned = True
            return _load(self.spec)(raw)
        try:
            kind, value = child.receive(self.budget_seconds)
        except TimeoutError:
            child.kill()
            raise ParseTimeout(f"parsing took longer than the {self.budget_seconds:g} s budget; "
                               f"stored raw, not parsed") from None
        except (OSError, EOFError, pickle.UnpicklingError):
            child.kill()
            raise ParseFailed(f"the parse process died ({child.exit_status()})") from None
        with self._lock:
            self._idle.append(child)
        if kind == "ok":
            assert isinstance(value, ParsedMessage)
            return value
        if kind == "unparseable":
            raise Unparseable(value)
        raise ParseFailed(str(value))

    def _take(self) -> _Child:
        with self._lock:
            while self._idle:
                child = self._idle.pop()
                if child.alive():
                    return child
                child.kill()
        return _Child(self.spec)

    def close(self) -> None:
        """Stop the idle children (busy ones stop when their parse returns and their stdin closes)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for child in idle:
            child.kill()


if __name__ == "__main__":
    try:
        serve()
    except BrokenPipeError:  # the daemon went away (stopped or killed) mid-exchange: nothing to report to
        sys.exit(0)
