"""Routes: health check and the OpenAPI description, generated from the route table."""

from __future__ import annotations

import inspect
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

PUBLIC = {"/api/v1/auth/signup", "/api/v1/auth/login", "/health", "/openapi.json"}
SIGNED = re.compile(r"^/api/v1/(blobs|public)/")  # the URL (a signature, a link token) is the permission


async def health(_request: Request) -> Response:
    """Liveness: 200 {"status": "ok"}."""
    return JSONResponse({"status": "ok"})


def openapi(routes: list[BaseRoute], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        if not isinstance(r, Route) or r.methods is None:
            continue
        doc = inspect.getdoc(r.endpoint) or ""
        params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in re.findall(r"{(\w+)}", r.path)]
        for method in sorted(r.methods - {"HEAD"}):
            op: dict[str, Any] = {
                "summary": doc.split("\n")[0], "description": doc, "operationId": f"{r.endpoint.__name__}",
                "parameters": params,
                "responses": {"default": {"description": "JSON; errors are {error, message}"}},
            }
            if r.path not in PUBLIC and not SIGNED.match(r.path):
                op["security"] = [{"bearer": []}]
            paths.setdefault(r.path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Satchel", "version": version, "description": "See protocol.md"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }


def openapi_route(routes: list[BaseRoute], version: str) -> Route:
    doc = openapi(routes, version)

    async def openapi_json(_request: Request) -> Response:
        """This API's OpenAPI 3.1 description."""
        return JSONResponse(doc)

    return Route("/openapi.json", openapi_json, methods=["GET"])
