"""Routes: version history, trash, rewind, quota."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.api.http import json_body, path_int, principal, query_int, services
from server.services import history, quota, rewind, trash


async def revisions(request: Request) -> Response:
    """Revisions of a file, newest first. Query: before (paging cursor), limit (<= 1000)."""
    who = await principal(request)
    return JSONResponse(await history.list_revisions(
        services(request), who, path_int(request, "file_id"), query_int(request, "before"),
        query_int(request, "limit", history.PAGE) or history.PAGE))


async def restore(request: Request) -> Response:
    """Make an old revision current again, as a new revision. Body: {rev}. 200 entry."""
    who = await principal(request)
    body = await json_body(request)
    return JSONResponse(await history.restore(services(request), who, path_int(request, "file_id"),
                                              body.get("rev")))


async def list_trash(request: Request) -> Response:
    """Trash items at or below a path, newest first. Query: path, offset, limit (<= 1000)."""
    who = await principal(request)
    return JSONResponse(await trash.list_trash(
        services(request), who, request.query_params.get("path", "/"), query_int(request, "offset", 0) or 0,
        query_int(request, "limit", trash.PAGE) or trash.PAGE))


async def undelete(request: Request) -> Response:
    """Restore a trash item: {path} (the latest deleted there) or {id}. 200 entry + restored."""
    who = await principal(request)
    body = await json_body(request)
    return JSONResponse(await trash.undelete(services(request), who, body.get("path"), body.get("id")))


async def purge(request: Request) -> Response:
    """Erase a trash item for good: {path} or {id}. 200 {id, path, kind, purged}."""
    who = await principal(request)
    body = await json_body(request)
    return JSONResponse(await trash.purge(services(request), who, body.get("path"), body.get("id")))


async def do_rewind(request: Request) -> Response:
    """Bring a folder back to time *to* (ms). Body: {path, to, dry_run}. 200 {steps, unavailable, …}."""
    who = await principal(request)
    body = await json_body(request)
    return JSONResponse(await rewind.rewind(services(request), who, body.get("path"), body.get("to"),
                                            body.get("dry_run") is True))


async def quota_status(request: Request) -> Response:
    """The caller's storage: {used, reserved, limit, available}."""
    who = await principal(request)
    return JSONResponse(await quota.status(services(request), who))


routes = [
    Route("/api/v1/files/{file_id}/revisions", revisions, methods=["GET"]),
    Route("/api/v1/files/{file_id}/restore", restore, methods=["POST"]),
    Route("/api/v1/trash", list_trash, methods=["GET"]),
    Route("/api/v1/trash/restore", undelete, methods=["POST"]),
    Route("/api/v1/trash/purge", purge, methods=["POST"]),
    Route("/api/v1/rewind", do_rewind, methods=["POST"]),
    Route("/api/v1/quota", quota_status, methods=["GET"]),
]
