"""The review queue over HTTP: a JSON API under /v1/review and server-rendered pages under /review.

The API takes a reviewer's key as a bearer token; the pages log in with the same key and keep a signed
session cookie (SameSite=Strict, HttpOnly). The pages post to the API with fetch and a JSON body: a form
on another site cannot send one, so the cookie alone never changes anything. The API is described in
`/openapi.json` (`gateway.openapi.REVIEW_OPERATIONS`, a test checks that every route is there); the pages
are not.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError
from starlette.responses import HTMLResponse, RedirectResponse, Response

from gateway.errors import InvalidRequestError, NotFoundError, RailguardError
from gateway.policy.verdict import Action
from gateway.requests import parse_json_object, read_body
from gateway.review.auth import COOKIE, SESSION_S
from gateway.review.model import Report, RoleChange
from gateway.review.store import ROLES, Label, ReviewError

if TYPE_CHECKING:
    from jinja2 import Environment

    from gateway.app import Services
    from gateway.review.service import ReviewService

router = APIRouter()
MAX_IMPORT_BYTES = 20_000_000
_TEMPLATES = Path(__file__).parent / "templates"
M = TypeVar("M", bound=BaseModel)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _review(request: Request) -> ReviewService:
    services: Services = request.app.state.services
    if services.review is None:
        raise NotFoundError(
            "The review queue is off (review.enabled: false, or no review.reviewers and no keys file).",
            code="unknown_url",
        )
    return services.review


def _who(request: Request, role: str = "reviewer") -> tuple[ReviewService, str]:
    review = _review(request)
    name = review.reviewers.require(request.headers, request.cookies, role)  # type: ignore[arg-type]
    by_cookie = "authorization" not in request.headers
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if by_cookie and request.method in ("POST", "PUT") and content_type != "application/json":
        raise InvalidRequestError("The review API takes JSON bodies (Content-Type: application/json).")
    return review, name


async def _body(request: Request) -> dict[str, Any]:
    return parse_json_object(await read_body(request, 1_000_000))


def _parse(model: type[M], data: dict[str, Any], what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first["loc"])
        raise InvalidRequestError(f"Invalid {what}: {field}: {first['msg']}", param=field or None) from None


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except ReviewError as exc:
        error = InvalidRequestError(str(exc), code="review_error")
        error.status = exc.status  # type: ignore[misc]
        raise error from None


# --- JSON API -------------------------------------------------------------------------------------


@router.get("/v1/review/next")
async def next_item(request: Request) -> Response:
    review, name = _who(request)
    return _json({"item": await _call(review.store.next_item, name)})


@router.get("/v1/review/items/{request_id}")
async def get_item(request: Request, request_id: str) -> Response:
    review, name = _who(request)
    reveal = ROLES.index(review.reviewers.role(name)) >= ROLES.index("adjudicator")
    return _json(await _call(review.store.item, request_id, reveal=reveal))


@router.post("/v1/review/items/{request_id}/labels")
async def add_label(request: Request, request_id: str) -> Response:
    review, name = _who(request)
    label = _parse(Label, await _body(request), "label")
    return _json(await _call(review.store.label, name, request_id, label))


@router.get("/v1/review/adjudication")
async def disputed(request: Request) -> Response:
    review, _ = _who(request, "adjudicator")
    return _json({"items": await _call(review.store.disputed)})


@router.post("/v1/review/items/{request_id}/adjudication")
async def adjudicate(request: Request, request_id: str) -> Response:
    review, name = _who(request, "adjudicator")
    decision = _parse(Label, await _body(request), "label")
    return _json(await _call(review.store.adjudicate, name, request_id, decision))


@router.get("/v1/review/stats")
async def stats(request: Request) -> Response:
    review, _ = _who(request, "adjudicator")
    return _json(await _call(review.store.stats))


@router.put("/v1/review/reviewers/{reviewer}/role")
async def set_role(request: Request, reviewer: str) -> Response:
    review, name = _who(request, "admin")
    role = _parse(RoleChange, await _body(request), "role change").role
    if reviewer not in review.reviewers.names():
        raise NotFoundError(f"no reviewer {reviewer!r}", code="reviewer_not_found")
    await _call(review.store.set_role, name, reviewer, role)
    return _json({"reviewer": reviewer, "role": role})


@router.get("/v1/review/audit")
async def audit(request: Request) -> Response:
    review, _ = _who(request, "admin")
    return _json({"events": await _call(review.store.audit, request.query_params.get("request_id"))})


@router.get("/v1/review/export")
async def export(request: Request) -> Response:
    review, _ = _who(request, "admin")
    items = await _call(lambda: list(review.store.export()))
    return Response(b"".join(orjson.dumps(i) + b"\n" for i in items), media_type="application/jsonl")


@router.post("/v1/review/import")
async def import_(request: Request) -> Response:
    review, name = _who(request, "admin")
    raw = await read_body(request, MAX_IMPORT_BYTES)
    try:
        lines = raw.decode().splitlines()
    except UnicodeDecodeError:
        raise InvalidRequestError("The import must be UTF-8 JSONL.") from None
    return _json(await _call(review.store.import_lines, lines, actor=name))


@router.post("/v1/review/reports")
async def report(request: Request) -> Response:
    """A user (any tenant key) reports an answer: its record enters the queue at the top."""
    services: Services = request.app.state.services
    services.auth.identify(request.headers)
    review = _review(request)
    report = _parse(Report, await _body(request), "report")
    record = await _call(review.find_record, report.request_id)
    await _call(review.store.report, report.request_id, record, actor="user", reason=report.reason)
    return _json({"request_id": report.request_id, "status": "reported"}, 202)


# --- pages ----------------------------------------------------------------------------------------


def _env(request: Request) -> Environment:
    env = getattr(request.app.state, "review_templates", None)
    if env is None:
        from jinja2 import Environment, FileSystemLoader, select_autoescape

        env = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=select_autoescape())
        request.app.state.review_templates = env
    return env


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _env(request).get_template(template).render(actions=[a.value for a in Action], **context)
    headers = {
        "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; frame-ancestors 'none'",
        "Cache-Control": "no-store",
    }
    return HTMLResponse(html, status, headers)


def _viewer(request: Request, role: str = "reviewer") -> tuple[ReviewService, str] | Response:
    """The logged-in reviewer, or the login page (401), or a 403 page for too small a role."""
    review = _review(request)
    try:
        name = review.reviewers.require({}, request.cookies, role)  # type: ignore[arg-type]
    except RailguardError as exc:
        if exc.status == 401:
            return _page(request, "login.html", 401, error=None, me=None)
        if exc.status != 403:  # the store is down (503): the error handler answers
            raise
        return _page(request, "message.html", 403, title="Not allowed", message=exc.message, me=None)
    return review, name


def _me(review: ReviewService, name: str) -> dict[str, str]:
    return {"name": name, "role": review.reviewers.role(name)}


@router.get("/review/login", include_in_schema=False)
async def login_page(request: Request) -> Response:
    _review(request)
    return _page(request, "login.html", error=None, me=None)


@router.post("/review/login", include_in_schema=False)
async def login(request: Request) -> Response:
    review = _review(request)
    form = parse_qs((await read_body(request, 10_000)).decode(errors="replace"))
    key = (form.get("key") or [""])[0].strip()
    try:  # an unknown key: 401; a user's key from the keys file: 403
        name = review.reviewers.require({"authorization": f"Bearer {key}"} if key else {}, {})
    except RailguardError as exc:
        error = exc.message if exc.status == 403 else "That key is not a reviewer's key."
        return _page(request, "login.html", exc.status, error=error, me=None)
    response = RedirectResponse("/review", 303)
    response.set_cookie(COOKIE, review.reviewers.cookie(name), max_age=SESSION_S, httponly=True,
                        samesite="strict", path="/")  # fmt: skip
    await _call(review.store.log_event, name, "logged in")
    return response


@router.post("/review/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    response = RedirectResponse("/review/login", 303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/review", include_in_schema=False)
async def queue_page(request: Request) -> Response:
    viewer = _viewer(request)
    if isinstance(viewer, Response):
        return viewer
    review, name = viewer
    summary = await _call(review.store.stats)
    return _page(
        request, "queue.html", me=_me(review, name), queue=summary["queue"], categories=summary["categories"]
    )


@router.get("/review/next", include_in_schema=False)
async def next_page(request: Request) -> Response:
    viewer = _viewer(request)
    if isinstance(viewer, Response):
        return viewer
    review, name = viewer
    item = await _call(review.store.next_item, name)
    if item is None:
        return _page(request, "message.html", title="All done", message="Nothing is waiting for you.",
                     me=_me(review, name))  # fmt: skip
    return _page(request, "item.html", item=item, me=_me(review, name))


@router.get("/review/adjudicate", include_in_schema=False)
async def adjudicate_page(request: Request) -> Response:
    viewer = _viewer(request, "adjudicator")
    if isinstance(viewer, Response):
        return viewer
    review, name = viewer
    return _page(request, "adjudicate.html", items=await _call(review.store.disputed), me=_me(review, name))


@router.get("/review/stats", include_in_schema=False)
async def stats_page(request: Request) -> Response:
    viewer = _viewer(request, "adjudicator")
    if isinstance(viewer, Response):
        return viewer
    review, name = viewer
    return _page(request, "stats.html", stats=await _call(review.store.stats), me=_me(review, name))


@router.get("/review/static/review.js", include_in_schema=False)
async def script(request: Request) -> Response:
    _review(request)
    body = (Path(__file__).parent / "static" / "review.js").read_bytes()
    return Response(body, media_type="text/javascript", headers={"Cache-Control": "max-age=300"})
