"""Query cleaning: what survives of a real support email."""

from daemon.kb.query import build_query, clean_subject, new_text, strip_quoted, strip_signature


def test_subject_prefixes_and_tags_are_dropped():
    assert clean_subject("Re: AW: [Ticket #42] Wifi drops") == "Wifi drops"
    assert clean_subject("Fwd: RE: Billing (case 1234)") == "Billing"
    assert clean_subject("") == ""


def test_gmail_quote_and_signature_removed():
    body = (
        "Hi team,\n\nMy phone does not charge wirelessly anymore. What can I do?\n\n"
        "Thanks,\nMaria\n\nOn Mon, 3 Nov 2026 at 09:12, Support <support@example.com> wrote:\n"
        "> Please restart the device and try again.\n> Regards, Support\n"
    )
    assert new_text(body) == "My phone does not charge wirelessly anymore. What can I do?"


def test_wrapped_on_wrote_header():
    body = "How do I reset my password?\n\nOn Tue, Nov 4, 2026 at 4:55 PM Support Team <s@example.com>\nwrote:\n> old"
    assert strip_quoted(body).strip() == "How do I reset my password?"


def test_outlook_original_message_block():
    body = (
        "The export still fails with error 17.\n\n-----Original Message-----\nFrom: Support\n"
        "Sent: Monday, November 3, 2026 9:12 AM\nTo: Bob\nSubject: Re: export\n\nTry exporting as CSV."
    )
    assert new_text(body) == "The export still fails with error 17."


def test_outlook_header_block_without_separator():
    body = (
        "Still broken.\n\nFrom: Support <support@example.com>\nSent: Monday, November 3, 2026 9:12 AM\n"
        "To: Bob <bob@example.com>\nSubject: RE: export\n\nPlease try again."
    )
    assert new_text(body) == "Still broken."


def test_from_line_in_the_text_is_not_a_quote_header():
    body = "From: the settings menu I cannot find Bluetooth.\nWhere is it?"
    assert "Where is it?" in new_text(body)


def test_inline_quotes_removed_but_answers_kept():
    body = "> Which model do you have?\nA Galaxy S10.\n> Since when?\nSince yesterday."
    assert new_text(body) == "A Galaxy S10.\nSince yesterday."


def test_signature_delimiter_mobile_footer_and_disclaimer():
    assert strip_signature("Where is the backup?\n-- \nBob\nACME").strip() == "Where is the backup?"
    assert strip_signature("Where is the backup?\n\nSent from my iPhone").strip() == "Where is the backup?"
    body = (
        "How do I turn on GPS?\n\nCONFIDENTIALITY NOTICE: This e-mail is confidential and intended solely "
        "for the addressee. If you are not the intended recipient, delete it."
    )
    assert new_text(body) == "How do I turn on GPS?"


def test_sign_off_followed_by_long_text_is_kept():
    body = "Thanks,\n" + "this is a long paragraph that keeps going and is clearly not a signature at all. " * 3
    assert "clearly not a signature" in new_text(body)


def test_build_query_adds_subject_unless_repeated():
    assert build_query("Re: GPS", "Hello,\n\nHow do I turn it on?\n\nBest regards,\nAl") == "GPS\nHow do I turn it on?"
    assert build_query("GPS", "gps does not work") == "gps does not work"
    assert build_query(None, None) == ""
