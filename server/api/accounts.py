"""Routes: sign-up, log-in, log-out, account, devices."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.api.http import json_body, path_int, principal, services
from server.core.errors import ErrorCode, SatchelError
from server.services import accounts


async def signup(request: Request) -> Response:
    """Create an account. Body: {name, password}. 201 {id, name}; 403 signup_disabled; 409 user_exists."""
    svc = services(request)
    if not svc.config.signup:
        raise SatchelError(ErrorCode.signup_disabled, "sign-up is turned off on this server")
    body = await json_body(request)
    user = await accounts.create_user(svc, body.get("name"), body.get("password"))  # type: ignore[arg-type]
    return JSONResponse({"id": user.id, "name": user.name}, status_code=201)


async def login(request: Request) -> Response:
    """Log a device in. Body: {name, password, device_name, device_kind}. 200 {token, device_id, ...}."""
    body = await json_body(request)
    out = await accounts.login(services(request), body.get("name"), body.get("password"),
                               body.get("device_name", "unnamed"), body.get("device_kind", "cli"))
    return JSONResponse(out)


async def logout(request: Request) -> Response:
    """Revoke the calling device's token. 204."""
    who = await principal(request)
    await accounts.revoke_device(services(request), who, who.device_id)
    return Response(status_code=204)


async def account(request: Request) -> Response:
    """The caller's account: id, name, device, quota {used, limit}."""
    who = await principal(request)
    return JSONResponse(await accounts.account(services(request), who))


async def devices(request: Request) -> Response:
    """The caller's devices that are logged in."""
    who = await principal(request)
    return JSONResponse({"devices": await accounts.list_devices(services(request), who)})


async def revoke(request: Request) -> Response:
    """Log a device out (revoke its token). 204; 404 not_found."""
    who = await principal(request)
    await accounts.revoke_device(services(request), who, path_int(request, "device_id"))
    return Response(status_code=204)


routes = [
    Route("/api/v1/auth/signup", signup, methods=["POST"]),
    Route("/api/v1/auth/login", login, methods=["POST"]),
    Route("/api/v1/auth/logout", logout, methods=["POST"]),
    Route("/api/v1/account", account, methods=["GET"]),
    Route("/api/v1/devices", devices, methods=["GET"]),
    Route("/api/v1/devices/{device_id}", revoke, methods=["DELETE"]),
]
