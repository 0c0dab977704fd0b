"""Routes: the tree (list, mkdir, move, delete), uploads, downloads, signed chunk transfers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from server.api.http import base_url, json_body, path_int, principal, query_int, services
from server.core.errors import ErrorCode, SatchelError
from server.services import accounts, downloads, tree, uploads


async def list_folder(request: Request) -> Response:
    """List a folder (or describe a file). Query: path, after (paging cursor), limit."""
    who = await principal(request)
    return JSONResponse(await tree.list_folder(
        services(request), who, request.query_params.get("path", "/"),
        request.query_params.get("after"), query_int(request, "limit", tree.LIST_PAGE) or tree.LIST_PAGE))


async def stat(request: Request) -> Response:
    """Metadata of one path. Query: path."""
    who = await principal(request)
    return JSONResponse(await tree.stat(services(request), who, request.query_params.get("path")))


async def mkdir(request: Request) -> Response:
    """Create a folder and its missing parents. Body: {path}. Idempotent."""
    who = await principal(request)
    body = await json_body(request)
    return JSONResponse(await tree.mkdir(services(request), who, body.get("path")), status_code=201)


async def move(request: Request) -> Response:
    """Rename or move a file or folder. Body: {from, to}. 409 path_exists if *to* is taken."""
    who = await principal(request)
    body = await json_body(request)
    return JSONResponse(await tree.move(services(request), who, body.get("from"), body.get("to")))


async def delete(request: Request) -> Response:
    """Move a file or folder to the trash. Body: {path, rev?}; 409 conflict if *rev* is not the head."""
    who = await principal(request)
    body = await json_body(request)
    return JSONResponse(await tree.delete(services(request), who, body.get("path"), body.get("rev")))


async def start_upload(request: Request) -> Response:
    """Announce a file: {path, size, chunks: [[hash, size]…], parent_rev, mtime?, mime?}.
    200 {upload_id, missing: [{hash, size, url, method, headers}], …}."""
    who = await principal(request)
    body = await json_body(request)
    return JSONResponse(await uploads.start(services(request), who, body, base_url(request)))


async def upload_session(request: Request) -> Response:
    """GET: the upload session with the chunks still missing (fresh URLs), how a client resumes.
    DELETE: abandon it (204)."""
    who = await principal(request)
    upload_id = request.path_params["upload_id"]
    if request.method == "DELETE":
        await uploads.abandon(services(request), who, upload_id)
        return Response(status_code=204)
    return JSONResponse(await uploads.status(services(request), who, upload_id, base_url(request)))


async def commit_upload(request: Request) -> Response:
    """Make the uploaded file visible as a new revision, atomically. 409 conflict / missing_chunks."""
    who = await principal(request)
    return JSONResponse(await uploads.commit(services(request), who, request.path_params["upload_id"]))


async def patch_upload(request: Request) -> Response:
    """Announced chunks as patches of the parent revision: {chunks: [{hash, size, parts}]}. 200 {stored}."""
    who = await principal(request)
    body = await json_body(request, msgpack_ok=True)
    return JSONResponse(await uploads.receive_patches(services(request), who, request.path_params["upload_id"],
                                                      body))


async def put_chunk(request: Request) -> Response:
    """Signed chunk upload (no bearer token: the URL is the permission). 201; 400 hash_mismatch."""
    svc = services(request)
    await uploads.receive_chunk(svc, request.path_params["upload_id"], request.path_params["hash"],
                                dict(request.query_params), request.stream())
    return Response(status_code=201)


async def put_pack(request: Request) -> Response:
    """Signed upload of many chunks of one upload session in one body (server.core.pack)."""
    stored = await uploads.receive_pack(services(request), request.path_params["upload_id"],
                                        dict(request.query_params), request.stream())
    return JSONResponse({"stored": stored})


async def get_chunk(request: Request) -> Response:
    """Signed chunk download."""
    svc = services(request)
    key = await downloads.chunk_key(svc, path_int(request, "owner_id"), request.path_params["hash"],
                              dict(request.query_params))
    if not await svc.blobs.exists(key):
        raise SatchelError(ErrorCode.not_found, "chunk not found")
    return StreamingResponse(svc.blobs.read(key), media_type="application/octet-stream",
                             headers={"Cache-Control": "private, max-age=31536000, immutable"})


async def file_info(request: Request) -> Response:
    """Metadata of a file or folder by id."""
    who = await principal(request)
    return JSONResponse(await downloads.info(services(request), who, path_int(request, "file_id")))


async def file_chunks(request: Request) -> Response:
    """The chunk list of a revision (default: head) with signed download URLs unless urls=0.
    Query: rev, offset, limit, urls."""
    who = await principal(request)
    urls = query_int(request, "urls", 1)
    if urls not in (0, 1):
        raise SatchelError(ErrorCode.bad_request, "'urls' must be 0 or 1", field="urls")
    return JSONResponse(await downloads.chunk_list(
        services(request), who, path_int(request, "file_id"), query_int(request, "rev"),
        query_int(request, "offset", 0) or 0, query_int(request, "limit", 10_000) or 10_000,
        base_url(request), urls=bool(urls)))


async def file_content(request: Request) -> Response:
    """The bytes of a revision (default: head), streamed, with single-range ``Range`` support.
    With a bearer token, or without one through a signed URL from ``content-url``."""
    svc = services(request)
    node_id = path_int(request, "file_id")
    rev_id: int | None
    if "sig" in request.query_params and "authorization" not in request.headers:
        device_id, rev_id = downloads.signed_content(svc, node_id, dict(request.query_params))
        who = await accounts.authenticate_device(svc, device_id)
    else:
        who, rev_id = await principal(request), query_int(request, "rev")
    c = await downloads.content(svc, who, node_id, rev_id, request.headers.get("range"))
    return content_response(request, c)


async def file_content_url(request: Request) -> Response:
    """A signed URL of the bytes of a revision (default: head) for a browser's download manager."""
    who = await principal(request)
    return JSONResponse(await downloads.content_url(services(request), who, path_int(request, "file_id"),
                                                    query_int(request, "rev"), base_url(request)))


def content_response(request: Request, c: downloads.Content) -> Response:
    """A revision's bytes as an HTTP response: ETag, Range (206), If-None-Match (304)."""
    etag = f'"{c.rev.content_hash}"'
    if request.headers.get("if-none-match") == etag and not c.partial:
        return Response(status_code=304, headers={"ETag": etag})
    headers = {
        "Accept-Ranges": "bytes", "ETag": etag, "Content-Length": str(c.end - c.start),
        "Content-Disposition": _disposition(c.node.path.rsplit("/", 1)[-1]),
        "Cache-Control": "private, no-cache",
    }
    if c.partial:
        headers["Content-Range"] = f"bytes {c.start}-{c.end - 1}/{c.rev.size}"
    return StreamingResponse(c.body, status_code=206 if c.partial else 200, headers=headers,
                             media_type=c.rev.mime or "application/octet-stream")


def _disposition(name: str) -> str:
    from urllib.parse import quote

    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


routes = [
    Route("/api/v1/list", list_folder, methods=["GET"]),
    Route("/api/v1/stat", stat, methods=["GET"]),
    Route("/api/v1/mkdir", mkdir, methods=["POST"]),
    Route("/api/v1/move", move, methods=["POST"]),
    Route("/api/v1/delete", delete, methods=["POST"]),
    Route("/api/v1/files", start_upload, methods=["POST"]),
    Route("/api/v1/files/{file_id}", file_info, methods=["GET"]),
    Route("/api/v1/files/{file_id}/chunks", file_chunks, methods=["GET"]),
    Route("/api/v1/files/{file_id}/content", file_content, methods=["GET", "HEAD"]),
    Route("/api/v1/files/{file_id}/content-url", file_content_url, methods=["GET"]),
    Route("/api/v1/uploads/{upload_id}", upload_session, methods=["GET", "DELETE"]),
    Route("/api/v1/uploads/{upload_id}/commit", commit_upload, methods=["POST"]),
    Route("/api/v1/uploads/{upload_id}/patch", patch_upload, methods=["POST"]),
    Route("/api/v1/blobs/up/{upload_id}/{hash}", put_chunk, methods=["PUT"]),
    Route("/api/v1/blobs/pack/{upload_id}", put_pack, methods=["PUT"]),
    Route("/api/v1/blobs/down/{owner_id}/{hash}", get_chunk, methods=["GET"]),
]
