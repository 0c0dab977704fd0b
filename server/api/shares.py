"""Routes: shared folders and files (members, roles, leaving), link shares, and the public link routes."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.api.files import content_response
from server.api.http import base_url, json_body, path_int, principal, services
from server.core.errors import ErrorCode, SatchelError
from server.services import links, shares

PASSWORD_HEADER = "x-satchel-link-password"  # noqa: S105 (a header name)
PASSWORD_HEADER_EXT = PASSWORD_HEADER + "*"  # RFC 8187 ext-value: UTF-8''percent-encoded


async def share_path(request: Request) -> Response:
    """Share a folder or file: {path, members: [{user, role, can_reshare?}]} -> the members."""
    who = await principal(request)
    body = await json_body(request)
    return JSONResponse(await shares.share(services(request), who, body.get("path"), body.get("members")))


async def share_file_id(request: Request) -> Response:
    """Share the folder or file with this id: {members: [...]} -> the members."""
    who = await principal(request)
    body = await json_body(request)
    return JSONResponse(await shares.share_by_id(services(request), who, path_int(request, "file_id"),
                                                 body.get("members")))


async def my_shares(request: Request) -> Response:
    """The shared folders and files the caller belongs to (owner or member), with mount paths, kinds, roles."""
    return JSONResponse(shares.mine(await principal(request)))


async def members(request: Request) -> Response:
    """The members of a shared folder or file (any member may look)."""
    who = await principal(request)
    return JSONResponse(await shares.members_of(services(request), who, path_int(request, "ns")))


async def member(request: Request) -> Response:
    """PATCH {role, can_reshare?}: change a member's role (owner). DELETE: remove them (owner), or
    leave (one's own user id)."""
    who = await principal(request)
    svc, ns, user_id = services(request), path_int(request, "ns"), path_int(request, "user_id")
    if request.method == "DELETE":
        await shares.remove(svc, who, ns, user_id)
        return Response(status_code=204)
    return JSONResponse(await shares.set_role(svc, who, ns, user_id, await json_body(request)))


async def leave(request: Request) -> Response:
    """Leave a shared folder or file (members; the owner cannot). 204."""
    who = await principal(request)
    await shares.remove(services(request), who, path_int(request, "ns"), who.user_id)
    return Response(status_code=204)


async def create_link(request: Request) -> Response:
    """{path, mode?: download|upload, expires?: seconds|'3d'|ISO, password?} -> 201 link with url."""
    who = await principal(request)
    body = await json_body(request)
    return JSONResponse(await links.create(services(request), who, body, base_url(request)), status_code=201)


async def list_links(request: Request) -> Response:
    """Live links the caller made or manages (tokens are never shown again)."""
    who = await principal(request)
    return JSONResponse(await links.list_links(services(request), who, base_url(request)))


async def revoke_link(request: Request) -> Response:
    """Revoke a link (its creator or the folder's owner). 204."""
    who = await principal(request)
    await links.revoke(services(request), who, path_int(request, "link_id"))
    return Response(status_code=204)


def link_password(request: Request) -> str | None:
    """The link password: ``X-Satchel-Link-Password*: UTF-8''<percent-encoded>`` (RFC 8187, any
    Unicode password: browsers' fetch and most HTTP libraries refuse non-Latin-1 header values),
    else the plain header, whose raw bytes are read as UTF-8 when they are valid UTF-8 (Starlette
    hands header values over as Latin-1) and as Latin-1 otherwise (older clients)."""
    ext = request.headers.get(PASSWORD_HEADER_EXT)
    if ext is not None:
        charset, sep, rest = ext.partition("'")
        _lang, sep2, encoded = rest.partition("'")
        if not (sep and sep2) or charset.lower() != "utf-8" or not encoded.isascii():
            raise SatchelError(ErrorCode.bad_request, f"{PASSWORD_HEADER_EXT} is UTF-8''<percent-encoded>")
        try:
            return unquote(encoded, errors="strict")
        except UnicodeDecodeError as exc:
            raise SatchelError(ErrorCode.bad_request, f"{PASSWORD_HEADER_EXT} is not percent-encoded UTF-8") from exc
    plain = request.headers.get(PASSWORD_HEADER)
    if plain is None:
        return None
    try:
        return plain.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return plain


async def _opened(request: Request) -> links.Opened:
    return await links.open_link(services(request), request.path_params["token"], link_password(request))


async def public_link(request: Request) -> Response:
    """No bearer token: the link is the permission. The file, or a folder listing. Query: path, after."""
    o = await _opened(request)
    return JSONResponse(await links.describe(services(request), o, request.query_params.get("path"),
                                             request.query_params.get("after")))


async def public_content(request: Request) -> Response:
    """The bytes of the link's file (or of ``path`` inside its folder), with Range support. With the
    password header, or without it through a signed URL from ``content-url``."""
    if "sig" in request.query_params:
        o, sub = await links.open_signed(services(request), request.path_params["token"],
                                         dict(request.query_params))
    else:
        o, sub = await _opened(request), request.query_params.get("path")
    c = await links.content(services(request), o, sub, request.headers.get("range"))
    return content_response(request, c)


async def public_content_url(request: Request) -> Response:
    """A signed URL of the link's file (or of ``path`` inside its folder) for a download manager,
    which cannot send the password header: ``{url, size, expires_at}``."""
    o = await _opened(request)
    return JSONResponse(await links.content_url(services(request), o, request.path_params["token"],
                                                request.query_params.get("path"), base_url(request)))


async def public_upload(request: Request) -> Response:
    """A file request: PUT the bytes of a new file named ``name`` (Content-Length required). 201."""
    o = await _opened(request)
    declared = request.headers.get("content-length", "")
    if not (declared.isascii() and declared.isdigit()) or len(declared) > 18:
        raise SatchelError(ErrorCode.bad_request, "a file request needs a Content-Length")
    return JSONResponse(await links.receive(services(request), o, request.path_params["name"], int(declared),
                                            request.headers.get("content-type"), request.stream()),
                        status_code=201)


routes = [
    Route("/api/v1/shares", share_path, methods=["POST"]),
    Route("/api/v1/shares", my_shares, methods=["GET"]),
    Route("/api/v1/files/{file_id}/share", share_file_id, methods=["POST"]),
    Route("/api/v1/shares/{ns}/members", members, methods=["GET"]),
    Route("/api/v1/shares/{ns}/members/{user_id}", member, methods=["PATCH", "DELETE"]),
    Route("/api/v1/shares/{ns}/leave", leave, methods=["POST"]),
    Route("/api/v1/links", create_link, methods=["POST"]),
    Route("/api/v1/links", list_links, methods=["GET"]),
    Route("/api/v1/links/{link_id}", revoke_link, methods=["DELETE"]),
    Route("/api/v1/public/links/{token}", public_link, methods=["GET"]),
    Route("/api/v1/public/links/{token}/content", public_content, methods=["GET", "HEAD"]),
    Route("/api/v1/public/links/{token}/content-url", public_content_url, methods=["GET"]),
    Route("/api/v1/public/links/{token}/files/{name}", public_upload, methods=["PUT"]),
]
