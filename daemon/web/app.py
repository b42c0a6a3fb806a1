"""The review page: the queue, one draft beside its email, and approve / edit / reject.

A thin surface over ``daemon.review``: every decision goes through ``daemon.review.actions``
(the same checks and effects as the command line and plain SQL), every listing through
``daemon.review.queue``. Database work runs in worker threads, never on the event loop that the
daemon's pipeline shares.

Every page but the login needs a session (``Guard``), every POST a same-origin ``Origin`` (or
``Referer``) header and the session's CSRF token (``form_with_csrf``); see ``daemon.web.security``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from daemon.config import Settings
from daemon.config.web import WebSettings
from daemon.db.session import Database
from daemon.kb.query import split_quoted
from daemon.review import actions, queue
from daemon.review.actions import ReviewError
from daemon.review.schema import AWAITING_REVIEW
from daemon.web import security

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "mailsense_review"
PUBLIC_PATHS = ("/login", "/style.css")
QUEUE_FILTERS = {"": "Waiting for review", "pending": "Drafted", "needs_human": "Needs a person"}
QUEUE_LIMIT = 500  # drafts listed at most; a longer queue is better worked through with SQL or the CLI
MAX_TEXT_CHARS = 100_000  # a reply, not a book: refuse larger posts before they reach the database
SECURITY_HEADERS = [
    # Nothing but our own stylesheet and forms; no scripts at all, no framing, no caching of customer mail.
    (b"content-security-policy", b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
     b"frame-ancestors 'none'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


@dataclass
class ReviewSite:
    """What the handlers share: settings, database, signing key, the login throttle, templates."""

    web: WebSettings
    db: Database
    secret_key: str
    throttle: security.LoginThrottle = field(default_factory=security.LoginThrottle)
    templates: Jinja2Templates = field(default_factory=lambda: Jinja2Templates(directory=HERE / "templates"))

    def logged_in(self, session: dict[str, Any]) -> bool:
        """A session counts while its password fingerprint matches the password configured now."""
        user, fingerprint = session.get("user"), session.get("pw")
        if not isinstance(user, str) or not isinstance(fingerprint, str):
            return False
        current = security.password_fingerprint(self.secret_key, self.web.password())
        return security.csrf_token_matches(current, fingerprint)


def site_of(request: Request) -> ReviewSite:
    site: ReviewSite = request.app.state.site
    return site


class Guard:
    """Outermost checks on every request, before any page code runs.

    A POST whose Origin/Referer is not this page is refused (403) even on /login; a request
    without a valid session is sent to /login (GET) or refused (anything else). Every response
    gets the security headers.
    """

    def __init__(self, app: ASGIApp, site: ReviewSite) -> None:
        self.app = app
        self.site = site

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        request = Request(scope)
        response: Response | None = None
        if request.method not in ("GET", "HEAD") and not security.same_origin(
            request.headers.get("origin"), request.headers.get("referer"), request.url.scheme,
            request.headers.get("host", ""),
        ):
            log.warning("review page: refused a %s to %s from another origin", request.method, request.url.path)
            response = PlainTextResponse("refused: this form was not sent from the review page", 403)
        if response is None and request.url.path not in PUBLIC_PATHS:
            logged_in = await run_in_threadpool(self.site.logged_in, scope["session"])
            if not logged_in:
                scope["session"].pop("user", None)
                if request.method in ("GET", "HEAD"):
                    response = RedirectResponse("/login", status_code=303)
                else:
                    response = PlainTextResponse("refused: log in first", 403)
        if response is not None:
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def csrf_token(request: Request) -> str:
    """The session's token, made on first use (also for the login form, against login CSRF)."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or not token:
        token = request.session["csrf"] = security.new_csrf_token()
    return token


async def form_with_csrf(request: Request) -> FormData:
    """The posted form, after its CSRF token was found equal to the session's; else 403."""
    form = await request.form(max_files=0, max_fields=20, max_part_size=MAX_TEXT_CHARS * 4)
    if not security.csrf_token_matches(request.session.get("csrf"), form.get("csrf")):
        log.warning("review page: refused a %s to %s without a valid CSRF token", request.method, request.url.path)
        raise HTTPException(403, "refused: the form's security token is missing or stale; reload the page")
    return form


def form_text(form: FormData, name: str) -> str:
    value = form.get(name)
    text = value if isinstance(value, str) else ""
    if len(text) > MAX_TEXT_CHARS:
        raise HTTPException(413, f"{name} is longer than {MAX_TEXT_CHARS} characters")
    return text.replace("\r\n", "\n")


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    site = site_of(request)
    base = {"csrf": csrf_token(request), "user": request.session.get("user"),
            "flash": request.session.pop("flash", None)}
    return site.templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# -- login ---------------------------------------------------------------------------------------


async def login_page(request: Request) -> Response:
    site = site_of(request)
    if await run_in_threadpool(site.logged_in, request.session):
        return RedirectResponse("/", status_code=303)
    return render(request, "login.html", {"ask_name": bool(site.web.username), "error": None})


async def login(request: Request) -> Response:
    site = site_of(request)
    form = await form_with_csrf(request)
    client = client_of(request)
    context: dict[str, Any] = {"ask_name": bool(site.web.username)}
    wait = site.throttle.wait_seconds(client)
    if wait:
        context["error"] = f"Too many failed logins. Try again in {int(wait) + 1} seconds."
        return render(request, "login.html", context, status_code=429)
    username = form_text(form, "username") if site.web.username else ""
    password = form_text(form, "password")
    if not await run_in_threadpool(security.credentials_match, site.web, username, password):
        site.throttle.failed(client)
        log.warning("review page: failed login from %s", client)
        context["error"] = "Wrong user name or password." if site.web.username else "Wrong password."
        return render(request, "login.html", context, status_code=401)
    site.throttle.succeeded(client)
    request.session.clear()  # a fresh session: nothing from before the login carries over
    request.session.update({
        "user": site.web.reviewer,
        "pw": security.password_fingerprint(site.secret_key, password),
        "csrf": security.new_csrf_token(),
    })
    log.info("review page: %s logged in from %s", site.web.reviewer, client)
    return RedirectResponse("/", status_code=303)


async def logout(request: Request) -> Response:
    await form_with_csrf(request)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


# -- pages ---------------------------------------------------------------------------------------


async def queue_page(request: Request) -> Response:
    site = site_of(request)
    status = request.query_params.get("status", "")
    if status not in QUEUE_FILTERS:
        raise HTTPException(400, f"unknown status {status!r}: use one of {', '.join(s for s in QUEUE_FILTERS if s)}")

    def load() -> list[Any]:
        with site.db.session() as session:
            items = queue.list_queue(session, status=status or None, limit=QUEUE_LIMIT)
        return sorted(items, key=lambda item: (item.created_at, item.draft_id), reverse=True)  # newest first

    items = await run_in_threadpool(load)
    return render(request, "queue.html", {"items": items, "status": status, "filters": QUEUE_FILTERS})


def _load_detail(site: ReviewSite, draft_id: int) -> Any:
    with site.db.session() as session:
        return queue.draft_detail(session, draft_id)


async def draft_page(request: Request) -> Response:
    draft_id = int(request.path_params["draft_id"])
    return await _show_draft(request, draft_id)


async def _show_draft(request: Request, draft_id: int, *, error: str | None = None, text: str | None = None,
                      reason: str = "", status_code: int = 200) -> Response:
    site = site_of(request)
    try:
        detail = await run_in_threadpool(_load_detail, site, draft_id)
    except ReviewError as exc:  # there is no such draft
        raise HTTPException(404, str(exc)) from None
    new_text, history = split_quoted(detail.message_text or "")
    return render(request, "draft.html", {
        "d": detail,
        "new_text": new_text,
        "history": history,
        "text": detail.text if text is None else text,
        "reject_reason": reason,
        "error": error,
        "awaiting": AWAITING_REVIEW,
    }, status_code=status_code)


ReviewAction = Callable[[Session, int, str, FormData], object]
"""One of ``daemon.review.actions`` applied to (session, draft id, reviewer, the posted form)."""


async def _decide(request: Request, what: str, act: ReviewAction, outcome: str) -> Response:
    """Run one review action in its own transaction; show the outcome on the queue or the error on the draft."""
    site = site_of(request)
    draft_id = int(request.path_params["draft_id"])
    form = await form_with_csrf(request)
    reviewer = str(request.session["user"])

    def run() -> None:
        with site.db.session() as session, session.begin():
            act(session, draft_id, reviewer, form)

    try:
        await run_in_threadpool(run)
    except ReviewError as exc:
        return await _show_draft(request, draft_id, error=str(exc), text=form_text(form, "text"),
                                 reason=form_text(form, "reason"), status_code=409)
    log.info("review page: %s %s draft %d", reviewer, what, draft_id)
    request.session["flash"] = {"kind": "ok", "text": f"Draft {draft_id}: {outcome}"}
    return RedirectResponse("/", status_code=303)


async def save_edit(request: Request) -> Response:
    return await _decide(
        request, "edited",
        lambda s, i, who, form: actions.edit(s, i, who, form_text(form, "text")),
        "your edit is saved; it still waits for approval.",
    )


async def approve(request: Request) -> Response:
    def act(session: Session, draft_id: int, reviewer: str, form: FormData) -> object:
        # Always the text as shown: unchanged, it does not count as an edit; emptied, it is refused.
        return actions.approve(session, draft_id, reviewer, text=form_text(form, "text"))

    return await _decide(request, "approved", act, "approved.")


async def reject(request: Request) -> Response:
    return await _decide(
        request, "rejected",
        lambda s, i, who, form: actions.reject(s, i, who, reason=form_text(form, "reason").strip()),
        "rejected; nothing will be sent.",
    )


async def junk(request: Request) -> Response:
    return await _decide(
        request, "rejected as spam",
        lambda s, i, who, form: actions.junk(s, i, who),
        "rejected as spam; nothing will be sent, and the spam filter learns from it.",
    )


async def stylesheet(request: Request) -> Response:
    return FileResponse(HERE / "static" / "style.css", media_type="text/css")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (403, 413) or request.url.path in PUBLIC_PATHS:
        return PlainTextResponse(exc.detail, exc.status_code)
    return render(request, "error.html", {"status": exc.status_code, "message": exc.detail},
                  status_code=exc.status_code)


def build_app(settings: Settings, db: Database) -> Starlette:
    """The ASGI application; reads the password once here so a missing secret stops the start."""
    web = settings.web
    web.password()
    site = ReviewSite(web=web, db=db, secret_key=security.session_secret(web, settings.daemon.state_dir))
    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", queue_page, methods=["GET"]),
        Route("/drafts/{draft_id:int}", draft_page, methods=["GET"]),
        Route("/drafts/{draft_id:int}/edit", save_edit, methods=["POST"]),
        Route("/drafts/{draft_id:int}/approve", approve, methods=["POST"]),
        Route("/drafts/{draft_id:int}/reject", reject, methods=["POST"]),
        Route("/drafts/{draft_id:int}/junk", junk, methods=["POST"]),
        Route("/style.css", stylesheet, methods=["GET"]),
    ]
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=security.allowed_hosts(web), www_redirect=False),
        Middleware(SessionMiddleware, secret_key=site.secret_key, session_cookie=SESSION_COOKIE,
                   max_age=int(web.session_hours * 3600), same_site="strict", https_only=False),
        Middleware(Guard, site=site),
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: http_error})
    app.state.site = site
    return app
