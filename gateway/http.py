"""What the HTTP routers share: the services the app built (`app.state.services`), and JSON answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from gateway.app import Services

__all__ = ["json_response", "services_of"]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def services_of(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]
