"""Async SDK: one method per API route (protocol.md), errors as ``SatchelError`` with the server's code.

    async with SatchelClient("http://127.0.0.1:8080", token) as c:
        await c.upload("report.pdf", "/Work/report.pdf")
        await c.download("/Work/report.pdf", "copy.pdf")

Network failures surface as ``httpx.TransportError``; transfer engines retry those.
"""

from __future__ import annotations

import builtins
import functools
import os
import ssl
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from server.core.errors import ErrorCode, SatchelError

if TYPE_CHECKING:
    from python_client.chunk_cache import ChunkCache

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# Requests whose work grows with the file: a commit verifies every new chunk (on an object store,
# reads each back), a start may rebuild chunks from the parent's bytes (protocol.md, "Uploading").
SLOW_TIMEOUT = httpx.Timeout(900.0, connect=10.0)
Entries = list[dict[str, Any]]  # named outside the class: there ``list`` is the listing method


def raise_for_error(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
        code = ErrorCode(body.get("error"))
        message = str(body.get("message", ""))
        details = {k: v for k, v in body.items() if k not in ("error", "message")}
    except (ValueError, AttributeError):
        code, message, details = ErrorCode.internal, f"HTTP {resp.status_code}: {resp.text[:200]}", {}
    raise SatchelError(code, message, **details)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One default TLS context for every client: loading the CA store costs ~80 ms each time."""
    return httpx.create_ssl_context()  # what httpx would build per client (certifi's CA bundle)


class SatchelClient:
    def __init__(self, server: str, token: str | None = None, *, http: httpx.AsyncClient | None = None,
                 parallel: int = 8, chunk_cache: ChunkCache | None = None) -> None:
        """*chunk_cache*: where this device remembers the chunk lists of files it uploaded or
        downloaded, so an unchanged file is not hashed again (the CLI keeps one per config dir)."""
        self.server = server.rstrip("/")
        self.token = token
        self.parallel = parallel
        self.chunk_cache = chunk_cache
        limits = httpx.Limits(max_connections=parallel * 2, max_keepalive_connections=parallel * 2)
        self.http = http or httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, limits=limits, verify=_tls_context())

    async def __aenter__(self) -> SatchelClient:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()
        if self.chunk_cache is not None:
            self.chunk_cache.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                      timeout: httpx.Timeout | None = None) -> Any:
        resp = await self.http.request(method, self.server + path, json=json, params=params,
                                       headers=self._headers(), timeout=timeout or self.http.timeout)
        raise_for_error(resp)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    # -- accounts
    async def signup(self, name: str, password: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/api/v1/auth/signup",
                                                    json={"name": name, "password": password})
        return result

    async def login(self, name: str, password: str, device_name: str | None = None,
                    device_kind: str = "cli") -> dict[str, Any]:
        out: dict[str, Any] = await self.request("POST", "/api/v1/auth/login", json={
            "name": name, "password": password,
            "device_name": device_name or os.uname().nodename[:64] or "device", "device_kind": device_kind})
        self.token = out["token"]
        return out

    async def logout(self) -> None:
        await self.request("POST", "/api/v1/auth/logout")
        self.token = None

    async def account(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/api/v1/account")
        return result

    async def devices(self) -> list[dict[str, Any]]:
        return list((await self.request("GET", "/api/v1/devices"))["devices"])

    async def revoke_device(self, device_id: int) -> None:
        await self.request("DELETE", f"/api/v1/devices/{device_id}")

    # -- tree
    async def list(self, path: str = "/") -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params = {"path": path, **({"after": after} if after else {})}
            page = await self.request("GET", "/api/v1/list", params=params)
            entries.extend(page["entries"])
            after = page["next"]
            if not after:
                return entries

    async def stat(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/api/v1/stat", params={"path": path})
        return result

    async def stat_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.stat(path)
        except SatchelError as exc:
            if exc.code is ErrorCode.not_found:
                return None
            raise

    async def mkdir(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/api/v1/mkdir", json={"path": path})
        return result

    async def move(self, src: str, dst: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/api/v1/move", json={"from": src, "to": dst})
        return result

    async def delete(self, path: str, rev: int | None = None) -> dict[str, Any]:
        """Trash *path*; with *rev*, only if that is still the file's head (else ``conflict``)."""
        body: dict[str, Any] = {"path": path} if rev is None else {"path": path, "rev": rev}
        result: dict[str, Any] = await self.request("POST", "/api/v1/delete", json=body)
        return result

    # -- sharing
    async def share(self, path: str, user: str, role: str = "viewer", can_reshare: bool = False
                    ) -> dict[str, Any]:
        """Share the folder or file at *path* with *user* (or change their role); returns the members."""
        result: dict[str, Any] = await self.request("POST", "/api/v1/shares", json={
            "path": path, "members": [{"user": user, "role": role, "can_reshare": can_reshare}]})
        return result

    async def shares(self) -> builtins.list[dict[str, Any]]:
        """The shared folders and files this user belongs to: {ns, path, kind, role, owner_id, can_reshare}."""
        return builtins.list((await self.request("GET", "/api/v1/shares"))["shares"])

    async def share_of(self, path: str) -> dict[str, Any]:
        """The share mounted at *path* (its ``share`` field), or not_found."""
        entry = await self.stat(path)
        if "share" not in entry:
            raise SatchelError(ErrorCode.not_found, f"{path} is not a shared folder")
        share: dict[str, Any] = entry["share"]
        return share

    async def members(self, ns: int) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/api/v1/shares/{ns}/members")
        return result

    async def set_role(self, ns: int, user_id: int, role: str, can_reshare: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("PATCH", f"/api/v1/shares/{ns}/members/{user_id}",
                                                    json={"role": role, "can_reshare": can_reshare})
        return result

    async def remove_member(self, ns: int, user_id: int) -> None:
        await self.request("DELETE", f"/api/v1/shares/{ns}/members/{user_id}")

    async def leave(self, ns: int) -> None:
        await self.request("POST", f"/api/v1/shares/{ns}/leave")

    async def create_link(self, path: str, *, mode: str = "download", expires: str | int | None = None,
                          password: str | None = None) -> dict[str, Any]:
        """A link share; the answer's ``url`` (with the token) is shown only this once."""
        body: dict[str, Any] = {"path": path, "mode": mode}
        if expires is not None:
            body["expires"] = expires
        if password is not None:
            body["password"] = password
        result: dict[str, Any] = await self.request("POST", "/api/v1/links", json=body)
        return result

    async def links(self) -> builtins.list[dict[str, Any]]:
        return builtins.list((await self.request("GET", "/api/v1/links"))["links"])

    async def revoke_link(self, link_id: int) -> None:
        await self.request("DELETE", f"/api/v1/links/{link_id}")

    async def link_info(self, url: str, *, password: str | None = None, path: str | None = None
                        ) -> dict[str, Any]:
        """What a link holder sees (no account needed): the file, or the folder's listing."""
        resp = await self.http.get(url, params={"path": path} if path else None, headers=_link_headers(password))
        raise_for_error(resp)
        result: dict[str, Any] = resp.json()
        return result

    async def link_download(self, url: str, local: str | os.PathLike[str], *, password: str | None = None,
                            path: str | None = None) -> int:
        """Save a link's file (or *path* inside its folder) to *local*; returns the bytes written."""
        written = 0
        async with self.http.stream("GET", url + "/content", params={"path": path} if path else None,
                                    headers=_link_headers(password)) as resp:
            if resp.status_code >= 400:
                await resp.aread()
                raise_for_error(resp)
            with open(local, "wb") as f:
                async for piece in resp.aiter_bytes():
                    f.write(piece)
                    written += len(piece)
        return written

    async def link_upload(self, url: str, local: str | os.PathLike[str], *, password: str | None = None,
                          name: str | None = None) -> dict[str, Any]:
        """Drop a file into a file-request link's folder."""
        from urllib.parse import quote

        size = os.path.getsize(local)

        async def body() -> Any:
            with open(local, "rb") as f:
                while piece := f.read(1 << 20):
                    yield piece

        target = f"{url}/files/{quote(name or os.path.basename(local), safe='')}"
        resp = await self.http.put(target, content=body(), headers={
            **_link_headers(password), "Content-Length": str(size)})
        raise_for_error(resp)
        result: dict[str, Any] = resp.json()
        return result

    # -- uploads / downloads (raw routes; see transfer.py for the engines)
    async def start_upload(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/api/v1/files", json=body, timeout=SLOW_TIMEOUT)
        return result

    async def upload_status(self, upload_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/api/v1/uploads/{upload_id}")
        return result

    async def commit_upload(self, upload_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", f"/api/v1/uploads/{upload_id}/commit",
                                                    timeout=SLOW_TIMEOUT)
        return result

    async def chunk_list(self, file_id: int, rev: int | None = None, offset: int = 0, *,
                         limit: int | None = None, urls: bool = True) -> dict[str, Any]:
        """A page of the chunk list; *urls* False leaves out the signed URLs (faster: ``direct``
        in the answer tells whether fetching needs them)."""
        params: dict[str, Any] = {"offset": offset}
        if rev is not None:
            params["rev"] = rev
        if limit is not None:
            params["limit"] = limit
        if not urls:
            params["urls"] = 0
        result: dict[str, Any] = await self.request("GET", f"/api/v1/files/{file_id}/chunks", params=params)
        return result

    def content_url(self, file_id: int) -> str:
        return f"{self.server}/api/v1/files/{file_id}/content"

    async def signed_content_url(self, file_id: int, rev: int | None = None) -> dict[str, Any]:
        """``{url, rev, size, expires_at}``: a URL of the bytes that needs no token (curl, a browser)."""
        params = {"rev": rev} if rev is not None else {}
        result: dict[str, Any] = await self.request("GET", f"/api/v1/files/{file_id}/content-url", params=params)
        return result

    # -- history, trash, rewind, quota, search
    async def revisions(self, path: str) -> Entries:
        """Every revision of the file at *path*, newest first."""
        file_id = (await self.stat(path))["id"]
        out: list[dict[str, Any]] = []
        before: int | None = None
        while True:
            params = {"before": before} if before else None
            page = await self.request("GET", f"/api/v1/files/{file_id}/revisions", params=params)
            out.extend(page["revisions"])
            before = page["next"]
            if not before:
                return out

    async def restore(self, path: str, rev: int) -> dict[str, Any]:
        file_id = (await self.stat(path))["id"]
        result: dict[str, Any] = await self.request("POST", f"/api/v1/files/{file_id}/restore", json={"rev": rev})
        return result

    async def trash(self, path: str = "/") -> Entries:
        entries: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            page = await self.request("GET", "/api/v1/trash", params={"path": path, "offset": offset})
            entries.extend(page["entries"])
            offset = page["next"]
        return entries

    async def undelete(self, path: str | None = None, item_id: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/api/v1/trash/restore",
                                                    json={"path": path, "id": item_id})
        return result

    async def purge(self, path: str | None = None, item_id: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/api/v1/trash/purge", json={"path": path, "id": item_id})
        return result

    async def rewind(self, path: str, to_ms: int, dry_run: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "/api/v1/rewind",
                                                    json={"path": path, "to": to_ms, "dry_run": dry_run})
        return result

    async def quota(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/api/v1/quota")
        return result

    async def search(self, query: str, path: str = "/", limit: int = 20, offset: int = 0) -> dict[str, Any]:
        """One page of results: {entries, next}; pass ``offset=next`` for the next page."""
        result: dict[str, Any] = await self.request("POST", "/api/v1/files/search", json={
            "query": query, "path": path, "limit": limit, "offset": offset})
        return result

    # -- engines
    async def upload(self, local: str | os.PathLike[str], remote: str, **kw: Any) -> dict[str, Any]:
        from python_client.transfer import upload_file

        return await upload_file(self, local, remote, **kw)

    async def download(self, remote: str, local: str | os.PathLike[str], **kw: Any) -> dict[str, Any]:
        from python_client.transfer import download_file

        return await download_file(self, remote, local, **kw)


def _link_headers(password: str | None) -> dict[str, str]:
    # RFC 8187 form: any Unicode password fits (a raw header value must be ASCII for httpx).
    return {"X-Satchel-Link-Password*": "UTF-8''" + quote(password, safe="")} if password is not None else {}
