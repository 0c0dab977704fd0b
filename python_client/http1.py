"""A minimal HTTP/1.1 keep-alive client for the chunk hot path (PUT a chunk, GET a byte range).

httpx costs ~2-3 ms of client CPU per request here (connection-pool bookkeeping, anyio
primitives, a failing ``import sniffio`` on every lock), ten times the ~0.2 ms of a plain
asyncio stream: with thousands of chunks per file that, not the bytes, bounded upload speed.
This client only talks to plain-``http`` origins (the Satchel server itself) that no HTTP proxy
applies to; everything else, including every HTTPS URL and every JSON API call, goes through httpx.

Failures surface as ``httpx.TransportError`` subclasses so the engines' retry logic is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import httpx

READ_LIMIT = 1024 * 1024  # StreamReader buffer (pauses reading at 2x): big reads, bounded memory
TIMEOUT = 60.0  # per network operation, like the SDK's httpx timeout
SEND_PIECE = 4 * 1024 * 1024


@dataclass
class Head:
    status: int
    headers: dict[str, str]  # lower-case names

    def response(self, body: bytes) -> httpx.Response:
        """An httpx response (for ``raise_for_error``) built from this head and *body*."""
        return httpx.Response(self.status, headers=self.headers, content=body)


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reusable = True
        self.body_done = False

    def close(self) -> None:
        self.reusable = False
        self.writer.close()


async def _io(aw: object, what: str) -> object:
    try:
        async with asyncio.timeout(TIMEOUT):
            return await aw  # type: ignore[misc]
    except TimeoutError as exc:
        raise httpx.ReadTimeout(f"{what} timed out") from exc
    except asyncio.IncompleteReadError as exc:
        raise httpx.RemoteProtocolError(f"connection closed during {what}") from exc
    except (OSError, asyncio.LimitOverrunError, ValueError) as exc:
        raise httpx.ReadError(f"{what}: {exc}") from exc


class Http1Pool:
    """Keep-alive connections to one ``http://host:port`` origin; one request per connection at a time."""

    def __init__(self, origin: str) -> None:
        u = urlsplit(origin)
        self.origin = f"{u.scheme}://{u.netloc}"
        self.host, self.port = u.hostname or "localhost", u.port or 80
        self.netloc = u.netloc
        # plain http only, and not when an HTTP proxy applies (httpx honours those; this does not)
        self.enabled = u.scheme == "http" and (not getproxies().get("http") or bool(proxy_bypass(self.host)))
        self._idle: list[_Conn] = []

    def handles(self, url: str) -> bool:
        return self.enabled and url.startswith(self.origin + "/")

    async def aclose(self) -> None:
        while self._idle:
            conn = self._idle.pop()
            conn.close()
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()

    async def _connect(self) -> _Conn:
        while self._idle:
            conn = self._idle.pop()
            if not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn
            conn.close()
        try:
            async with asyncio.timeout(10):
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=READ_LIMIT)
        except (OSError, TimeoutError) as exc:
            raise httpx.ConnectError(f"cannot connect to {self.origin}: {exc}") from exc
        return _Conn(reader, writer)

    def _release(self, conn: _Conn) -> None:
        if conn.reusable and not conn.writer.is_closing():
            self._idle.append(conn)
        else:
            conn.close()

    def _request_head(self, method: str, url: str, headers: dict[str, str], length: int | None) -> bytes:
        u = urlsplit(url)
        target = u.path + (f"?{u.query}" if u.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.netloc}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _read_head(self, conn: _Conn) -> Head:
        raw = await _io(conn.reader.readuntil(b"\r\n\r\n"), "reading the response head")
        assert isinstance(raw, bytes)
        lines = raw.decode("latin-1").split("\r\n")
        try:
            version, code = lines[0].split(" ", 2)[:2]
            status = int(code)
        except ValueError as exc:
            raise httpx.RemoteProtocolError(f"bad status line {lines[0]!r}") from exc
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if headers.get("connection", "").lower() == "close" or version == "HTTP/1.0":
            conn.reusable = False
        return Head(status, headers)

    async def _body(self, conn: _Conn, head: Head, piece: int) -> AsyncIterator[bytes]:
        conn.body_done = False
        if "chunked" in head.headers.get("transfer-encoding", "").lower():
            while True:
                size_line = await _io(conn.reader.readuntil(b"\r\n"), "reading a body chunk")
                assert isinstance(size_line, bytes)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    await _io(conn.reader.readuntil(b"\r\n"), "reading the body trailer")
                    conn.body_done = True
                    return
                left = size
                while left:
                    data = await _io(conn.reader.read(min(piece, left)), "reading the body")
                    assert isinstance(data, bytes)
                    if not data:
                        raise httpx.RemoteProtocolError("connection closed mid-body")
                    left -= len(data)
                    yield data
                await _io(conn.reader.readexactly(2), "reading the body")
        elif "content-length" in head.headers:
            left = int(head.headers["content-length"])
            while left:
                data = await _io(conn.reader.read(min(piece, left)), "reading the body")
                assert isinstance(data, bytes)
                if not data:
                    raise httpx.RemoteProtocolError("connection closed mid-body")
                left -= len(data)
                conn.body_done = not left  # before the yield: the reader may stop at the last byte
                yield data
            conn.body_done = True
        else:  # delimited by close
            conn.reusable = False
            while data := await _io(conn.reader.read(piece), "reading the body"):
                assert isinstance(data, bytes)
                yield data

    async def put(self, url: str, data: bytes, headers: dict[str, str]) -> tuple[Head, bytes]:
        """Send *data*; return the response head and (small) body."""
        conn = await self._connect()
        try:
            conn.writer.write(self._request_head("PUT", url, headers, len(data)))
            view = memoryview(data)
            for i in range(0, len(view), SEND_PIECE):  # a timeout per piece, not per chunk
                conn.writer.write(view[i:i + SEND_PIECE])
                await _io(conn.writer.drain(), "sending the body")
            head = await self._read_head(conn)
            body = b"".join([p async for p in self._body(conn, head, 1 << 20)])
        except BaseException:
            conn.close()
            raise
        self._release(conn)
        return head, body

    @contextlib.asynccontextmanager
    async def get(self, url: str, headers: dict[str, str], piece: int = 1 << 20
                  ) -> AsyncIterator[tuple[Head, AsyncIterator[bytes]]]:
        """GET *url*; yields the head and an iterator of body pieces of at most *piece* bytes.
        The connection is kept for reuse only if the whole body was read."""
        conn = await self._connect()
        body: AsyncIterator[bytes] | None = None
        try:
            conn.writer.write(self._request_head("GET", url, headers, None))
            await _io(conn.writer.drain(), "sending the request")
            head = await self._read_head(conn)
            body = self._body(conn, head, piece)
            yield head, body
        except BaseException:
            conn.close()
            raise
        finally:
            if body is not None:
                await body.aclose()  # type: ignore[attr-defined]
        if conn.body_done:
            self._release(conn)
        else:
            conn.close()
