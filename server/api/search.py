"""Routes: search."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.api.http import json_body, principal, services
from server.services import search


async def do_search(request: Request) -> Response:
    """Files and folders by name, path and text. Body: {query, path?, offset?, limit?}.
    200 {entries: [entry + score], next}."""
    who = await principal(request)
    body = await json_body(request)
    return JSONResponse(await search.search(services(request), who, body.get("query"), body.get("path"),
                                            body.get("offset", 0), body.get("limit", 20)))


routes = [Route("/api/v1/files/search", do_search, methods=["POST"])]
