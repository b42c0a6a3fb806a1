"""The review page refuses what it must: no login, a wrong password, no CSRF token, another origin or host.

HTTP-level tests with Starlette's TestClient against the real application and the embedded Postgres;
after each refusal the draft rows are checked to be untouched.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from daemon.config import ConfigError, Settings
from daemon.config.web import WebSettings
from daemon.db.session import Database
from daemon.web.app import SESSION_COOKIE, build_app
from daemon.web.security import SECRET_KEY_NAME, LoginThrottle, allowed_hosts
from tests.web.conftest import PASSWORD, PASSWORD_ENV, WIFI_DRAFT, Drafts

ORIGIN = "http://localhost:8080"


@pytest.fixture
def client(web_settings: Settings, db: Database) -> Iterator[TestClient]:
    with TestClient(build_app(web_settings, db), base_url=ORIGIN, headers={"Origin": ORIGIN}) as test_client:
        yield test_client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def log_in(client: TestClient, password: str = PASSWORD, username: str = "ann") -> str:
    """Log in and return the session's CSRF token."""
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"csrf": token, "username": username, "password": password},
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/", response.text
    return csrf_of(client.get("/").text)


def row(db: Database, draft_id: int) -> dict[str, object]:
    with db.session() as s:
        result = s.execute(text("SELECT status, text FROM drafts WHERE id = :id"), {"id": draft_id})
        return dict(result.mappings().one())


def test_without_a_login_pages_redirect_and_posts_are_refused(client, db, drafts: Drafts):
    before = row(db, drafts.wifi)
    for path in ("/", f"/drafts/{drafts.wifi}", "/?status=pending"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login"
        assert "Maria" not in response.text
    token = csrf_of(client.get("/login").text)  # even with the anonymous session's token
    for action in ("approve", "edit", "reject"):
        response = client.post(f"/drafts/{drafts.wifi}/{action}", data={"csrf": token, "text": "x", "reason": "x"},
                               follow_redirects=False)
        assert response.status_code == 403
    assert row(db, drafts.wifi) == before
    # A forged cookie is no session either.
    client.cookies.set(SESSION_COOKIE, "eyJ1c2VyIjogImFubiJ9.forged.signature")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_the_login_sets_a_strict_http_only_cookie_and_the_queue_shows_the_drafts(client, drafts):
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"csrf": token, "username": "ann", "password": PASSWORD},
                           follow_redirects=False)
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = client.get("/")
    assert page.status_code == 200 and "unsure" not in page.text
    assert "Wifi keeps dropping" in page.text and "Refund for order 5521" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"


def test_a_wrong_password_or_name_is_refused_and_guessing_is_throttled(client, web_settings, db, drafts):
    for username, password in (("ann", "wrong password"), ("bob", PASSWORD), ("ann", "")):
        token = csrf_of(client.get("/login").text)
        response = client.post("/login", data={"csrf": token, "username": username, "password": password},
                               follow_redirects=False)
        assert response.status_code == 401 and "Wrong user name or password" in response.text
        assert client.get("/", follow_redirects=False).status_code == 303
    # Two more failures use up the budget of 5: then even the right password waits.
    for _ in range(2):
        token = csrf_of(client.get("/login").text)
        client.post("/login", data={"csrf": token, "username": "ann", "password": "nope"})
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"csrf": token, "username": "ann", "password": PASSWORD},
                           follow_redirects=False)
    assert response.status_code == 429 and "Too many failed logins" in response.text


def test_the_login_form_itself_needs_its_csrf_token(client, drafts):
    client.get("/login")
    response = client.post("/login", data={"username": "ann", "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_post_without_the_csrf_token_is_refused(client, db, drafts):
    token = log_in(client)
    before = row(db, drafts.wifi)
    forged = token[:-2] + ("xx" if not token.endswith("xx") else "yy")
    for data in ({"text": "Sent by a forged form"}, {"csrf": "", "text": "x"}, {"csrf": forged, "text": "x"}):
        response = client.post(f"/drafts/{drafts.wifi}/approve", data=data, follow_redirects=False)
        assert response.status_code == 403, data
        assert "security token" in response.text
    response = client.post(f"/drafts/{drafts.refund}/reject", data={"reason": "spam"}, follow_redirects=False)
    assert response.status_code == 403
    assert row(db, drafts.wifi) == before
    assert row(db, drafts.refund)["status"] == "needs_human"


def test_a_post_from_another_origin_is_refused_even_with_the_token(client, db, drafts):
    token = log_in(client)
    before = row(db, drafts.wifi)
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "http://localhost:9999"},
                    {"Origin": "https://localhost:8080"}, {"Origin": "null"},
                    {"Origin": "", "Referer": "http://evil.example/page"}):
        response = client.post(f"/drafts/{drafts.wifi}/approve", data={"csrf": token, "text": "x"}, headers=headers,
                               follow_redirects=False)
        assert response.status_code == 403, headers
    # Neither Origin nor Referer: refused too (a browser always sends Origin on a form POST).
    client.headers.pop("Origin")
    response = client.post(f"/drafts/{drafts.wifi}/approve", data={"csrf": token}, follow_redirects=False)
    assert response.status_code == 403
    assert row(db, drafts.wifi) == before
    # Our own Referer without Origin is accepted.
    response = client.post(f"/drafts/{drafts.wifi}/approve", data={"csrf": token, "text": WIFI_DRAFT},
                           headers={"Referer": f"{ORIGIN}/drafts/{drafts.wifi}"}, follow_redirects=False)
    assert response.status_code == 303
    assert row(db, drafts.wifi)["status"] == "approved"


def test_a_foreign_host_name_is_refused(web_settings, db, drafts):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    with TestClient(build_app(web_settings, db), base_url="http://evil.example:8080") as client:
        assert client.get("/login").status_code == 400


def test_changing_the_password_ends_open_sessions(client, monkeypatch, drafts):
    log_in(client)
    assert client.get("/", follow_redirects=False).status_code == 200
    monkeypatch.setenv(PASSWORD_ENV, "a brand new password")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_decisions_show_their_outcome_and_review_errors_reach_the_person(client, db, drafts):
    token = log_in(client)
    response = client.post(f"/drafts/{drafts.refund}/reject", data={"csrf": token, "reason": "answered by phone"})
    assert response.status_code == 200 and response.url.path == "/"
    assert f"Draft {drafts.refund}: rejected" in response.text
    assert "Refund for order 5521" not in response.text  # no longer waiting
    assert row(db, drafts.refund)["status"] == "rejected"
    # Approving a rejected draft is refused by the review rules; the page says why and keeps the text.
    response = client.post(f"/drafts/{drafts.refund}/approve", data={"csrf": token, "text": "My own reply"})
    assert response.status_code == 409 and 'role="alert"' in response.text
    assert "cannot change status from rejected to approved (rejected is final)" in response.text
    assert row(db, drafts.refund)["status"] == "rejected"
    # A decided draft is shown with the decision, without the forms.
    page = client.get(f"/drafts/{drafts.refund}").text
    assert "answered by phone" in page and "Decided by" in page and "ann" in page and "<textarea" not in page
    assert client.get("/drafts/999999").status_code == 404
    # An emptied text is not approved, and the draft's own text is not approved in its place.
    response = client.post(f"/drafts/{drafts.wifi}/approve", data={"csrf": token, "text": "  \n"})
    assert response.status_code == 409 and "the reply text is empty" in response.text
    assert row(db, drafts.wifi) == {"status": "pending", "text": WIFI_DRAFT}


def test_the_session_key_is_generated_once_and_kept_private(web_settings, db, state_dir):
    build_app(web_settings, db)
    key_file = state_dir / SECRET_KEY_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    build_app(web_settings, db)
    assert key_file.read_text() == key and len(key.strip()) == 64


def test_a_missing_password_stops_the_start_with_the_key_named(web_settings, db, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(ConfigError, match=f"web.password_env: environment variable {PASSWORD_ENV} is not set"):
        build_app(web_settings, db)


def test_the_throttle_forgets_old_failures():
    throttle = LoginThrottle(limit=2, window=60)
    throttle.failed("a", now=0)
    throttle.failed("a", now=1)
    assert throttle.wait_seconds("a", now=2) == pytest.approx(58)
    assert throttle.wait_seconds("b", now=2) == 0
    assert throttle.wait_seconds("a", now=61) == 0


def test_the_allowed_host_names_are_loopback_the_listen_address_and_configured_ones():
    assert allowed_hosts(WebSettings()) == ["localhost", "127.0.0.1", "[::1]"]
    assert allowed_hosts(WebSettings(host="::", allowed_hosts=["Review.example.com"])) == [
        "localhost", "127.0.0.1", "[::1]", "review.example.com"]
    assert "10.0.0.5" in allowed_hosts(WebSettings(host="10.0.0.5"))


def test_mail_the_spam_filter_is_unsure_about_is_marked(client, db, drafts):
    with db.session() as s, s.begin():
        s.execute(text("UPDATE messages SET spam_verdict = 'unsure', spam_score = 0.55 "
                       "WHERE id = (SELECT message_id FROM drafts WHERE id = :id)"), {"id": drafts.refund})
    log_in(client)
    assert '<span class="badge unsure">unsure</span> 0.55' in client.get("/").text
    assert "the spam filter is unsure" in client.get(f"/drafts/{drafts.refund}").text
    assert "the spam filter is unsure" not in client.get(f"/drafts/{drafts.wifi}").text


def test_this_is_spam_rejects_and_labels_with_a_token_only(client, db, drafts: Drafts):
    token = log_in(client)
    refused = client.post(f"/drafts/{drafts.wifi}/junk", data={}, follow_redirects=False)
    assert refused.status_code == 403 and row(db, drafts.wifi)["status"] == "pending"
    response = client.post(f"/drafts/{drafts.wifi}/junk", data={"csrf": token}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert row(db, drafts.wifi)["status"] == "rejected"
    with db.session() as s:
        label = s.execute(text("SELECT l.label, l.source FROM spam_labels l JOIN drafts d ON d.message_id = "
                               "l.message_id WHERE d.id = :id"), {"id": drafts.wifi}).one()
    assert tuple(label) == ("spam", "review")
