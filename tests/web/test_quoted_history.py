"""The draft page folds a message's quoted history away without losing any of it (``split_quoted``)."""

from __future__ import annotations

from daemon.kb.query import split_quoted


def test_history_starts_at_the_reply_header():
    body = "Hi,\n\nmy Wi-Fi drops.\n\nMaria\n\nOn Mon, 23 Nov 2026 at 09:12, Support <s@example.com> wrote:\n> old\n"
    assert split_quoted(body) == ("Hi,\n\nmy Wi-Fi drops.\n\nMaria",
                                  "On Mon, 23 Nov 2026 at 09:12, Support <s@example.com> wrote:\n> old")


def test_only_a_trailing_quote_block_is_history_inline_quotes_stay():
    body = "Hi\n> is it on?\nYes it is.\n\n> earlier\n> and more\n"
    assert split_quoted(body) == ("Hi\n> is it on?\nYes it is.", "> earlier\n> and more")


def test_a_message_without_history_is_all_new_text():
    assert split_quoted("Hello\r\nthere\r\n") == ("Hello\nthere", "")
    assert split_quoted("") == ("", "")
