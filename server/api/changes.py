"""Routes: the change journal (Dropbox's list_folder/continue idea), for clients without a socket."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.api.http import principal, query_int, services
from server.core.errors import ErrorCode, SatchelError
from server.services import changes


async def list_changes(request: Request) -> Response:
    """Entries after a cursor, oldest first. Query: cursor (required), limit (<= 1000).
    200 {entries, cursor, has_more}; 400 bad_cursor (start over from a full listing)."""
    who = await principal(request)
    cursor = request.query_params.get("cursor")
    if not cursor:
        raise SatchelError(ErrorCode.bad_cursor, "'cursor' is required; get one from /api/v1/changes/latest")
    return JSONResponse(await changes.list_changes(services(request), who, cursor,
                                                   query_int(request, "limit", changes.PAGE) or changes.PAGE))


async def latest(request: Request) -> Response:
    """A cursor for "now" in a namespace (default: the caller's root). Query: ns."""
    who = await principal(request)
    return JSONResponse(await changes.latest_cursor(services(request), who, query_int(request, "ns")))


routes = [
    Route("/api/v1/changes", list_changes, methods=["GET"]),
    Route("/api/v1/changes/latest", latest, methods=["GET"]),
]
