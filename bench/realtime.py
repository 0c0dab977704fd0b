"""Realtime benchmark: commit-to-notification latency over the WebSocket channel, on one node and
across two nodes (PostgreSQL + Redis), against the floors (a raw `websockets` broadcast server and
a raw Redis publish -> subscribe round trip), and the memory idle connections cost the server.

    .venv/bin/python -m bench.realtime [--subscribers 1,100,1000] [--idle 1000,5000]
                                       [--out bench/results/realtime.json]

Everything runs on loopback from ONE client process (uvloop): the committer and all subscribers
share one ``time.perf_counter`` clock. A commit is sent, then the next one only after every
subscriber got the previous one (or a timeout) and a short pause, so commits never overlap.
Latency = receive time of the ``change`` frame in a subscriber - send time of the ``commit`` frame,
over every (recipient, commit) pair; "all" = the time until the last recipient of a commit got it.

The harness freezes its own objects out of the cyclic GC once its connections are open (a full
collection of a client holding 1,000 connections would stall every reader and blur both Satchel's
and the floor's numbers); the servers run untouched.

The raw `websockets` floor server speaks just enough of the Satchel protocol (hello, subscribe,
commit) that the very same client harness drives it; it broadcasts a frame of the size Satchel's
change frames had with ``websockets.broadcast``.

Targets (from the issue): p99 < 2x the raw websockets floor at 1,000 subscribers on one node;
5,000 idle connections in one server process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import psutil
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from bench.common import REPO, VENV_BIN, free_port, machine_facts
from python_client.api import SatchelClient
from python_client.live import ws_url
from tests.harness.postgres import create_database, drop_database
from tests.harness.server import ServerProcess

PASSWORD = "bench-password-123"  # a throwaway account on a throwaway server
SUBPROTOCOL = "satchel.v1"
HEARTBEAT = "600s"  # no server pings while we measure
TARGET_P99_VS_FLOOR = 2.0
TARGET_IDLE = 5000
T_HELLO, T_WELCOME, T_PING, T_PONG, T_ERROR = 1, 2, 3, 4, 5
T_SUBSCRIBE, T_SUBSCRIBED, T_CHANGE, T_COMMIT, T_COMMITTED = 10, 11, 14, 20, 21
CONNECT_KW: dict[str, Any] = {"subprotocols": [Subprotocol(SUBPROTOCOL)], "compression": None,
                              "max_size": 1 << 20, "ping_interval": None, "open_timeout": 60,
                              "close_timeout": 5}


def pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def pct(xs: list[float], q: float) -> float:
    """The q-th percentile (linear interpolation between closest ranks); NaN for no data."""
    if not xs:
        return math.nan
    s = sorted(xs)
    k = (len(s) - 1) * q / 100
    f = math.floor(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def ms(x: float) -> float:
    return round(x * 1000, 3) if not math.isnan(x) else math.nan


# ------------------------------------------------------------------ machine state

def raise_nofile() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def proc_nofile(pid: int) -> str:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return " / ".join(line.split()[3:5])
    return "?"


def syncfs_ms(path: Path, n: int = 3) -> list[float]:
    """Milliseconds per ``syncfs`` of *path*'s file system: the local chunk store syncs the whole file
    system at every commit, so other processes' dirty data there shows up in commit latency."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            libc.syncfs(fd)
            out.append(round((time.perf_counter() - t0) * 1000, 2))
    finally:
        os.close(fd)
    return out


def wait_load(args: argparse.Namespace, what: str) -> dict[str, Any]:
    """Wait (poll every 10 s, up to --load-patience) until the 1-minute load average is below
    --load-limit; return what was seen."""
    t0 = time.monotonic()
    first = os.getloadavg()[0]
    load = first
    while args.wait_load and load >= args.load_limit and time.monotonic() - t0 < args.load_patience:
        print(f"  [{what}] load average {load:.2f} >= {args.load_limit}; waiting", flush=True)
        time.sleep(10)
        load = os.getloadavg()[0]
    info = {"load1_at_start": round(first, 2), "load1": round(load, 2), "waited_s": round(time.monotonic() - t0),
            "quiet": load < args.load_limit, "loadavg": [round(x, 2) for x in os.getloadavg()],
            "syncfs_ms": syncfs_ms(Path(tempfile.gettempdir()))}
    if not info["quiet"]:
        why = f"never dropped below {args.load_limit}" if args.wait_load else "--no-wait-load"
        print(f"  [{what}] WARNING: measuring with load average {load:.2f} ({why})", flush=True)
    return info


def _own_cpu() -> float:
    """CPU seconds of this process and all its children (live, and exited ones already reaped)."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            c = child.cpu_times()
            total += c.user + c.system
    return total


def _busy_cpu() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0)
                 - getattr(t, "guest_nice", 0.0))


@contextlib.contextmanager
def section(args: argparse.Namespace, results: dict[str, Any], name: str) -> Iterator[None]:
    """Wait for a quiet machine, then record how much CPU *other* processes used while measuring
    (system busy time minus this benchmark's own process tree, in cores) and the load at the end."""
    info = wait_load(args, name)
    wall0, busy0, own0, cpu0 = time.monotonic(), _busy_cpu(), _own_cpu(), psutil.cpu_times()
    try:
        yield
    finally:
        wall = time.monotonic() - wall0
        others = max(0.0, (_busy_cpu() - busy0) - (_own_cpu() - own0)) / wall if wall else 0.0
        cpu1 = psutil.cpu_times()
        ticks = sum(cpu1) - sum(cpu0)
        steal = (getattr(cpu1, "steal", 0.0) - getattr(cpu0, "steal", 0.0)) / ticks * 100 if ticks else 0.0
        info.update(seconds=round(wall, 1), others_cpu_cores=round(others, 2), steal_pct=round(steal, 2),
                    loadavg_end=[round(x, 2) for x in os.getloadavg()])
        results["load"][name] = info
        if others > 0.2:
            print(f"  [{name}] note: other processes used {others:.2f} cores on average meanwhile", flush=True)


# ------------------------------------------------------------------ processes

class Stack(contextlib.ExitStack):
    """Cleanup of every process and database this run starts, also on errors and Ctrl-C."""


def start_redis(stack: Stack, work: Path) -> str:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(work)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack.callback(stop_proc, proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    raise RuntimeError("redis-server did not come up")


def stop_proc(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_server(stack: Stack, data_dir: Path, env: dict[str, str]) -> ServerProcess:
    server = ServerProcess(data_dir, env={"SATCHEL_WS_HEARTBEAT": HEARTBEAT, **env})
    stack.callback(server.stop)
    server.start(timeout=60)
    return server


def start_floor(stack: Stack, loop: str, pad: int) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.realtime", "--floor-server", str(port),
                             "--floor-loop", loop, "--floor-pad", str(pad)], cwd=REPO)
    stack.callback(stop_proc, proc)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"floor server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return f"http://127.0.0.1:{port}", proc
        time.sleep(0.05)
    raise RuntimeError("floor server did not come up")


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1024**2


def cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


async def account(url: str, devices: int = 2) -> list[str]:
    """Sign up one user on *url*; return one device token per login."""
    name = "bench" + secrets.token_hex(4)
    async with SatchelClient(url) as c:
        await c.signup(name, PASSWORD)
        tokens = []
        for i in range(devices):
            await c.login(name, PASSWORD, device_name=f"bench-{i}")
            assert c.token
            tokens.append(c.token)
    return tokens


# ------------------------------------------------------------------ the client harness

class Recorder:
    """Receive times of change frames, keyed by revision, from every subscriber."""

    def __init__(self) -> None:
        self.n = 0
        self.times: dict[int, list[float]] = {}
        self.waiters: dict[int, asyncio.Future[None]] = {}
        self.frame_bytes = 0
        self.closed = 0
        self.resyncs = 0

    def arrived(self, key: int, t: float) -> None:
        lst = self.times.setdefault(key, [])
        lst.append(t)
        if len(lst) >= self.n:
            w = self.waiters.pop(key, None)
            if w is not None and not w.done():
                w.set_result(None)

    async def wait_all(self, key: int, timeout: float) -> list[float]:
        if len(self.times.get(key, ())) < self.n:
            fut = asyncio.get_running_loop().create_future()
            self.waiters[key] = fut
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, timeout)
            self.waiters.pop(key, None)
        return self.times.pop(key, [])


async def recv_frame(conn: ClientConnection, want: int, timeout: float = 60) -> dict[str, Any]:
    """The body of the next frame of type *want* (pings answered, pushes skipped); errors raise."""
    while True:
        data = await asyncio.wait_for(conn.recv(), timeout)
        mtype, rid, body = msgpack.unpackb(data, raw=False)
        if mtype == want:
            return body  # type: ignore[no-any-return]
        if mtype == T_ERROR:
            raise RuntimeError(f"server error: {body}")
        if mtype == T_PING:
            await conn.send(pack([T_PONG, rid, {}]))


async def open_session(url: str, token: str, subscribe: bool) -> tuple[ClientConnection, int]:
    conn = await websockets.connect(ws_url(url), **CONNECT_KW)
    try:
        await conn.send(pack([T_HELLO, 1, {"versions": [1], "token": token}]))
        welcome = await recv_frame(conn, T_WELCOME)
        ns = int(welcome["namespaces"][0]["ns"])
        if subscribe:
            await conn.send(pack([T_SUBSCRIBE, 2, {"ns": ns}]))
            await recv_frame(conn, T_SUBSCRIBED)
    except BaseException:
        await conn.close()
        raise
    return conn, ns


async def _reader(conn: ClientConnection, rec: Recorder) -> None:
    try:
        async for data in conn:
            t = time.perf_counter()
            mtype, rid, body = msgpack.unpackb(data, raw=False)
            if mtype == T_CHANGE:
                rec.frame_bytes = len(data)
                rec.arrived(body.get("rev"), t)
            elif mtype == T_PING:
                await conn.send(pack([T_PONG, rid, {}]))
            elif mtype == 15:  # resync: this subscriber was dropped as a slow consumer
                rec.resyncs += 1
    except websockets.ConnectionClosed:
        pass
    rec.closed += 1


class Pool:
    """N subscriber connections (hello + subscribe each), each with a reader task."""

    def __init__(self) -> None:
        self.conns: list[ClientConnection] = []
        self.readers: list[asyncio.Task[None]] = []
        self.rec = Recorder()

    async def grow(self, url: str, token: str, n: int, concurrency: int = 64) -> float:
        """Open *n* more subscribers; return the seconds it took."""
        sem = asyncio.Semaphore(concurrency)
        t0 = time.perf_counter()

        async def one() -> None:
            async with sem:
                conn, _ = await open_session(url, token, subscribe=True)
                self.conns.append(conn)
                self.readers.append(asyncio.create_task(_reader(conn, self.rec)))

        results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
        self.rec.n = len(self.conns)
        # The harness must not pause the measurement: move its (long-lived) connection objects out
        # of the cyclic GC's reach, or a full collection of this process stalls every reader.
        gc.collect()
        gc.freeze()
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise RuntimeError(f"{len(errors)} of {n} subscribers failed to connect, first: {errors[0]!r}")
        return time.perf_counter() - t0

    async def close(self) -> None:
        sem = asyncio.Semaphore(256)

        async def one(c: ClientConnection) -> None:
            async with sem:
                await c.close()

        await asyncio.gather(*(one(c) for c in self.conns), return_exceptions=True)
        for r in self.readers:
            r.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        self.conns.clear()
        self.readers.clear()
        gc.unfreeze()
        gc.collect()


async def run_commits(committer: ClientConnection, pool: Pool, *, path: str, commits: int, warmup: int,
                      pause: float, server_pids: list[int], timeout: float = 30) -> dict[str, Any]:
    """Send *warmup* + *commits* commits one at a time; latency stats over the last *commits*."""
    rec = pool.rec
    closed0 = rec.closed
    parent: int | None = None
    lat: list[float] = []
    reach_all: list[float] = []
    first: list[float] = []
    acks: list[float] = []
    missing = 0
    cpu0 = wall0 = 0.0
    for i in range(warmup + commits):
        if i == warmup:
            cpu0, wall0 = sum(cpu_s(p) for p in server_pids), time.perf_counter()
        payload = f"{path} commit {i} {secrets.token_hex(8)} ".encode() * 2
        frame = pack([T_COMMIT, 100 + i, {"path": path, "parent_rev": parent, "size": len(payload),
                                          "ops": [payload]}])
        t0 = time.perf_counter()
        await committer.send(frame)
        reply = await recv_frame(committer, T_COMMITTED, timeout)
        t_ack = time.perf_counter()
        parent = int(reply["entry"]["rev"])
        times = await rec.wait_all(parent, timeout)
        if i >= warmup:
            acks.append(t_ack - t0)
            lat.extend(t - t0 for t in times)
            missing += rec.n - len(times)
            if times:
                reach_all.append(max(times) - t0)
                first.append(min(times) - t0)
        await asyncio.sleep(pause)
    cpu = sum(cpu_s(p) for p in server_pids) - cpu0
    wall = time.perf_counter() - wall0
    return {
        "subscribers": rec.n, "commits": commits, "samples": len(lat), "missing": missing,
        "resyncs": rec.resyncs, "closed": rec.closed - closed0,
        "p50_ms": ms(pct(lat, 50)), "p90_ms": ms(pct(lat, 90)), "p99_ms": ms(pct(lat, 99)),
        "max_ms": ms(max(lat)) if lat else math.nan,
        "all_p50_ms": ms(pct(reach_all, 50)), "all_p99_ms": ms(pct(reach_all, 99)),
        "first_p50_ms": ms(pct(first, 50)), "first_p99_ms": ms(pct(first, 99)),
        "ack_p50_ms": ms(pct(acks, 50)), "ack_p99_ms": ms(pct(acks, 99)),
        "frame_bytes": rec.frame_bytes,
        "server_cpu_ms_per_commit": round(cpu / commits * 1000, 3),
        "server_cpu_share": round(cpu / wall, 3) if wall else math.nan,
    }


async def fanout_series(url_commit: str, url_sub: str, tokens: list[str], ns_list: list[int],
                        args: argparse.Namespace, label: str, server_pids: list[int]) -> list[dict[str, Any]]:
    """For each N: open N subscribers on *url_sub*, commit from *url_commit*, close them."""
    committer, _ = await open_session(url_commit, tokens[0], subscribe=False)
    out = []
    try:
        for n in ns_list:
            pool = Pool()
            try:
                opened = await pool.grow(url_sub, tokens[-1], n)
                await asyncio.sleep(1.0)  # let the server settle after the burst of handshakes
                res = await run_commits(committer, pool, path=f"/bench-{label}-{n}", commits=args.commits,
                                        warmup=args.warmup, pause=args.pause, server_pids=server_pids)
            finally:
                await pool.close()
            res["connect_s"] = round(opened, 2)
            print(f"  {label:>10} N={n:>5}: p50 {res['p50_ms']:.2f} ms  p99 {res['p99_ms']:.2f} ms  "
                  f"all p99 {res['all_p99_ms']:.2f} ms  first p50 {res['first_p50_ms']:.2f} ms  "
                  f"ack p50 {res['ack_p50_ms']:.2f} ms  missing {res['missing']}", flush=True)
            out.append(res)
            await asyncio.sleep(1.0)
    finally:
        await committer.close()
    return out


# ------------------------------------------------------------------ floors

def floor_server_main(port: int, loop: str, pad: int) -> None:
    """A raw `websockets` server with just enough protocol for the harness: hello -> welcome,
    subscribe -> subscribed (joins the broadcast set), commit -> broadcast a change, committed."""
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    subs: set[ServerConnection] = set()
    rev = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal rev
        try:
            async for data in ws:
                mtype, rid, _body = msgpack.unpackb(data, raw=False)
                if mtype == T_HELLO:
                    await ws.send(pack([T_WELCOME, rid, {"version": 1, "namespaces": [{"ns": 1}]}]))
                elif mtype == T_SUBSCRIBE:
                    subs.add(ws)
                    await ws.send(pack([T_SUBSCRIBED, rid, {"ns": 1, "seq": rev}]))
                elif mtype == T_COMMIT:
                    rev += 1
                    body = {"ns": 1, "seq": rev, "cursor": f"v1.1.{rev}", "op": "modify", "rev": rev, "pad": b""}
                    body["pad"] = b"x" * max(0, pad - len(pack([T_CHANGE, 0, body])))
                    broadcast(subs, pack([T_CHANGE, 0, body]))
                    await ws.send(pack([T_COMMITTED, rid, {"entry": {"rev": rev}}]))
                elif mtype == T_PING:
                    await ws.send(pack([T_PONG, rid, {}]))
        finally:
            subs.discard(ws)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, compression=None, max_size=1 << 20, ping_interval=None,
                         subprotocols=[Subprotocol(SUBPROTOCOL)], backlog=4096) as server:
            await server.serve_forever()

    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


async def redis_floor(url: str, count: int, warmup: int, pad: int) -> dict[str, Any]:
    """Publish -> receive through Redis pub/sub, one message at a time (redis-py asyncio + hiredis)."""
    import redis.asyncio as aioredis

    sub_conn = aioredis.from_url(url)
    pub = aioredis.from_url(url)
    ps = sub_conn.pubsub(ignore_subscribe_messages=True)
    await ps.subscribe("floor")
    got: dict[int, float] = {}
    waiters: dict[int, asyncio.Future[None]] = {}

    async def reader() -> None:
        while True:
            msg = await ps.get_message(timeout=10)
            if msg is None or msg.get("type") != "message":
                continue
            t = time.perf_counter()
            k = int(msg["data"][:12])
            got[k] = t
            w = waiters.pop(k, None)
            if w is not None and not w.done():
                w.set_result(None)

    task = asyncio.create_task(reader())
    lat = []
    try:
        for i in range(warmup + count):
            payload = f"{i:012d}".encode() + b"x" * max(0, pad - 12)
            fut = asyncio.get_running_loop().create_future()
            waiters[i] = fut
            t0 = time.perf_counter()
            await pub.publish("floor", payload)
            if i not in got:
                await asyncio.wait_for(fut, 10)
            if i >= warmup:
                lat.append(got[i] - t0)
            await asyncio.sleep(0.002)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ps.aclose()  # type: ignore[no-untyped-call]
        await sub_conn.aclose()
        await pub.aclose()
    return {"messages": count, "p50_ms": ms(pct(lat, 50)), "p99_ms": ms(pct(lat, 99)), "max_ms": ms(max(lat))}


# ------------------------------------------------------------------ sections

async def section_single(stack: Stack, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    server = start_server(stack, work / "single", {})
    tokens = await account(server.url)
    assert server.proc
    series = await fanout_series(server.url, server.url, tokens, args.subscribers, args, "1 node", [server.proc.pid])
    server.stop()
    return {"series": series}


async def section_ws_floor(stack: Stack, args: argparse.Namespace, loop: str, pad: int) -> dict[str, Any]:
    url, proc = start_floor(stack, loop, pad)
    try:
        series = await fanout_series(url, url, ["-"], args.subscribers, args, f"ws {loop}", [proc.pid])
    finally:
        stop_proc(proc)
    return {"loop": loop, "frame_bytes": pad, "series": series}


async def section_two_nodes(stack: Stack, work: Path, redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    db_url = create_database()
    stack.callback(drop_database, db_url)
    blobs = work / "shared-chunks"
    blobs.mkdir()
    env = {"DATABASE_URL": db_url, "SATCHEL_REDIS_URL": redis_url, "SATCHEL_BLOB_URL": f"file://{blobs}",
           "SATCHEL_SECRET_KEY": secrets.token_urlsafe(32)}
    node1 = start_server(stack, work / "node1", {**env, "SATCHEL_NODE_ID": "node1"})
    node2 = start_server(stack, work / "node2", {**env, "SATCHEL_NODE_ID": "node2"})
    tokens = await account(node1.url)
    assert node1.proc and node2.proc
    series = await fanout_series(node1.url, node2.url, tokens, args.subscribers, args, "2 nodes",
                                 [node1.proc.pid, node2.proc.pid])
    node2.stop()
    node1.stop()
    return {"database": "postgresql (fresh database)", "bus": "redis (private redis-server)",
            "blobs": "shared file:// store", "series": series}


async def section_idle(stack: Stack, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    server = start_server(stack, work / "idle", {})
    assert server.proc
    pid = server.proc.pid
    tokens = await account(server.url)
    committer, _ = await open_session(server.url, tokens[0], subscribe=False)
    pool = Pool()
    out: dict[str, Any] = {"server_nofile": proc_nofile(pid), "client_nofile": proc_nofile(os.getpid())}
    try:
        await asyncio.sleep(2)
        base = rss_mib(pid)
        out["rss_base_mib"] = round(base, 1)
        client_base = rss_mib(os.getpid())
        steps = []
        for n in args.idle:
            opened = await pool.grow(server.url, tokens[1], n - len(pool.conns))
            await asyncio.sleep(3)
            rss = rss_mib(pid)
            async with httpx.AsyncClient() as http:
                t0 = time.perf_counter()
                health = await http.get(server.url + "/health", timeout=10)
                health_ms = (time.perf_counter() - t0) * 1000
            res = await run_commits(committer, pool, path=f"/idle-{n}", commits=args.idle_commits, warmup=1,
                                    pause=0.2, server_pids=[pid])
            step = {
                "connections": len(pool.conns), "connect_s": round(opened, 2), "rss_mib": round(rss, 1),
                "kib_per_conn": round((rss - base) * 1024 / len(pool.conns), 1),
                "server_fds": psutil.Process(pid).num_fds(),
                "health_status": health.status_code, "health_ms": round(health_ms, 2),
                "commit_reached_all": res["missing"] == 0 and res["samples"] > 0,
                "commit": res, "client_rss_mib": round(rss_mib(os.getpid()) - client_base, 1),
            }
            print(f"  idle N={n:>5}: server RSS {base:.1f} -> {rss:.1f} MiB ({step['kib_per_conn']} KiB/conn), "
                  f"/health {health.status_code} in {health_ms:.1f} ms, commit reached "
                  f"{res['samples'] // max(1, res['commits'])}/{len(pool.conns)} "
                  f"(p50 {res['p50_ms']:.1f} / p99 {res['p99_ms']:.1f} ms)", flush=True)
            steps.append(step)
        out["steps"] = steps
    finally:
        await pool.close()
        await committer.close()
        server.stop()
    return out


# ------------------------------------------------------------------ report

def fmt(x: Any, nd: int = 2) -> str:
    if isinstance(x, float):
        return "—" if math.isnan(x) else f"{x:.{nd}f}"
    return str(x)


def report(results: dict[str, Any]) -> str:
    lines = ["| scenario | N | p50 ms | p99 ms | max ms | all reached p50 / p99 ms | commit ack p50 ms "
             "| server CPU ms/commit | missing |", "|---|---|---|---|---|---|---|---|---|"]
    rows: list[tuple[str, dict[str, Any]]] = []
    if "single" in results:
        rows += [("Satchel, 1 node (SQLite, in-process bus)", r) for r in results["single"]["series"]]
    for fl in results.get("ws_floors", []):
        rows += [(f"floor: raw websockets broadcast ({fl['loop']})", r) for r in fl["series"]]
    if "two_nodes" in results:
        rows += [("Satchel, 2 nodes (PostgreSQL + Redis)", r) for r in results["two_nodes"]["series"]]
    for name, r in rows:
        lines.append(f"| {name} | {r['subscribers']} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | "
                     f"{fmt(r['all_p50_ms'])} / {fmt(r['all_p99_ms'])} | {fmt(r['ack_p50_ms'])} | "
                     f"{fmt(r['server_cpu_ms_per_commit'])} | {r['missing']} |")
    if "redis_floor" in results:
        r = results["redis_floor"]
        lines.append(f"| floor: raw Redis publish -> subscribe ({r['messages']} msgs) | 1 | {fmt(r['p50_ms'])} | "
                     f"{fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | | | | |")
    out = "\n".join(lines)
    if results.get("ratios"):
        out += "\n\n| ratio (Satchel / floor) | N | p50 | p99 | target |\n|---|---|---|---|---|\n"
        out += "\n".join(f"| {r['what']} | {r['n']} | {fmt(r['p50'])}x | {fmt(r['p99'])}x | {r.get('target', '')} |"
                         for r in results["ratios"])
    if "idle" in results:
        idle = results["idle"]
        out += (f"\n\nIdle connections, one server process (ulimit -n server {idle['server_nofile']}, "
                f"base RSS {idle['rss_base_mib']} MiB):\n\n| connections | server RSS MiB | KiB per conn | "
                "/health | commit reached all | p50 / p99 ms | connect s |\n|---|---|---|---|---|---|---|\n")
        out += "\n".join(
            f"| {s['connections']} | {s['rss_mib']} | {s['kib_per_conn']} | {s['health_status']} in "
            f"{s['health_ms']} ms | {'yes' if s['commit_reached_all'] else 'NO'} | "
            f"{fmt(s['commit']['p50_ms'], 1)} / {fmt(s['commit']['p99_ms'], 1)} | {s['connect_s']} |"
            for s in idle.get("steps", []))
    return out


def ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    floors = results.get("ws_floors", [])
    if not floors:
        return out
    for fl in floors:
        by_n = {r["subscribers"]: r for r in fl["series"]}
        for key, what in (("single", "1 node"), ("two_nodes", "2 nodes")):
            for r in results.get(key, {}).get("series", []):
                f = by_n.get(r["subscribers"])
                if not f:
                    continue
                row = {"what": f"{what} / websockets ({fl['loop']})", "n": r["subscribers"],
                       "p50": round(r["p50_ms"] / f["p50_ms"], 2), "p99": round(r["p99_ms"] / f["p99_ms"], 2)}
                if key == "single" and r["subscribers"] == 1000 and fl["loop"] == floors[0]["loop"]:
                    met = row["p99"] < TARGET_P99_VS_FLOOR
                    row["target"] = f"p99 < {TARGET_P99_VS_FLOOR}x: {'met' if met else 'MISSED'}"
                out.append(row)
    return out


# ------------------------------------------------------------------ main

async def run(args: argparse.Namespace, stack: Stack, work: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"load": {}}
    sections = set(args.sections)
    pad = args.floor_pad
    if "single" in sections:
        print("Satchel, one node (SQLite, in-process bus):", flush=True)
        with section(args, results, "single"):
            results["single"] = await section_single(stack, work, args)
        pad = max([r["frame_bytes"] for r in results["single"]["series"]] + [0]) or pad
    if "floors" in sections:
        print(f"Floors (raw websockets broadcast of a {pad}-byte frame; raw Redis pub/sub):", flush=True)
        results["ws_floors"] = []
        for loop in args.floor_loops:
            with section(args, results, f"ws_floor_{loop}"):
                results["ws_floors"].append(await section_ws_floor(stack, args, loop, pad))
    redis_url = start_redis(stack, work) if {"floors", "two"} & sections else ""
    if "floors" in sections:
        with section(args, results, "redis_floor"):
            results["redis_floor"] = await redis_floor(redis_url, args.redis_messages, 50, pad)
        r = results["redis_floor"]
        print(f"  redis pub/sub: p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms", flush=True)
    if "two" in sections:
        print("Satchel, two nodes (PostgreSQL + Redis; commit on node 1, subscribers on node 2):", flush=True)
        with section(args, results, "two_nodes"):
            results["two_nodes"] = await section_two_nodes(stack, work, redis_url, args)
    if "idle" in sections:
        print("Idle connections on one server process:", flush=True)
        with section(args, results, "idle"):
            results["idle"] = await section_idle(stack, work, args)
    results["load"]["end"] = [round(x, 2) for x in os.getloadavg()]
    results["ratios"] = ratios(results)
    return results


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subscribers", type=_ints, default=[1, 100, 1000])
    p.add_argument("--idle", type=_ints, default=[1000, 5000])
    p.add_argument("--commits", type=int, default=200, help="measured commits per N")
    p.add_argument("--warmup", type=int, default=10, help="unmeasured commits first, per N")
    p.add_argument("--pause", type=float, default=0.02, help="seconds between commits")
    p.add_argument("--idle-commits", type=int, default=10)
    p.add_argument("--redis-messages", type=int, default=1000)
    p.add_argument("--floor-loops", type=lambda s: s.split(","), default=["asyncio", "uvloop"],
                   help="event loops for the raw websockets floor server; the first is the target's floor")
    p.add_argument("--sections", type=lambda s: s.split(","), default=["single", "floors", "two", "idle"])
    p.add_argument("--no-wait-load", dest="wait_load", action="store_false")
    p.add_argument("--load-limit", type=float, default=1.0)
    p.add_argument("--load-patience", type=float, default=900)
    p.add_argument("--work-dir", default=None)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "realtime.json"))
    p.add_argument("--floor-server", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--floor-loop", default="asyncio", help=argparse.SUPPRESS)
    p.add_argument("--floor-pad", type=int, default=400, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.floor_server:
        floor_server_main(args.floor_server, args.floor_loop, args.floor_pad)
        return 0

    nofile = raise_nofile()  # children (servers) inherit it
    work = Path(tempfile.mkdtemp(prefix="satchel-rt-", dir=args.work_dir))
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    cmd = " ".join([".venv/bin/python -m bench.realtime", *(argv if argv is not None else sys.argv[1:])])
    print(f"work dir {work}; RLIMIT_NOFILE {nofile}; load average {os.getloadavg()}", flush=True)
    import uvloop

    try:
        with Stack() as stack:
            results = uvloop.run(run(args, stack, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {"command": cmd, "started": started, "machine": machine_facts(Path(tempfile.gettempdir())),
               "client": {"loop": "uvloop", "websockets": websockets.__version__, "nofile": list(nofile)},
               "settings": {"commits": args.commits, "warmup": args.warmup, "pause_s": args.pause,
                            "heartbeat": HEARTBEAT, "server_bin": str(VENV_BIN / "satchel")},
               **results}
    table = report(results)
    print("\n" + table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
