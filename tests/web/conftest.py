"""Fixtures for the web app's end-to-end tests: Debian's Chromium driven by Playwright (never a
downloaded browser), one browser per test session, against a real ``satchel serve`` process.

Every page records console errors and uncaught exceptions; a test fails if any appeared.
Screenshots go to test-artifacts/web/ (CI keeps that folder as an artifact).
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from server.core import chunking
from tests.conftest import PASSWORD, STACKS
from tests.harness.s3 import RcloneS3
from tests.harness.server import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = ROOT / "test-artifacts" / "web"
TIMEOUT_MS = 15_000
STORE_5XX = re.compile(r"Failed to load resource: the server responded with a status of 5\d\d")
log = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def web_server_for(start_server: Callable[..., ServerProcess]) -> Iterator[Callable[[str], ServerProcess]]:
    """One server per stack for the session, started when a test first asks for it.

    sqlite-local: the browser PUTs chunks to signed URLs of the server itself. pg-s3: the browser
    PUTs them straight to presigned URLs of a real S3 server (rclone), which must answer the
    browser's CORS preflights for the server's origin. rclone has no bucket CORS configuration
    (PutBucketCors), so it gets its own instance started with ``--allow-origin`` for a port picked
    beforehand; the server's start-up check (SATCHEL_S3_CORS_ORIGINS) must then find it allowed.
    """
    if not (ROOT / "client_js" / "dist" / "index.html").is_file():
        pytest.fail("the web app is not built: run ./dev setup (npm ci && npm run build in client_js/)")
    servers: dict[str, ServerProcess] = {}
    s3_servers: list[RcloneS3] = []

    def get(stack: str) -> ServerProcess:
        if stack not in servers:
            if stack == "pg-s3":
                port = free_port()
                origin = f"http://127.0.0.1:{port}"
                s3_servers.append(RcloneS3.start(allow_origin=origin))
                srv = start_server(stack, s3=s3_servers[-1], port=port, SATCHEL_S3_CORS_ORIGINS=origin)
                if "does not allow cross-origin requests" in srv.log():
                    pytest.fail(f"the server found CORS refused by the S3 server:\n{srv.log()}")
            else:
                srv = start_server(stack)
            servers[stack] = srv
        return servers[stack]

    yield get
    for s3 in s3_servers:
        s3.stop()  # before the servers stop (start_server's teardown is outer): they need no S3 to stop


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install --no-install-recommends chromium (./dev test does)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class WebUser:
    name: str
    password: str = PASSWORD
    token: str = ""

    def api(self, server: ServerProcess, method: str, path: str, **kw: object) -> httpx.Response:
        resp = httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {self.token}"},
                             timeout=30, **kw)  # type: ignore[arg-type]
        resp.raise_for_status()
        return resp


@dataclass
class Pages:
    """Opens pages (each in its own context, i.e. its own device) and checks them for errors."""

    browser: Browser
    server: ServerProcess
    contexts: list[BrowserContext] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)  # substrings of errors a test causes on purpose

    def allow(self, text: str) -> None:
        self.allowed.append(text)

    def _problem(self, text: str) -> None:
        if not any(a in text for a in self.allowed):
            self.problems.append(text)

    def _console(self, m: ConsoleMessage) -> None:
        if m.type != "error":
            return
        url = str(m.location.get("url", ""))
        # An object store's 5xx (S3's InternalError/SlowDown; rclone's PUT race, "Dir.Rename error")
        # is retried by the client library, like any S3 client does; what the test checks is the
        # outcome. The same status from Satchel's own origin is a failure.
        if STORE_5XX.match(m.text) and url and not url.startswith(self.server.url):
            log.warning("object store error, retried by the page: %s %s", m.text, url)
            return
        self._problem(f"console: {m.text}")

    def new_user(self) -> WebUser:
        user = WebUser("w" + secrets.token_hex(5))
        httpx.post(self.server.url + "/api/v1/auth/signup", json={"name": user.name, "password": user.password},
                   timeout=30).raise_for_status()
        out = httpx.post(self.server.url + "/api/v1/auth/login", json={
            "name": user.name, "password": user.password, "device_name": "pytest", "device_kind": "sdk"}, timeout=30)
        out.raise_for_status()
        user.token = out.json()["token"]
        return user

    def open(self, **context_options: object) -> Page:
        ctx = self.browser.new_context(accept_downloads=True, **context_options)  # type: ignore[arg-type]
        ctx.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(ctx)
        page = ctx.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda e: self._problem(f"page error: {e}"))
        return page

    def signed_in(self, user: WebUser, path: str = "/", **context_options: object) -> Page:
        """A page signed in through the sign-in form (a new device of *user*)."""
        page = self.open(**context_options)
        page.goto(self.server.url + "/#/files" + ("/" if path == "/" else path))
        page.get_by_label("User name").fill(user.name)
        page.get_by_label("Password").fill(user.password)
        page.get_by_role("button", name="Sign in").click()
        page.locator("#live-status.ok").wait_for()
        return page


@pytest.fixture
def web_stack(request: pytest.FixtureRequest) -> str:
    """The stack a web test runs on: sqlite-local, unless parametrised (indirect) with STACKS."""
    return str(getattr(request, "param", "sqlite-local"))


@pytest.fixture
def web_server(web_stack: str, web_server_for: Callable[[str], ServerProcess]) -> ServerProcess:
    return web_server_for(web_stack)


both_stacks = pytest.mark.parametrize("web_stack", STACKS, indirect=True)


@pytest.fixture
def pages(browser: Browser, web_server: ServerProcess) -> Iterator[Pages]:
    p = Pages(browser, web_server)
    try:
        yield p
    finally:
        for ctx in p.contexts:
            ctx.close()
    assert p.problems == [], "the page logged errors"


def upload_bytes(server: ServerProcess, user: WebUser, path: str, data: bytes, parent_rev: int | None = None
                 ) -> dict[str, object]:
    """Another device's upload, straight through the REST protocol (announce, PUT, commit)."""
    refs = chunking.chunk_bytes(data)
    session = user.api(server, "POST", "/api/v1/files", json={
        "path": path, "size": len(data), "parent_rev": parent_rev,
        "chunks": [[r.hex, r.size] for r in refs]}).json()
    by_hash = {r.hex: r for r in refs}
    for m in session["missing"]:
        r = by_hash[m["hash"]]
        httpx.put(m["url"], content=data[r.offset:r.offset + r.size], headers=m["headers"], timeout=30
                  ).raise_for_status()
    out: dict[str, object] = user.api(server, "POST", f"/api/v1/uploads/{session['upload_id']}/commit").json()
    return out


def screenshot(page: Page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def node_bin() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: apt-get install nodejs npm (./dev test does)")
    return node
