"""The reply's headers and body, built from real message bytes (pure logic, no servers)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

from daemon.delivery.reply import Identity, build_reply, new_message_id, reply_subject
from daemon.mail.mime import parse_message

US = Identity(address="support@example.com", name="Example Support",
              own_addresses=frozenset({"help@example.com"}))
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def original(**headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Alice Example <alice@example.org>")
    msg["To"] = headers.pop("To", "support@example.com")
    msg["Subject"] = headers.pop("Subject", "Printer jams")
    msg["Message-ID"] = headers.pop("Message_ID", "<q1@example.org>")
    msg["Date"] = "Wed, 25 Nov 2026 10:00:00 +0000"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("My printer jams.\n\nWhat can I do?\n")
    return msg.as_bytes()


def build(raw: bytes, reply_all: bool = False) -> EmailMessage:
    reply = build_reply(parse_message(raw), "Open the tray.\nThanks", US, "<r1@example.com>",
                        reply_all=reply_all, now=NOW)
    parsed = message_from_bytes(reply.raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert b"\r\n" in reply.raw and b"\n" not in reply.raw.replace(b"\r\n", b"")
    return parsed


def test_threading_headers_and_identity() -> None:
    msg = build(original(References="<a@x.org> <b@x.org>"))
    assert msg["In-Reply-To"] == "<q1@example.org>"
    assert msg["References"] == "<a@x.org> <b@x.org> <q1@example.org>"
    assert msg["Subject"] == "Re: Printer jams"
    assert msg["From"] == "Example Support <support@example.com>"
    assert msg["To"] == "Alice Example <alice@example.org>"
    assert msg["Cc"] is None
    assert msg["Message-ID"] == "<r1@example.com>"
    assert msg["Date"] == "Wed, 02 Dec 2026 12:00:00 +0000"
    assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"


def test_references_fall_back_to_in_reply_to() -> None:
    msg = build(original(In_Reply_To="<earlier@x.org>"))
    assert msg["References"] == "<earlier@x.org> <q1@example.org>"


def test_reply_to_wins_and_reply_all_copies_others_but_not_us() -> None:
    raw = original(To="support@example.com, Bob <bob@example.org>", Cc="help@example.com, carol@example.org",
                   Reply_To="Tickets <tickets@example.org>")
    assert build(raw)["To"] == "Tickets <tickets@example.org>"
    msg = build(raw, reply_all=True)
    assert msg["To"] == "Tickets <tickets@example.org>"
    assert msg["Cc"] == "Bob <bob@example.org>, carol@example.org"


def test_body_is_the_text_then_the_quoted_original() -> None:
    body = build(original()).get_content().replace("\r\n", "\n")
    assert body.startswith("Open the tray.\nThanks\n\nOn Wed, 25 Nov 2026 10:00:00 +0000, Alice Example wrote:\n")
    assert "> My printer jams.\n>\n> What can I do?\n" in body


def test_subject_gets_one_re() -> None:
    assert reply_subject("Re: RE: Aw: Printer jams") == "Re: Printer jams"
    assert reply_subject("Printer jams") == "Re: Printer jams"
    assert reply_subject("Re[2]: x") == "Re: x"
    assert reply_subject("") == "Re:"


def test_hostile_header_values_cannot_add_header_lines() -> None:
    raw = original().replace(b"Subject:", b"References: <a@x.org>\n Bcc: evil@x.org\nSubject:")
    msg = build(raw)
    assert msg["Bcc"] is None
    assert msg["References"] == "<a@x.org> <q1@example.org>"


def test_new_message_ids_are_unique_and_on_our_domain() -> None:
    ids = {new_message_id("support@example.com") for _ in range(100)}
    assert len(ids) == 100 and all(i.endswith("@example.com>") for i in ids)
