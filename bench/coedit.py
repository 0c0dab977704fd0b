"""Co-editing benchmark: keystroke-to-remote latency between two Python clients (pycrdt), on one
node and across two nodes (PostgreSQL + Redis), and documents per process with 100 editors each.

    .venv/bin/python -m bench.coedit [--keys 500] [--docs 1,2,3] [--processes 4] [--out bench/results/coedit.json]

Latency: client A inserts one character into its document (a pycrdt transaction, sent as one
``doc_update``); the clock stops when client B's document holds it (B applied the relayed update).
Keystrokes are 20 ms apart, one at a time. Both clients live in this process (one clock).

Load: D documents, each with 100 editors typing one character per second each (100 keys/s per
document, so each keystroke goes to 99 others: 9,900 frames/s per document). The 100 editors of a
document are light clients (their own pycrdt doc for making updates; incoming frames are counted,
not applied) spread over ``--processes`` crowd processes, plus one measuring pair as above in this
process; reported: keystroke p50/p99 of that pair under the load, and the server's CPU and RSS.
The client processes are on the same cores as the server: the numbers are for comparison within
one run, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from pycrdt import Doc, Text

from bench.common import machine_facts
from python_client.api import SatchelClient
from python_client.coedit import DocSession
from python_client.live import LiveSession
from server.ws.protocol import MsgType
from tests.coedit_helpers import put_text
from tests.harness import ws
from tests.harness.postgres import create_database, drop_database
from tests.harness.redis import RedisServer
from tests.harness.server import ServerProcess

PASSWORD = "bench-password-1"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def account(url: str, name: str | None = None) -> SatchelClient:
    """A logged-in client: a new user, or another device of *name*."""
    c = SatchelClient(url)
    if name is None:
        name = "b" + os.urandom(4).hex()
        await c.signup(name, PASSWORD)
    await c.login(name, PASSWORD, "bench-" + os.urandom(2).hex())
    c.user_name = name  # type: ignore[attr-defined]
    return c


async def keystrokes(a: DocSession, b: DocSession, keys: int, gap: float = 0.02) -> list[float]:
    """Milliseconds from A's insert to B holding it, per keystroke."""
    out = []
    for i in range(keys):
        want = len(b.value) + 1
        t0 = time.perf_counter()
        a.insert(len(a.value) if i % 2 else 0, "x")
        await b.wait_until(lambda want=want: len(b.value) >= want, 10)  # type: ignore[misc]
        out.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(gap)
    return out


async def pair_latency(url_a: str, url_b: str, tok_a: str, tok_b: str, path: str, keys: int) -> dict[str, Any]:
    async with LiveSession.connect(url_a, tok_a) as la, LiveSession.connect(url_b, tok_b) as lb:
        a, b = await DocSession.join(la, path), await DocSession.join(lb, path)
        await keystrokes(a, b, 20)  # warm-up
        lat = await keystrokes(a, b, keys)
    return {"keys": keys, "p50_ms": round(statistics.median(lat), 2), "p99_ms": round(pct(lat, 99), 2),
            "max_ms": round(max(lat), 2)}


class LightEditor:
    """An editor that types into its own pycrdt doc and only counts what it receives."""

    def __init__(self) -> None:
        self.doc: Any = Doc()
        self.text = self.doc.get("text", type=Text)
        self.received = 0
        self.sent = 0
        self.conn: Any = None
        self.handle = 0

    async def start(self, url: str, tok: str, path: str) -> None:
        self.conn = await ws.connect(url)
        await ws.hello(self.conn, tok)
        await ws.send(self.conn, MsgType.doc_join, 2, {"path": path})
        while True:
            frame = await ws.recv(self.conn)
            if frame.id == 2:
                assert frame.type is MsgType.doc_joined, frame.body
                self.handle = frame.body["doc"]
                self.doc.apply_update(frame.body["update"])
                break
        asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            async for _data in self.conn:  # (typing every second keeps the connection alive)
                self.received += 1
        except Exception:
            return

    async def type_loop(self, rate: float, stop: asyncio.Event, rnd: random.Random) -> None:
        await asyncio.sleep(rnd.random() / rate)
        rid = 100
        while not stop.is_set():
            before = self.doc.get_state()
            self.text.insert(0, "k")
            update = self.doc.get_update(before)
            rid += 1
            await ws.send(self.conn, MsgType.doc_update, rid, {"doc": self.handle, "update": update})
            self.sent += 1
            await asyncio.sleep(1 / rate)


async def crowd_worker(url: str, tok: str, paths: list[str], per_doc: int, seed: int) -> None:
    """A crowd process (``--crowd``): *per_doc* light editors on each of *paths*, typing once a
    second each. Talks to the parent on stdin/stdout: prints ``ready`` once every editor joined;
    on each ``mark`` line prints its counters as JSON; ends on ``stop`` (or end of input)."""
    crowd: list[LightEditor] = []
    for p in paths:
        for _ in range(per_doc):
            e = LightEditor()
            await e.start(url, tok, p)
            crowd.append(e)
    stop = asyncio.Event()
    rnd = random.Random(seed)
    typers = [asyncio.create_task(e.type_loop(1.0, stop, rnd)) for e in crowd]
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb"))
    while (await reader.readline()).strip() == b"mark":
        print(json.dumps({"sent": sum(e.sent for e in crowd), "received": sum(e.received for e in crowd),
                          "at": time.time()}), flush=True)
    stop.set()
    await asyncio.gather(*typers, return_exceptions=True)
    for e in crowd:
        await e.conn.close()


class Crowd:
    """Crowd worker processes, so the load is not limited by one Python client process."""

    def __init__(self, procs: list[asyncio.subprocess.Process]) -> None:
        self.procs = procs

    @classmethod
    async def start(cls, url: str, tok: str, paths: list[str], editors: int, processes: int) -> Crowd:
        procs = []
        for i in range(processes):
            # Editor j of each document goes to process j % processes: every process holds a
            # share of every document, as clients spread over machines would.
            share = len(range(i, editors, processes))
            if share == 0:
                continue
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.coedit", "--crowd", json.dumps([url, tok, paths, share, i]),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE))
        crowd = cls(procs)
        for proc in procs:
            assert proc.stdout is not None
            async with asyncio.timeout(120):
                line = await proc.stdout.readline()
            if line.strip() != b"ready":
                await crowd.stop()
                raise RuntimeError(f"a crowd process did not start: {line!r}")
        return crowd

    async def mark(self) -> tuple[int, int]:
        sent = received = 0
        for proc in self.procs:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(b"mark\n")
            await proc.stdin.drain()
            counts = json.loads(await proc.stdout.readline())
            sent, received = sent + counts["sent"], received + counts["received"]
        return sent, received

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.write(b"stop\n")
                    proc.stdin.close()
        for proc in self.procs:
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def load(url: str, docs: int, editors: int, keys: int, server_pid: int, processes: int) -> dict[str, Any]:
    owner = await account(url)
    tok = owner.token
    assert tok is not None
    paths = [f"/load-{i}.txt" for i in range(docs)]
    for p in paths:
        await put_text(owner, p, "start\n")
    crowd = await Crowd.start(url, tok, paths, editors - 2, processes)  # the measuring pair makes up the hundred
    try:
        proc = psutil.Process(server_pid)
        await asyncio.sleep(3)
        cpu0, t0 = proc.cpu_times(), time.perf_counter()
        sent0, recv0 = await crowd.mark()
        result = await pair_latency(url, url, tok, tok, paths[0], keys)
        sent1, recv1 = await crowd.mark()
        cpu1, t1 = proc.cpu_times(), time.perf_counter()
        rss = proc.memory_info().rss
    finally:
        await crowd.stop()
        await owner.aclose()
    return {"docs": docs, "editors_per_doc": editors, "client_processes": processes, **result,
            "keys_per_s": round((sent1 - sent0) / (t1 - t0)), "frames_out_per_s": round((recv1 - recv0) / (t1 - t0)),
            "server_cpu": round(((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (t1 - t0), 2),
            "server_rss_mib": round(rss / 2**20, 1)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=500)
    ap.add_argument("--docs", default="1,2,3", help="documents with 100 editors each, per run")
    ap.add_argument("--editors", type=int, default=100)
    ap.add_argument("--processes", type=int, default=4, help="crowd client processes")
    ap.add_argument("--out", default="bench/results/coedit.json")
    ap.add_argument("--crowd", help=argparse.SUPPRESS)  # internal: run as a crowd worker process
    args = ap.parse_args()
    if args.crowd:
        url, tok, paths, per_doc, seed = json.loads(args.crowd)
        await crowd_worker(url, tok, paths, per_doc, seed)
        return
    work = Path(tempfile.mkdtemp(prefix="coedit-bench-"))
    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_facts(work)}

    one = ServerProcess(work / "one", {"SATCHEL_LOG_LEVEL": "warning"}).start()
    try:
        c = await account(one.url)
        await put_text(c, "/bench.txt", "hello\n")
        assert c.token is not None
        results["one_node"] = await pair_latency(one.url, one.url, c.token, c.token, "/bench.txt", args.keys)
        print("1 node:", results["one_node"], flush=True)
        await c.aclose()
        results["load"] = []
        for d in [int(x) for x in args.docs.split(",") if x]:
            assert one.proc is not None
            try:
                r = await load(one.url, d, args.editors, min(args.keys, 300), one.proc.pid, args.processes)
            except (TimeoutError, OSError, RuntimeError) as exc:
                r = {"docs": d, "editors_per_doc": args.editors, "failed": f"{type(exc).__name__}: {exc}"}
            print("load:", r, flush=True)
            results["load"].append(r)
    finally:
        one.stop()

    redis = RedisServer().start()
    db = create_database()
    env = {"DATABASE_URL": db, "SATCHEL_REDIS_URL": redis.url, "SATCHEL_BLOB_URL": f"file://{work}/shared-chunks",
           "SATCHEL_SECRET_KEY": "bench-" + os.urandom(8).hex(), "SATCHEL_LOG_LEVEL": "warning"}
    n1 = ServerProcess(work / "n1", env | {"SATCHEL_NODE_ID": "n1"}).start()
    n2 = ServerProcess(work / "n2", env | {"SATCHEL_NODE_ID": "n2"}).start()
    try:
        c = await account(n1.url)
        await put_text(c, "/bench.txt", "hello\n")
        c2 = await account(n2.url, c.user_name)  # type: ignore[attr-defined]
        assert c.token is not None and c2.token is not None
        results["two_nodes"] = await pair_latency(n1.url, n2.url, c.token, c2.token, "/bench.txt", args.keys)
        print("2 nodes:", results["two_nodes"], flush=True)
        await c.aclose()
        await c2.aclose()
    finally:
        n2.stop()
        n1.stop()
        redis.stop()
        drop_database(db)
    out = Path(args.out)
    runs = json.loads(out.read_text()) if out.exists() else []
    runs.append(results)
    out.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
