"""MIME parsing on plain bytes: decoding, HTML, attachments, and what counts as unparseable."""

from __future__ import annotations

import pytest

from daemon.mail.mime import Unparseable, html_to_text, parse_message, quick_message_id


def test_rfc2047_headers_and_html_only_body():
    raw = (b"From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <Joerg@Example.DE>\r\nTo: a@b.c, \"B\" <b@c.d>\r\n"
           b"Subject: =?iso-8859-1?q?Gr=FC=DFe?=\r\nMessage-ID: <x@y>\r\nDate: Tue, 24 Nov 2026 09:00:00 +0100\r\n"
           b"Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Hello <b>world</b></p>"
           b"<ul><li>one</li></ul></body></html>")
    parsed = parse_message(raw)
    assert parsed.subject == "Grüße"
    assert (parsed.from_name, parsed.from_addr, parsed.from_domain) == ("Jörg Müller", "joerg@example.de", "example.de")
    assert parsed.to_addrs == ["a@b.c", "b@c.d"]
    assert parsed.body_from_html and "Hello world" in parsed.body_text and "one" in parsed.body_text
    assert parsed.sent_at is not None and parsed.sent_at.utcoffset().total_seconds() == 3600
    assert quick_message_id(raw) == "<x@y>"


def test_stray_script_tags_and_layout_tables_do_not_hide_the_text():
    # A spam in the SpamAssassin corpus opens its HTML with "</SCRIPT>"; html2text alone then
    # drops every later word and the message looked empty to the classifier.
    stray = "\n  </SCRIPT>\n<center><table><tr><td><b>Professional Appointment Setting</b></td>" \
            "<td>Call us Toll Free</td></tr></table></center>"
    text = html_to_text(stray)
    assert "Professional Appointment Setting" in text and "Call us Toll Free" in text
    assert "|" not in text and "---" not in text
    scripted = "<style>p {color: red}</style><script>var s = '<b>not text</b>';</script><p>Hello <b>you</b></p>"
    assert html_to_text(scripted).split() == ["Hello", "you"]


def test_plain_part_preferred_and_attachments_listed():
    raw = (b"From: a@b.c\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
           b"--B\r\nContent-Type: multipart/alternative; boundary=A\r\n\r\n"
           b"--A\r\nContent-Type: text/plain\r\n\r\nplain text\r\n"
           b"--A\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--A--\r\n"
           b"--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--B--\r\n")
    parsed = parse_message(raw)
    assert parsed.body_text.strip() == "plain text" and not parsed.body_from_html
    assert [(a.filename, a.content_type, a.size) for a in parsed.attachments] == [("r.pdf", "application/pdf", 4)]


def test_unknown_charset_and_nul_bytes_are_repaired():
    raw = b"From: a@b.c\r\nSubject: x\r\nContent-Type: text/plain; charset=klingon\r\n\r\nCaf\xe9\x00 ok\r\n"
    parsed = parse_message(raw)
    assert "\x00" not in parsed.body_text and parsed.body_text.startswith("Caf")


def test_body_without_a_charset_is_decoded_not_replaced():
    russian = "Заработай деньги дома! Только сегодня: бесплатная консультация по телефону, звоните сейчас."
    for charset in ("koi8-r", "cp1251"):
        raw = b"From: a@b.c\r\nSubject: x\r\nContent-Type: text/plain\r\n\r\n" + russian.encode(charset)
        body = parse_message(raw).body_text
        assert "\ufffd" not in body and "деньги" in body, charset
    utf8 = b"From: a@b.c\r\nSubject: x\r\nContent-Type: text/plain\r\n\r\n" + "Grüße".encode()
    assert parse_message(utf8).body_text.strip() == "Grüße"


@pytest.mark.parametrize("raw", [b"", b"   \r\n", b"no header here, just text\r\n"])
def test_nothing_to_parse_is_unparseable(raw):
    with pytest.raises(Unparseable):
        parse_message(raw)


def test_header_values_that_crash_the_modern_parser_fall_back_to_plain_decoding():
    """``Message-Id: <>`` makes policy.default raise IndexError (seen in the SpamAssassin corpus)."""
    raw = (b"From: =?utf-8?q?Bank?= <x@example.org>\r\nMessage-Id: <>\r\nSubject: inheritance\r\n"
           b"Date: not a date\r\n\r\nbody\r\n")
    parsed = parse_message(raw)
    assert parsed.message_id == "<>" and parsed.subject == "inheritance"
    assert parsed.from_addr == "x@example.org" and parsed.sent_at is None


def test_multipart_whose_declared_boundary_never_occurs_is_reparsed():
    # Spam in the shared corpus declares boundary="=Multipart Boundary 0731021742" and writes
    # "--= Multipart Boundary 0731021742": the stdlib finds no part and the body was empty.
    raw = (b"From: a@b.c\r\nSubject: s\r\nContent-Type: multipart/alternative; boundary=\"=Boundary 07\"\r\n\r\n"
           b"This is a multipart MIME message.\r\n\r\n"
           b"--= Boundary 07\r\nContent-Type: text/plain; charset=\"ISO-8859-1\"\r\n\r\n"
           b"NEED A WEBSITE? We build them.\r\n"
           b"--= Boundary 07\r\nContent-Type: text/html\r\n\r\n<p>NEED A <b>WEBSITE</b>? We build them.</p>\r\n"
           b"--= Boundary 07--\r\n")
    parsed = parse_message(raw)
    assert parsed.body_text.split() == ["NEED", "A", "WEBSITE?", "We", "build", "them."]
    assert "StartBoundaryNotFoundDefect" in parsed.defects
    # A multipart with no recognisable delimiter at all still parses, with nothing invented.
    hopeless = b"From: a@b.c\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=\"X\"\r\n\r\njust text\r\n"
    assert parse_message(hopeless).body_text == ""


def test_content_type_without_semicolon_before_charset_is_still_text():
    raw = b"From: a@b.c\r\nSubject: s\r\nContent-Type: TEXT/PLAIN charset=US-ASCII\r\n\r\nRomanian software export\r\n"
    assert parse_message(raw).body_text.strip() == "Romanian software export"


def test_html_after_an_unclosed_head_is_kept():
    html = ("<html>\n<head>\n<title>FREIGHTMART Mail Campaign</title>\n<DIV align=\"center\">"
            "<a href=\"http://www.freightmart.com\"><img src=\"x.gif\"></a><br><br>To be REMOVED from any future "
            "offers, simply <a href=\"mailto:remove@freightmart.com\">CLICK HERE!</a><br>For more info about our "
            "freight rates and the routes we serve, CLICK HERE!</DIV></body></html>\n\nhttp://xent.com/mailman/listinfo/fork\n")
    text = html_to_text(html)
    assert "REMOVED from any future offers" in text and "freight rates" in text


def test_plain_text_stub_gives_way_to_the_html_alternative():
    stub = "We attempted to deliver this message with HTML formatting. Go to your settings."
    story = " ".join(["READING THIS MESSAGE WILL CHANGE YOUR LIFE, it only costs six dollars."] * 12)
    raw = (b"From: a@b.c\r\nSubject: s\r\nContent-Type: multipart/alternative; boundary=A\r\n\r\n"
           b"--A\r\nContent-Type: text/plain\r\n\r\n" + stub.encode() + b"\r\n"
           b"--A\r\nContent-Type: text/html\r\n\r\n<blockquote><p>" + story.encode()
           + b"</p></blockquote>\r\n--A--\r\n")
    parsed = parse_message(raw)
    assert parsed.body_from_html and "CHANGE YOUR LIFE" in parsed.body_text
    # A layout blockquote is not a quoted reply: no "> " markers for quote trimming to drop ...
    assert not any(line.startswith(">") for line in parsed.body_text.splitlines())
    # ... while a mail client's cited quote keeps them.
    cited = html_to_text('<p>Yes.</p><blockquote type="cite"><p>Ship it?</p></blockquote>')
    assert "> Ship it?" in cited


def test_declared_us_ascii_on_8bit_bytes_is_detected_not_replaced():
    body = "Привет, это письмо в кодировке KOI8-R без правильного заголовка.".encode("koi8_r")
    raw = b"From: a@b.c\r\nSubject: s\r\nContent-Type: text/plain; charset=\"us-ascii\"\r\n\r\n" + body + b"\r\n"
    text = parse_message(raw).body_text
    assert "\ufffd" not in text and "Привет" in text


def test_raw_8bit_headers_decode_by_the_body_charset_or_as_western_text():
    subject = "[광고] 요즘 뜨는 직종".encode("euc_kr")
    raw = (b"From: a@b.c\r\nSubject: " + subject + b"\r\nContent-Type: text/plain; charset=euc-kr\r\n\r\n"
           + "본문".encode("euc_kr") + b"\r\n")
    assert parse_message(raw).subject == "[광고] 요즘 뜨는 직종"
    # No charset anywhere and a single high byte: a pound sign, not Shift_JIS.
    raw = b"From: a@b.c\r\nSubject: Robbie Williams signs \xa380m deal\r\n\r\nbody\r\n"
    assert parse_message(raw).subject == "Robbie Williams signs £80m deal"
