"""Routes: the web app (client_js/, built by ``npm run build`` into client_js/dist).

    GET /                 index.html, ``Cache-Control: no-cache`` (always revalidated, so a new
                          build is picked up at once) and a Content-Security-Policy
    GET /assets/{name}    the build's content-hashed files: ``immutable``, cached for a year

A missing build answers ``not_found`` with a message saying how to build it.
"""

from __future__ import annotations

import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from server.api.http import services
from server.core.errors import ErrorCode, SatchelError

DEFAULT_DIR = Path(__file__).resolve().parent.parent.parent / "client_js" / "dist"
_ASSET = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,200}")
IMMUTABLE = "public, max-age=31536000, immutable"
# The app talks to this origin (REST, WebSocket) and to an object store's presigned URLs (any
# origin); BLAKE3 runs as WebAssembly; previews are blob: URLs. Style attributes (never <style>
# elements) are allowed: the live editor colours each person's cursor and selection with one.
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
       "connect-src 'self' blob: ws: wss: http: https:; img-src 'self' blob: data:; media-src 'self' blob:; "
       "frame-src 'self' blob:; object-src 'self' blob:; style-src 'self'; style-src-attr 'unsafe-inline'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class WholeFile(FileResponse):
    """A built file, always whole: these are small, and Starlette's own Range handling would answer
    a bad Range header in plain text instead of the API's JSON errors."""

    def __init__(self, path: Path, **kw: object) -> None:
        super().__init__(path, **kw)  # type: ignore[arg-type]
        del self.headers["accept-ranges"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k not in (b"range", b"if-range")]}
        await super().__call__(scope, receive, send)


def web_dir(request: Request) -> Path:
    configured = services(request).config.web_dir
    return Path(configured) if configured else DEFAULT_DIR


def _not_built(root: Path) -> SatchelError:
    return SatchelError(ErrorCode.not_found, f"the web app is not built in {root}: run ./dev setup "
                        "(or npm ci && npm run build in client_js/)")


async def index(request: Request) -> Response:
    """The web app's page (sign-in, browse, upload, download, live updates)."""
    root = web_dir(request)
    page = root / "index.html"
    if not page.is_file():
        raise _not_built(root)
    return WholeFile(page, media_type="text/html; charset=utf-8", headers={
        "Cache-Control": "no-cache", "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


async def asset(request: Request) -> Response:
    """One of the web app's built files (content-hashed names, cached as immutable)."""
    name = request.path_params["name"]
    root = web_dir(request)
    path = root / "assets" / name
    if not _ASSET.fullmatch(name) or not path.is_file():
        raise SatchelError(ErrorCode.not_found, "no such asset")
    return WholeFile(path, headers={"Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"})


routes = [
    Route("/", index, methods=["GET"]),
    Route("/assets/{name}", asset, methods=["GET"]),
]
