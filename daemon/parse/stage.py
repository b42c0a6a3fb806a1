"""The parse stage: raw bytes to subject, addresses, text body and attachment list.

Every message that has a header block goes on to ``classify``: a message the MIME parser cannot
take apart gets a minimal parse from its raw bytes (``daemon.mail.mime.salvage_message``, its
defects say so), because quarantined mail is never classified or filed, which made unparseable
mail a way past the spam filter. Quarantined, with the reason and the raw bytes kept, are only:

- 0 bytes, or bytes with no header block: nothing to classify, or nothing says it is mail;
- a parse that runs past ``budget_seconds`` (see ``daemon.parse.bounded`` for how the limit is
  enforced); the worker moves on to the next message at once;
- a parse process that dies (out of memory on a huge message).

These are properties of the bytes, so retrying would not help; ``mailsense requeue`` sends a message
back after a fix.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from daemon.db.tables import Message
from daemon.mail.mime import ParsedMessage, Unparseable
from daemon.parse.bounded import DEFAULT_PARSE, BoundedParser, ParseFailed, ParseTimeout
from daemon.pipeline.stage import Outcome

PARSE_BUDGET_SECONDS = 5.0
"""Longest a message may take to parse. Ordinary mail takes milliseconds, the slowest of the 1,200
hostile-mail benchmark messages 1.1 s (20,000 parts), a 20 MB attachment 0.7 s; the rest of the
budget is for a busy machine. A batch (32) of messages over budget holds a worker under three minutes."""


class ParseStage:
    name = "parse"
    batch_size = 32

    def __init__(self, budget_seconds: float = PARSE_BUDGET_SECONDS, parse: str = DEFAULT_PARSE) -> None:
        """``parse`` names the parse function as ``"module:function"`` (it runs in a child process)."""
        self.parser = BoundedParser(budget_seconds, parse)

    def waiting_reason(self) -> str | None:
        return None

    def process(self, session: Session, messages: list[Message]) -> dict[int, Outcome]:
        outcomes: dict[int, Outcome] = {}
        results: dict[int, ParsedMessage] = {}
        for message in messages:  # outside the transaction: a batch may take a while
            try:
                results[message.id] = self.parser.parse(message.raw)
            except (Unparseable, ParseTimeout) as exc:
                outcomes[message.id] = Outcome.quarantine(str(exc))
            except ParseFailed as exc:  # a property of these bytes: retrying won't help
                outcomes[message.id] = Outcome.quarantine(f"MIME parser crashed: {exc}")
            session.expire(message, ["raw"])  # the worker defers raw: one message's bytes in memory at a time
        if session.in_transaction():
            session.commit()  # end the reads of raw; the writes below are one transaction
        with session.begin():
            for message in messages:
                parsed = results.get(message.id)
                if parsed is None:
                    continue
                message.message_id = message.message_id or parsed.message_id
                message.subject = parsed.subject
                message.from_name = parsed.from_name
                message.from_addr = parsed.from_addr
                message.to_addrs = parsed.to_addrs
                message.sent_at = parsed.sent_at
                message.headers = parsed.headers
                message.body_text = parsed.body_text
                message.attachments = [
                    {"filename": a.filename, "content_type": a.content_type, "size": a.size}
                    for a in parsed.attachments
                ]
                message.parse_defects = parsed.defects
                outcomes[message.id] = Outcome.next()
        return outcomes
