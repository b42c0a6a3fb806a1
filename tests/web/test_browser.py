"""The review page in a real browser: Debian's Chromium, headless, driven by Playwright.

The page is served by the same ``ReviewServer`` that ``mailsense run`` uses, on a free loopback
port, against the embedded Postgres. The browser logs in, opens a draft, edits and approves it,
rejects another with a reason; the test then reads the rows. It screenshots the draft page into its
temporary directory; with ``MAILSENSE_UPDATE_SCREENSHOT=1`` into docs/review-page.png (the README's picture).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from daemon.config import Settings
from daemon.db.session import Database
from daemon.web.server import ReviewServer
from tests.helpers import REPO, free_port
from tests.web.conftest import PASSWORD, WIFI_DRAFT, Drafts

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOT = REPO / "docs" / "review-page.png"

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed "
                                "(apt-get install chromium; scripts/test does it)")


@pytest.fixture
def page_url(web_settings: Settings, db: Database) -> Iterator[str]:
    """The review page served on its own event loop in a thread, as `mailsense run` would serve it."""
    settings = web_settings.model_copy(update={"web": web_settings.web.model_copy(update={"port": free_port()})})
    loop = asyncio.new_event_loop()
    server = ReviewServer(settings, db)
    started = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        await server.start()
        started.set()
        await stop.wait()
        await server.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), name="review-page")
    thread.start()
    assert started.wait(20), "the review page did not start"
    yield server.url.rstrip("/")
    loop.call_soon_threadsafe(stop.set)
    thread.join(20)
    assert not thread.is_alive(), "the review page did not stop"
    loop.close()


@pytest.fixture
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def rows(db: Database) -> dict[int, dict[str, object]]:
    with db.session() as s:
        result = s.execute(text("SELECT * FROM drafts ORDER BY id")).mappings()
        return {r["id"]: dict(r) for r in result}


def test_a_reviewer_edits_and_approves_one_draft_and_rejects_another(page_url, browser, db, drafts: Drafts,
                                                                     tmp_path: Path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()

    # Not logged in: the queue sends the browser to the login form; a wrong password is refused.
    page.goto(page_url + "/")
    assert page.url == page_url + "/login"
    page.fill("#username", "ann")
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    assert "Wrong user name or password" in page.inner_text("main")
    page.fill("#username", "ann")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    assert page.url == page_url + "/"

    # The queue: newest first, with sender, subject, confidence and spam score.
    queue_rows = page.locator("table.queue tbody tr")
    assert queue_rows.count() == 2
    assert "Refund for order 5521" in queue_rows.nth(0).inner_text()
    first = queue_rows.nth(1).inner_text()
    assert "Wifi keeps dropping" in first and "maria@example.org" in first and "0.74" in first and "0.02" in first

    # One draft beside its email: the quoted history folded, the cited passage with its text.
    page.click("text=Wifi keeps dropping")
    assert page.url == f"{page_url}/drafts/{drafts.wifi}"
    message = page.locator("section.message")
    assert "my Wi-Fi keeps disconnecting" in message.inner_text()
    history = page.locator("details.history")
    assert not history.evaluate("d => d.open") and "Refunds are paid" not in message.inner_text()
    assert "Unplug the router, wait thirty seconds" in page.inner_text("section.sources")
    screenshot = SCREENSHOT if os.environ.get("MAILSENSE_UPDATE_SCREENSHOT") == "1" else tmp_path / SCREENSHOT.name
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000

    # Edit, save, then approve with a further change.
    edited = page.input_value("#text").replace("Hello Maria,", "Hi Maria,")
    page.fill("#text", edited)
    page.click("button:has-text('Save edit')")
    assert page.url == page_url + "/"
    assert f"Draft {drafts.wifi}: your edit is saved" in page.inner_text(".flash")
    assert rows(db)[drafts.wifi]["text"] == edited
    assert rows(db)[drafts.wifi]["status"] == "pending"

    page.click("text=Wifi keeps dropping")
    assert page.input_value("#text") == edited
    final = edited + "\n\nP.S. If it keeps happening, reply and we will replace the router."
    page.fill("#text", final)
    page.click("button:has-text('Approve')")
    assert page.url == page_url + "/"
    assert f"Draft {drafts.wifi}: approved" in page.inner_text(".flash")

    # A needs_human draft shows why; reject it with a reason.
    page.click("text=Refund for order 5521")
    assert "Why a person is needed" in page.inner_text("section.reply")
    assert page.input_value("#text") == ""
    page.fill("#reason", "answered by phone")
    page.click("button:has-text('Reject')")
    assert f"Draft {drafts.refund}: rejected" in page.inner_text(".flash")
    assert "Nothing is waiting for review" in page.inner_text("main")

    after = rows(db)
    wifi, refund = after[drafts.wifi], after[drafts.refund]
    assert wifi["status"] == "approved" and wifi["text"] == final
    assert wifi["reviewed_by"] == "ann" and wifi["reviewed_at"] is not None
    assert wifi["edited_by_human"] and wifi["generated_text"] == WIFI_DRAFT
    assert 0.8 < wifi["edit_similarity"] < 1.0
    assert refund["status"] == "rejected" and refund["reject_reason"] == "answered by phone"
    assert refund["reviewed_by"] == "ann" and refund["text"] is None
    context.close()
