"""The parse stage: raw bytes to subject, addresses, text body and attachment list.

Unparseable input is quarantined with its reason and raw bytes kept; it is a property of the
message, so retrying would not help.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from daemon.db.tables import Message
from daemon.errors import describe_error
from daemon.mail.mime import Unparseable, parse_message
from daemon.pipeline.stage import Outcome


class ParseStage:
    name = "parse"
    batch_size = 32

    def waiting_reason(self) -> str | None:
        return None

    def process(self, session: Session, messages: list[Message]) -> dict[int, Outcome]:
        outcomes: dict[int, Outcome] = {}
        with session.begin():
            for message in messages:
                try:
                    parsed = parse_message(message.raw)
                except Unparseable as exc:
                    outcomes[message.id] = Outcome.quarantine(str(exc))
                    continue
                except Exception as exc:  # a parser crash is a property of these bytes: retrying won't help
                    outcomes[message.id] = Outcome.quarantine(f"MIME parser crashed: {describe_error(exc)}")
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
