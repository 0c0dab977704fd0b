"""Request/response plumbing shared by every route: auth, bounded JSON bodies, error rendering."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.core.errors import ErrorCode, SatchelError
from server.services import accounts
from server.services.context import Principal, Services
from server.ws.protocol import unpack_limits

log = logging.getLogger(__name__)
_INTEGER = re.compile(r"-?[0-9]+")
MAX_JSON_BODY = 64 * 1024 * 1024  # a 200,000-chunk announcement is ~16 MB of JSON
MSGPACK = "application/msgpack"
MAX_INT = 2**31 - 1  # ids, revisions and chunk indexes are 32-bit INTEGER columns in PostgreSQL


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def base_url(request: Request) -> str:
    svc = services(request)
    return (svc.config.public_url or str(request.base_url)).rstrip("/")


async def principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SatchelError(ErrorCode.unauthorized, "missing bearer token (Authorization: Bearer …)")
    return await accounts.authenticate(services(request), token.strip())


async def json_body(request: Request, msgpack_ok: bool = False) -> dict[str, Any]:
    """The request's JSON object, read with a size cap; anything else is bad_request. With
    *msgpack_ok*, a body sent as ``application/msgpack`` may be a msgpack map instead (bytes as
    bin, not base64: a third smaller)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_JSON_BODY:
        raise SatchelError(ErrorCode.too_large, "request body too large", limit=MAX_JSON_BODY)
    buf = bytearray()
    async for piece in request.stream():
        buf += piece
        if len(buf) > MAX_JSON_BODY:
            raise SatchelError(ErrorCode.too_large, "request body too large", limit=MAX_JSON_BODY)
    if msgpack_ok and request.headers.get("content-type", "").startswith(MSGPACK):
        try:
            body = msgpack.unpackb(bytes(buf), raw=False, strict_map_key=True, use_list=True,
                                   **unpack_limits(MAX_JSON_BODY))
        except (ValueError, msgpack.UnpackException, RecursionError) as exc:
            raise SatchelError(ErrorCode.bad_request, "the body is not valid msgpack") from exc
    else:
        try:
            body = json.loads(buf)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: '[[[[…' nested too deep
            raise SatchelError(ErrorCode.bad_request, "the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise SatchelError(ErrorCode.bad_request, "the body must be an object")
    return body


def query_int(request: Request, name: str, default: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not _INTEGER.fullmatch(raw):  # not int(): it also takes ' 1', '1_0' and non-ASCII digits
        raise SatchelError(ErrorCode.bad_request, f"'{name}' must be an integer", field=name)
    if raw.startswith("-"):
        raise SatchelError(ErrorCode.bad_request, f"'{name}' must be >= 0", field=name)
    if len(raw) > 10 or int(raw) > MAX_INT:  # the database would refuse it (PostgreSQL) or overflow
        raise SatchelError(ErrorCode.bad_request, f"'{name}' must be <= {MAX_INT}", field=name)
    return int(raw)


def path_int(request: Request, name: str) -> int:
    raw = str(request.path_params[name])
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or int(raw) > MAX_INT:
        raise SatchelError(ErrorCode.not_found, "not found")  # no such id can exist
    return int(raw)


def error_response(exc: SatchelError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if exc.code is ErrorCode.range_not_satisfiable and "size" in exc.details:
        headers = {"Content-Range": f"bytes */{exc.details['size']}"}
    return JSONResponse(exc.to_body(), status_code=exc.status, headers=headers)


async def on_satchel_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SatchelError)
    return error_response(exc)


async def on_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: ErrorCode.not_found, 405: ErrorCode.method_not_allowed}.get(exc.status_code,
                                                                            ErrorCode.bad_request)
    # exc.headers carries the Allow header a 405 must have (RFC 9110, 15.5.6).
    return JSONResponse({"error": code.value, "message": str(exc.detail)}, status_code=exc.status_code,
                        headers=exc.headers)


async def on_client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up mid-body (a cancelled or broken upload): nothing went wrong here, and
    nobody reads the answer. Without this, Starlette would treat it as a crash."""
    log.info("%s %s: the client went away before the request body ended", request.method, request.url.path)
    return JSONResponse({"error": ErrorCode.bad_request.value, "message": "the request body was cut off"},
                        status_code=400)


async def on_unexpected(_request: Request, exc: Exception) -> Response:
    log.exception("unexpected error", exc_info=exc)
    return JSONResponse({"error": "internal", "message": "internal error"}, status_code=500)


Handler = Callable[[Request], Awaitable[Response]]
