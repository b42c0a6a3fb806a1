from __future__ import annotations

from email.message import EmailMessage

from daemon.mail.mime import parse_message
from daemon.spam.text import TextSettings, build_text


def _parsed(body: str, subject: str = "Hello", sender: str = '"Ann Example" <ann@Mail.Example.org>', **headers: str):
    msg = EmailMessage()
    msg["From"] = sender
    msg["Subject"] = subject
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return parse_message(msg.as_bytes())


def test_subject_sender_name_and_domain_come_first() -> None:
    text = build_text(_parsed("Body here."), TextSettings())
    assert text.splitlines()[:2] == ["Subject: Hello", "From: Ann Example (mail.example.org)"]
    assert text.endswith("Body here.")


def test_quoted_reply_and_attribution_are_dropped() -> None:
    body = "My answer is yes.\n\nOn Mon, 1 Jan 2002, Bob wrote:\n> Should we ship?\n> It is late.\n"
    text = build_text(_parsed(body), TextSettings())
    assert "My answer is yes." in text
    assert "Should we ship" not in text and "wrote" not in text


def test_signature_and_list_footer_are_cut() -> None:
    body = "Real content.\n-- \nAnn Example\nPhone 555\n"
    assert "Phone" not in build_text(_parsed(body), TextSettings())
    footer = "Content.\n" + "_" * 47 + "\nSome-list mailing list\nhttps://lists.example.org/listinfo\n"
    assert "mailing list" not in build_text(_parsed(footer), TextSettings())


def test_trimming_can_be_switched_off() -> None:
    body = "Answer.\n> quoted line\n-- \nsig\n"
    text = build_text(_parsed(body), TextSettings(trim_quotes=False, trim_signature=False))
    assert "> quoted line" in text and "sig" in text


def test_urls_become_host_names() -> None:
    body = "Go to http://www.Cheap-Pills.example.biz/buy?id=123&x=y now or mail sales@deals.example.com"
    text = build_text(_parsed(body), TextSettings())
    assert "cheap-pills.example.biz" in text
    assert "buy?id" not in text and "sales@" not in text and "deals.example.com" in text


def test_long_body_keeps_head_and_tail() -> None:
    words = [f"w{i}" for i in range(1000)]
    text = build_text(_parsed(" ".join(words)), TextSettings(head_words=10, tail_words=5))
    body = text.split("\n\n", 1)[1]
    assert body.startswith("w0 w1") and "w9 … w995" in body and body.endswith("w999")
    assert "w500" not in body


def test_selected_headers_are_added() -> None:
    text = build_text(_parsed("x", X_Mailer="Bulk Mailer 3.0"), TextSettings(headers=("x-mailer", "user-agent")))
    assert "x-mailer: Bulk Mailer 3.0" in text


def test_settings_round_trip_and_length_budget() -> None:
    settings = TextSettings(head_words=7, tail_words=3, headers=("x-mailer",))
    assert TextSettings.from_json(settings.to_json()) == settings
    short, long = TextSettings.for_max_length(128), TextSettings.for_max_length(256)
    assert short.head_words + short.tail_words < long.head_words + long.tail_words
    assert long.head_words > long.tail_words > 0


def test_image_only_mail_names_its_attachments() -> None:
    msg = EmailMessage()
    msg["From"] = "x@y.example"
    msg["Subject"] = "hi"
    msg.set_content("")
    msg.add_attachment(b"\x89PNG....", maintype="image", subtype="png", filename="offer.png")
    text = build_text(parse_message(msg.as_bytes()), TextSettings())
    assert "image/png" in text


def test_all_headers_skip_other_filters_verdicts() -> None:
    parsed = _parsed("x", X_Mailer="Mailer 1", X_Spam_Status="Yes, score=9")
    text = build_text(parsed, TextSettings(all_headers=True))
    assert "x-mailer: Mailer 1" in text and "x-spam-status" not in text
    assert text.count("Subject:") == 1


_REPORT = """SPAM: -------------------- Start SpamAssassin results ----------------------
SPAM: This mail is probably spam.  The original message has been altered
SPAM: Content analysis details:   (7.1 hits, 5 required)
SPAM: RAZOR_CHECK        (7.0 points)  Listed in Razor, see
http://razor.sourceforge.net/
SPAM: -------------------- End of SpamAssassin results ---------------------
"""


def test_another_filters_body_report_is_dropped() -> None:
    text = build_text(_parsed(_REPORT + "\nHello, I visited your website.\n"), TextSettings())
    assert "SpamAssassin" not in text and "RAZOR" not in text and "razor" not in text
    assert text.endswith("Hello, I visited your website.")
    # Flattened into one line by an HTML body, without the end marker: dropped up to the blank line.
    flat = "BAD MSG: PAM: ---- Start SpamAssassin results ---- SPAM: This mail is probably spam. SPAM: \n\nHi there."
    assert build_text(_parsed(flat), TextSettings()).endswith("\n\nHi there.")
    kept = build_text(_parsed(_REPORT + "\nBody."), TextSettings(drop_filter_reports=False))
    assert "Start SpamAssassin results" in kept


def test_versions_saved_before_report_dropping_keep_their_text() -> None:
    saved = TextSettings().to_json()
    del saved["drop_filter_reports"]
    assert TextSettings.from_json(saved).drop_filter_reports is False
    assert TextSettings.from_json(TextSettings().to_json()).drop_filter_reports is True


def test_rule_lines_inside_the_message_do_not_cut_it() -> None:
    # Form-mail spam: two lines, a rule, then the whole pitch, then the list footer.
    pitch = "message: FREE FREE FREE! " + " ".join(["Unlimited web cam feeds, chat, pictures and videos."] * 6)
    body = ("Below is the result of your feedback form. It was submitted by\n(x@happyman.com) on Thursday\n"
            + "-" * 70 + f"\n\n{pitch}\n\n" + "-" * 70 + "\n\n-- \nIrish Linux Users' Group: ilug@linux.ie\n")
    text = build_text(_parsed(body), TextSettings(head_words=400))
    assert "FREE FREE FREE" in text and "web cam feeds" in text
    assert "Irish Linux" not in text
    # A newsletter that opens with a rule line is read past it.
    opening = "-" * 40 + "\nGiftCD Offer Newsletter\n" + "-" * 40 + "\n" + "Thank you for your subscription. " * 10
    assert "Thank you for your subscription" in build_text(_parsed(opening), TextSettings())


def test_mailto_links_keep_only_the_domain() -> None:
    body = "Reply here: mailto:list@groups.example.com?subject=Re%3A%20Make%20money%20fast now"
    text = build_text(_parsed(body), TextSettings())
    assert "groups.example.com" in text and "subject=" not in text and "Make%20money" not in text


def test_a_forward_is_read_through_its_quote_marks() -> None:
    # Nothing of its own above "Original Message" (or only quoted lines): the quote is the message.
    forward = "----- Original Message -----\nFrom: someone\n\nLovely ceili music on our new CD, order now.\n"
    assert "ceili music" in build_text(_parsed(forward), TextSettings())
    all_quoted = ">\n> Earn 8,000 to 50,000 a month from home\n> zthefuture.com\n"
    text = build_text(_parsed(all_quoted), TextSettings())
    assert "Earn 8,000 to 50,000 a month" in text and ">" not in text.split("\n\n", 1)[1]
    # A reply with words of its own still drops the quote.
    reply = "Yes, ship it today.\n\n> Should we ship?\n"
    assert "Should we ship" not in build_text(_parsed(reply), TextSettings())


def test_versions_saved_before_the_text_fixes_keep_their_old_text() -> None:
    saved = TextSettings().to_json()
    del saved["recover_lost_text"]  # what a version saved before the field existed holds
    legacy = TextSettings.from_json(saved)
    assert legacy.recover_lost_text is False
    body = "Two lines first\nthen a rule\n" + "-" * 40 + "\n" + "The whole pitch follows here. " * 20
    assert "pitch" not in build_text(_parsed(body), legacy)
    assert "pitch" in build_text(_parsed(body), TextSettings())
