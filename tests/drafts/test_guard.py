"""The internal-text guard and the link check: each rule caught once, and clean drafts left alone."""

from __future__ import annotations

import pytest

from daemon.config.drafts import DraftSettings
from daemon.drafts.backends.base import DraftRequest, Generated
from daemon.drafts.compose import Composer
from daemon.drafts.guard import foreign_links, internal_leak
from daemon.kb.search import SearchHit

NOTE = "For outages page the on-call engineer at extension 4711 and open a P1 in the ops queue."
PUBLIC = "If the service is down, check the status page and try again in a few minutes."


@pytest.mark.parametrize(
    ("draft", "reason"),
    [
        ("For outages page the on-call engineer at extension 4711 today.", "repeated internal"),
        ("For outages you can simply page the friendly on-call engineer right at the desk.", "words inserted"),
        ("Dial e x t e n s i o n 4 7 1 1 if it is down.", "only in internal notes"),
        ("Our engineers on duty answer on line 4711.", "only in internal notes"),
        ("Page the engineer at ext\u200b4711.", "only in internal notes"),
    ],
)
def test_leaks_are_caught_with_a_reason(draft: str, reason: str) -> None:
    found = internal_leak(draft, [NOTE], [PUBLIC])
    assert found is not None and reason in found


@pytest.mark.parametrize(
    "draft",
    [
        "Please check the status page and try again in a few minutes.",
        "If the service is down, try again in a few minutes after checking the status page.",
        "Our team is looking into outages; thank you for your patience.",
    ],
)
def test_clean_drafts_pass(draft: str) -> None:
    assert internal_leak(draft, [NOTE], [PUBLIC]) is None


def test_text_shared_with_a_public_source_is_public() -> None:
    note = "Accounts are blocked automatically after three failed card payments by the risk tool."
    public = "After three failed card payments we pause the account and email you."
    assert internal_leak("After three failed card payments we pause the account.", [note], [public]) is None


def test_links_must_come_from_the_knowledge_base() -> None:
    sources = ["Steps: https://help.example.com/router"]
    assert foreign_links("See https://help.example.com/router/ for the steps.", sources) == []
    assert foreign_links("See www.help.example.com/router.", sources) == []
    assert foreign_links("Get it at https://help.example.com.evil.example/x.", sources) == [
        "https://help.example.com.evil.example/x"
    ]


class LinkingBackend:
    """A language model that invents a download link."""

    name = "openai"
    model = "linker"

    def generate(self, request: DraftRequest) -> Generated:
        return Generated("Restart the router [1]. Get the fix at https://router-fix.example.net/dl [1].", cited=(1,))


def test_a_draft_with_a_link_outside_the_knowledge_base_goes_to_a_person() -> None:
    wifi = SearchHit(1, 1, "Wi-Fi", "Wi-Fi", "Restart the router and forget the network.", "public", "/kb/1", "",
                     0.9, 1, 0.9, None, None)
    result = Composer(LinkingBackend(), DraftSettings(enabled=True)).compose("wifi drops", [wifi])
    assert result.status == "needs_human" and result.text is None
    assert result.reason is not None and "https://router-fix.example.net/dl" in result.reason
