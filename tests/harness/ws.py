"""Raw WebSocket helpers for end-to-end tests: frames in and out without the SDK's conveniences,
so tests can send what a broken client would and see exactly what the server answers."""

from __future__ import annotations

import asyncio
import socket
from typing import Any
from urllib.parse import urlsplit

import msgpack
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from python_client.api import SatchelClient
from python_client.live import LiveSession, ws_url
from server.ws.protocol import SUBPROTOCOL, VERSION, Frame, MsgType, decode, encode


async def connect(server_url: str, *, small_buffer: bool = False, **kw: Any) -> ClientConnection:
    """A raw connection (no frames sent yet). ``small_buffer``: a 4 KiB kernel receive buffer, no
    autotuning, and at most one frame buffered in the library: a client that stops reading
    pushes back on the server almost at once."""
    opts: dict[str, Any] = {"subprotocols": [Subprotocol(SUBPROTOCOL)], "compression": None,
                            "ping_interval": None, "max_size": None, "open_timeout": 10}
    if small_buffer:
        parts = urlsplit(server_url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # set before connect: no autotuning
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
        opts |= {"sock": sock, "max_queue": 1}
    return await websockets.connect(ws_url(server_url), **(opts | kw))


async def send(conn: ClientConnection, mtype: MsgType, rid: int = 0, body: dict[str, Any] | None = None) -> None:
    await conn.send(encode(Frame(mtype, rid, body or {})))


async def recv(conn: ClientConnection, timeout: float = 10) -> Frame:
    """The next frame that is not a server ping (answered, so the connection is not idle)."""
    while True:
        data = await asyncio.wait_for(conn.recv(), timeout)
        assert isinstance(data, bytes), f"the server sent a text frame: {data!r}"
        frame = decode(data)
        if frame.type is MsgType.ping and frame.id == 0:
            await send(conn, MsgType.pong, 0)
            continue
        return frame


async def hello(conn: ClientConnection, token: str) -> Frame:
    await send(conn, MsgType.hello, 1, {"versions": [VERSION], "token": token})
    frame = await recv(conn)
    assert frame.type is MsgType.welcome, frame
    return frame


async def close_code(conn: ClientConnection, timeout: float = 10) -> tuple[int | None, list[Frame]]:
    """Read until the server closes; return its close code and the frames it sent before."""
    frames: list[Frame] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                data = await conn.recv()
                if isinstance(data, bytes):
                    frames.append(decode(data))
    except websockets.ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd else None), frames


async def next_change(live: LiveSession, timeout: float = 10) -> dict[str, Any]:
    """The next ``change`` push (other pushes skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await live.next_push()
            if frame.type is MsgType.change:
                return frame.body


async def no_push(live: LiveSession, wait: float = 0.3) -> None:
    try:
        frame = await live.next_push(timeout=wait)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected push {frame}")


async def head(client: SatchelClient, ns: int | None = None) -> int:
    """The namespace's journal head (GET /api/v1/changes/latest; default: the caller's root)."""
    out = await client.request("GET", "/api/v1/changes/latest", params={"ns": ns} if ns else None)
    return int(out["seq"])


def encode_raw(obj: object) -> bytes:
    """Any msgpack value as a frame's bytes (the codec only encodes well-formed frames)."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data
