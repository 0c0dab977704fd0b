"""Co-editing benchmark in the browser: keystroke-to-remote-screen latency between two Chromium
contexts editing one file in the web app, on one node (SQLite) and across two nodes (PostgreSQL +
Redis; the writer on node 1, the reader on node 2).

    .venv/bin/python -m bench.coedit_web [--keys 300] [--sections single,two]
                                         [--out bench/results/coedit-web.json]

Both pages live in one browser process, so they share the wall clock: a keystroke's time is taken
in the writer's capture-phase ``keydown`` listener (``performance.timeOrigin + performance.now()``)
and its arrival in the reader's ``MutationObserver`` on the editor's DOM, i.e. when the character
is on the reader's screen as far as the DOM goes (the paint follows within a frame). The same
observer on the writer's page gives the local echo (keydown to the writer's own DOM: CodeMirror's
input path, no network), the floor every remote latency includes. Keys are
typed one at a time, ``--gap`` seconds apart, so latencies never overlap. Needs a built web app
(``./dev setup``) and Debian's Chromium.

Target (issue #8): p99 under 50 ms on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

from bench.common import REPO, pick_work_dir
from bench.realtime import Stack, start_redis, start_server
from tests.harness.postgres import create_database, drop_database
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, WebUser, upload_bytes

PASSWORD = "correct horse battery"
MARK = "z"  # the typed character: user names are "b" + hex, so a name label never holds one

WRITER_JS = """() => { window.__down = [];
  document.addEventListener('keydown', () => window.__down.push(performance.timeOrigin + performance.now()), true); }"""
READER_JS = """(mark) => { window.__seen = [];
  const content = document.querySelector('#editor').shadowRoot.querySelector('.cm-content');
  const count = () => [...content.querySelectorAll('.cm-line')].reduce((n, line) => {
    const copy = line.cloneNode(true);
    copy.querySelectorAll('.cm-ySelectionCaret').forEach((x) => x.remove());
    return n + copy.textContent.split(mark).length - 1; }, 0);
  let have = count();
  new MutationObserver(() => {
    const t = performance.timeOrigin + performance.now();
    const now = count();
    for (; have < now; have++) window.__seen.push(t);
  }).observe(content, { subtree: true, childList: true, characterData: true }); }"""


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def new_user(url: str) -> WebUser:
    user = WebUser("b" + secrets.token_hex(5), PASSWORD)
    httpx.post(url + "/api/v1/auth/signup", json={"name": user.name, "password": PASSWORD}, timeout=30
               ).raise_for_status()
    out = httpx.post(url + "/api/v1/auth/login", json={"name": user.name, "password": PASSWORD,
                                                       "device_name": "bench", "device_kind": "sdk"}, timeout=30)
    out.raise_for_status()
    user.token = out.json()["token"]
    return user


def open_editor(browser: Any, url: str, user: WebUser, path: str) -> Page:
    page: Page = browser.new_context().new_page()
    page.set_default_timeout(30_000)
    page.goto(url + "/#/files/")
    page.get_by_label("User name").fill(user.name)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#live-status.ok").wait_for()
    page.goto(url + "/#/edit" + path)
    page.locator(".cm-content").wait_for()
    page.locator("#doc-saved", has_text="Saved").wait_for()
    return page


def measure(browser: Any, url_writer: str, url_reader: str, keys: int, warmup: int, gap: float) -> dict[str, Any]:
    owner, friend = new_user(url_writer), new_user(url_writer)
    upload_bytes_to(url_writer, owner, "/Team/bench.md", b"# bench\n\n")
    members = [{"user": friend.name, "role": "editor"}]
    owner.api(At(url_writer), "POST", "/api/v1/shares", json={"path": "/Team", "members": members})  # type: ignore[arg-type]
    writer = open_editor(browser, url_writer, owner, "/Team/bench.md")
    reader = open_editor(browser, url_reader, friend, "/Team/bench.md")
    writer.locator(".cm-content").click()
    writer.keyboard.press("Control+End")
    time.sleep(0.5)
    # Listeners only now: the keys above must not count (the n-th keydown pairs with the n-th arrival).
    writer.evaluate(WRITER_JS)
    writer.evaluate(READER_JS, MARK)  # the writer's own screen: the floor (CodeMirror's input path)
    reader.evaluate(READER_JS, MARK)
    for _ in range(keys + warmup):
        writer.keyboard.press(MARK)
        time.sleep(gap)
    deadline = time.monotonic() + 10
    while reader.evaluate("() => window.__seen.length") < keys + warmup and time.monotonic() < deadline:
        time.sleep(0.1)
    down: list[float] = writer.evaluate("() => window.__down")
    seen: list[float] = reader.evaluate("() => window.__seen")
    local: list[float] = writer.evaluate("() => window.__seen")
    lat = [s - d for d, s in zip(down, seen, strict=False)][warmup:]
    echo = [s - d for d, s in zip(down, local, strict=False)][warmup:]
    writer.context.close()
    reader.context.close()
    return {"keys": keys, "arrived": len(seen) - warmup, "gap_s": gap, **stats(lat),
            "local_echo": stats(echo)}


def stats(lat: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(lat, 0.50), 2), "p90_ms": round(pct(lat, 0.90), 2),
            "p99_ms": round(pct(lat, 0.99), 2), "max_ms": round(max(lat), 2),
            "mean_ms": round(statistics.fmean(lat), 2)}


class At:
    """The one part of ServerProcess that WebUser.api and upload_bytes use: its URL."""

    def __init__(self, url: str) -> None:
        self.url = url


def upload_bytes_to(url: str, user: WebUser, path: str, data: bytes) -> None:
    upload_bytes(At(url), user, path, data)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "load_start": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}
    work = pick_work_dir(args.work_dir)
    with sync_playwright() as pw, Stack() as stack:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        stack.callback(browser.close)
        if "single" in args.sections:
            server = start_server(stack, work / "single", {})
            results["single"] = measure(browser, server.url, server.url, args.keys, args.warmup, args.gap)
            print("1 node (SQLite):", results["single"], flush=True)
            server.stop()
        if "two" in args.sections:
            redis_url = start_redis(stack, work)
            db_url = create_database()
            stack.callback(drop_database, db_url)
            blobs = work / "shared-chunks"
            blobs.mkdir()
            env = {"DATABASE_URL": db_url, "SATCHEL_REDIS_URL": redis_url, "SATCHEL_BLOB_URL": f"file://{blobs}",
                   "SATCHEL_SECRET_KEY": secrets.token_urlsafe(32)}
            node1 = start_server(stack, work / "node1", {**env, "SATCHEL_NODE_ID": "node1"})
            node2 = start_server(stack, work / "node2", {**env, "SATCHEL_NODE_ID": "node2"})
            results["two_nodes"] = measure(browser, node1.url, node2.url, args.keys, args.warmup, args.gap)
            print("2 nodes (PostgreSQL + Redis):", results["two_nodes"], flush=True)
    results["load_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", type=int, default=300, help="measured keystrokes")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured keystrokes first")
    p.add_argument("--gap", type=float, default=0.06, help="seconds between keystrokes")
    p.add_argument("--sections", type=lambda s: s.split(","), default=["single", "two"])
    p.add_argument("--work-dir", default=None)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "coedit-web.json"))
    args = p.parse_args(argv)
    results = run(args)
    out = Path(args.out)
    runs = json.loads(out.read_text())["runs"] if out.exists() else []
    out.write_text(json.dumps({"runs": [*runs, results]}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
