"""Live co-editing in the web app (protocol.md, "Co-editing"): two and three browsers typing at once
into one file (random edits, at the same place too, with emoji and combining characters) end with
the same text, equal to the revision the server saves; each sees the others' cursors and names; a
viewer watches read-only; non-text files are refused; browsers on two server nodes (PostgreSQL +
Redis) converge. Screenshots go to test-artifacts/web/."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.harness.redis import RedisServer
from tests.harness.server import ServerProcess
from tests.web.conftest import Pages, WebUser, screenshot, upload_bytes
from tests.web.test_web import AUDIT

# Pieces typed by the random edits: ASCII, emoji (surrogate pairs, a ZWJ sequence, a skin tone),
# combining characters, CJK: Yjs counts UTF-16 code units, the server's Yrs counts UTF-8 bytes.
PIECES = ["a", "Hello ", "é", "e\u0301", "👍", "👩‍👩‍👧", "👋🏽", "n\u0303o", "日本", "\n", "x"]

# The editor's text (it lives in a shadow root), without the remote cursors' name labels drawn inside the lines.
READ_TEXT = """() => [...document.querySelector('#editor').shadowRoot.querySelectorAll('.cm-content .cm-line')]
.map((line) => {
  const copy = line.cloneNode(true);
  copy.querySelectorAll('.cm-ySelectionCaret, .cm-widgetBuffer').forEach((x) => x.remove());
  return copy.textContent;
}).join('\\n')"""


def edit_hash(path: str) -> str:
    return "#/edit" + quote(path)


def open_editor(pages: Pages, user: WebUser, path: str, server: ServerProcess | None = None) -> Page:
    """A new device of *user* signed in (on *server*, default the test's) with *path* open in the editor."""
    srv = server or pages.server
    page = pages.open()
    page.goto(srv.url + "/" + edit_hash(path))
    page.get_by_label("User name").fill(user.name)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#live-status.ok").wait_for()
    if "#/edit" not in page.url:  # signing in lands on the files view
        page.goto(srv.url + "/" + edit_hash(path))
    page.locator(".cm-content").wait_for()
    expect(page.locator("#doc-saved")).to_have_text("Saved")
    return page


def text_of(page: Page) -> str:
    out: str = page.evaluate(READ_TEXT)
    return out


def random_edit(page: Page, rng: random.Random) -> None:
    """One keyboard edit somewhere: type a piece, or delete a few characters."""
    page.keyboard.press(rng.choice(["Control+Home", "Control+End", "Control+Home", "End"]))
    for _ in range(rng.randrange(4)):
        page.keyboard.press("ArrowRight")
    if rng.random() < 0.25:
        for _ in range(rng.randrange(1, 3)):
            page.keyboard.press("Backspace")
    else:
        piece = rng.choice(PIECES)
        if piece.isascii() and piece != "\n":
            page.keyboard.type(piece)
        elif piece == "\n":
            page.keyboard.press("Enter")
        else:
            page.keyboard.insert_text(piece)


def converge(editors: list[Page], timeout: float = 30) -> str:
    """Wait until every editor shows the same text and says Saved; return that text. (Generous: the
    shared test machine runs at a load of 10+ on 2 cores; convergence itself takes milliseconds.)"""
    deadline = time.monotonic() + timeout
    while True:
        texts = [text_of(p) for p in editors]
        states = [p.locator("#doc-saved").text_content() for p in editors]
        if all(st == "Saved" for st in states) and len(set(texts)) == 1:
            return texts[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"editors did not converge: states={states} texts={texts!r}")
        time.sleep(0.2)


def server_text(server: ServerProcess, user: WebUser, path: str) -> str:
    """The file's current revision, downloaded through REST."""
    entry = user.api(server, "GET", "/api/v1/stat", params={"path": path}).json()
    resp = httpx.get(f"{server.url}/api/v1/files/{entry['id']}/content", follow_redirects=True, timeout=30,
                     headers={"Authorization": f"Bearer {user.token}"})
    resp.raise_for_status()
    return resp.content.decode("utf-8")


def wait_server_text(server: ServerProcess, user: WebUser, path: str, want: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while (got := server_text(server, user, path)) != want:
        if time.monotonic() > deadline:
            raise AssertionError(f"the server's revision differs:\n{got!r}\n!=\n{want!r}")
        time.sleep(0.3)


def shared_folder(server: ServerProcess, owner: WebUser, members: list[tuple[WebUser, str]],
                  path: str, content: bytes) -> None:
    """*owner* uploads *path* into /Team and shares /Team with *members* (user, role)."""
    upload_bytes(server, owner, "/Team" + path, content)
    owner.api(server, "POST", "/api/v1/shares", json={"path": "/Team", "members": [
        {"user": u.name, "role": role} for u, role in members]})


def type_randomly(editors: list[Page], seed: int, rounds: int) -> None:
    """Round-robin random edits, a few keystrokes each, so the browsers' edits cross in flight; every
    few rounds all of them type at the very start of the document at once."""
    rng = random.Random(seed)
    for p in editors:
        p.locator(".cm-content").click()
    for r in range(rounds):
        if r % 5 == 0:
            for p in editors:
                p.keyboard.press("Control+Home")
            for i, p in enumerate(editors):
                p.keyboard.insert_text(f"[{i}{PIECES[r % len(PIECES)]}]")
        for p in editors:
            random_edit(p, rng)


def test_two_editors_converge_and_see_each_other(pages: Pages) -> None:
    owner, friend = pages.new_user(), pages.new_user()
    shared_folder(pages.server, owner, [(friend, "editor")], "/notes.md", b"# Notes\nline one\n")
    a = open_editor(pages, owner, "/Team/notes.md")
    b = open_editor(pages, friend, "/Team/notes.md")
    # Each sees the other's name, in the list of people and on the cursor.
    expect(a.locator("#doc-people")).to_contain_text(friend.name)
    expect(b.locator("#doc-people")).to_contain_text(owner.name)
    a.locator(".cm-content").click()
    b.locator(".cm-content").click()
    expect(a.locator(".cm-ySelectionInfo")).to_have_text(friend.name)
    expect(b.locator(".cm-ySelectionInfo")).to_have_text(owner.name)
    expect(a.locator("#doc-readonly")).to_be_hidden()

    type_randomly([a, b], seed=int(os.environ.get("COEDIT_SEED", "1")), rounds=40)
    # Last, both type at the very start at once (no random edit after: it could split a marker).
    for p in (a, b):
        p.keyboard.press("Control+Home")
    for i, p in enumerate((a, b)):
        p.keyboard.insert_text(f"<end {i}>")
    text = converge([a, b])
    assert "<end 0>" in text and "<end 1>" in text
    wait_server_text(pages.server, owner, "/Team/notes.md", text)
    screenshot(a, "coedit-two-editors")


def test_three_editors_and_a_viewer(pages: Pages) -> None:
    owner, ed1, ed2, viewer = (pages.new_user() for _ in range(4))
    shared_folder(pages.server, owner, [(ed1, "editor"), (ed2, "editor"), (viewer, "viewer")], "/plan.txt",
                  "plan: ça va 👍\n".encode())
    editors = [open_editor(pages, u, "/Team/plan.txt") for u in (owner, ed1, ed2)]
    watcher = open_editor(pages, viewer, "/Team/plan.txt")
    expect(watcher.locator("#doc-readonly")).to_be_visible()
    expect(watcher.locator(".cm-content")).to_have_attribute("contenteditable", "false")
    for p in editors:
        p.locator(".cm-content").click()
    for i, p in enumerate(editors):
        others = {owner.name, ed1.name, ed2.name} - {[owner, ed1, ed2][i].name}
        for name in others:
            expect(p.locator(".cm-ySelectionInfo", has_text=name)).to_have_count(1)
        expect(p.locator("#doc-people")).to_contain_text(f"{viewer.name} (viewing)")

    type_randomly(editors, seed=int(os.environ.get("COEDIT_SEED", "3")), rounds=25)
    text = converge(editors)
    deadline = time.monotonic() + 5
    while text_of(watcher) != text:  # the viewer follows live
        assert time.monotonic() < deadline, f"the viewer shows {text_of(watcher)!r}, not {text!r}"
        time.sleep(0.1)

    # The viewer tries to type: nothing changes, anywhere.
    watcher.locator(".cm-content").click()
    watcher.keyboard.type("viewer was here")
    watcher.keyboard.insert_text("🚫")
    watcher.keyboard.press("Backspace")
    time.sleep(1)
    assert text_of(watcher) == text
    assert all(text_of(p) == text for p in editors)
    wait_server_text(pages.server, owner, "/Team/plan.txt", text)
    screenshot(editors[0], "coedit-three-editors")
    screenshot(watcher, "coedit-viewer")


def test_refuses_files_it_cannot_edit(pages: Pages) -> None:
    user = pages.new_user()
    upload_bytes(pages.server, user, "/photo.bin", b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00" * 64)
    page = pages.open()
    page.goto(pages.server.url + "/#/files/")
    page.get_by_label("User name").fill(user.name)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#live-status.ok").wait_for()
    page.goto(pages.server.url + "/" + edit_hash("/photo.bin"))
    expect(page.locator("#doc-message")).to_have_text("This file cannot be edited here: it is not a text file.")
    expect(page.locator(".cm-content")).to_have_count(0)
    page.goto(pages.server.url + "/" + edit_hash("/nothing.txt"))
    expect(page.locator("#doc-message")).to_have_text("This file does not exist, or you have no access to it.")


def test_size_limit_refuses_a_large_file_and_an_edit_past_it(
        browser: Browser, start_server: Callable[..., ServerProcess]) -> None:
    small = start_server("sqlite-local", SATCHEL_COEDIT_MAX_BYTES="2KiB")
    pages = Pages(browser, small)
    try:
        user = pages.new_user()
        upload_bytes(small, user, "/big.txt", b"words " * 400)  # 2,400 bytes
        upload_bytes(small, user, "/small.txt", b"short\n")
        page = open_editor(pages, user, "/small.txt", small)
        page.goto(small.url + "/" + edit_hash("/big.txt"))
        expect(page.locator("#doc-message")).to_have_text(
            "This file cannot be edited here: it is too large to edit live (the limit is 2.0 KB).")
        page.goto(small.url + "/" + edit_hash("/small.txt"))
        page.locator(".cm-content").click()
        page.keyboard.insert_text("x" * 3000)  # the server refuses the edit that passes the limit
        expect(page.locator("#doc-message")).to_contain_text("larger than live editing allows, so it was not saved")
        expect(page.locator(".cm-content")).to_have_attribute("contenteditable", "false")
        time.sleep(2.5)  # past the save delay: nothing of the refused edit is stored
        assert server_text(small, user, "/small.txt") == "short\n"
        screenshot(page, "coedit-too-large")
        page.get_by_role("button", name="Open again").click()
        expect(page.locator("#doc-saved")).to_have_text("Saved")
        assert text_of(page) == "short\n"  # the saved text, editable again
    finally:
        for ctx in pages.contexts:
            ctx.close()
    assert pages.problems == [], "the page logged errors"


def test_edit_from_the_listing_by_keyboard_on_a_phone(pages: Pages) -> None:
    user = pages.new_user()
    upload_bytes(pages.server, user, "/todo.txt", b"milk\n")
    page = pages.signed_in(user, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.get_by_role("button", name="Edit todo.txt").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("textbox", name="Contents of todo.txt")).to_be_visible()
    expect(page.locator("#doc-saved")).to_have_text("Saved")
    assert page.evaluate(AUDIT) == []  # one h1, a main landmark, labels, no duplicate ids
    page.get_by_role("textbox", name="Contents of todo.txt").focus()
    page.keyboard.press("Control+End")
    page.keyboard.type("eggs")
    expect(page.locator("#doc-saved")).to_have_text("Saved", timeout=10_000)
    wait_server_text(pages.server, user, "/todo.txt", "milk\neggs")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, f"the editor page is wider than the phone ({width}px)"
    screenshot(page, "coedit-phone")
    # Tab indents in the editor; Esc then Shift+Tab leaves it, to the link back to the folder.
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("link", name="← Back to folder")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="All files")).to_be_visible()


# ---- two server nodes (PostgreSQL + Redis)

SHARED = ("DATABASE_URL", "SATCHEL_BLOB_URL", "SATCHEL_S3_ENDPOINT", "SATCHEL_S3_ACCESS_KEY",
          "SATCHEL_S3_SECRET_KEY", "SATCHEL_SECRET_KEY", "SATCHEL_REDIS_URL", "SATCHEL_WS_HEARTBEAT")


@pytest.fixture(scope="module")
def web_nodes(start_server: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    redis = RedisServer().start()
    node1 = start_server("pg-s3", SATCHEL_REDIS_URL=redis.url, SATCHEL_NODE_ID="n1",
                         SATCHEL_SECRET_KEY="cluster-" + os.urandom(16).hex())
    env = {k: node1.env[k] for k in SHARED if k in node1.env} | {"SATCHEL_NODE_ID": "n2"}
    node2 = ServerProcess(tmp_path_factory.mktemp("web-node2"), env).start()
    try:
        yield node1, node2
    finally:
        node2.stop()
        redis.stop()


def test_browsers_on_two_nodes_converge(browser: Browser, web_nodes: tuple[ServerProcess, ServerProcess]) -> None:
    node1, node2 = web_nodes
    pages = Pages(browser, node1)
    try:
        owner, friend = pages.new_user(), pages.new_user()
        shared_folder(node1, owner, [(friend, "editor")], "/cluster.md", b"across nodes\n")
        a = open_editor(pages, owner, "/Team/cluster.md", node1)
        b = open_editor(pages, friend, "/Team/cluster.md", node2)
        a.locator(".cm-content").click()
        b.locator(".cm-content").click()
        expect(a.locator(".cm-ySelectionInfo")).to_have_text(friend.name)
        expect(b.locator(".cm-ySelectionInfo")).to_have_text(owner.name)
        type_randomly([a, b], seed=7, rounds=30)
        text = converge([a, b])
        wait_server_text(node2, friend, "/Team/cluster.md", text)
        wait_server_text(node1, owner, "/Team/cluster.md", text)
        screenshot(b, "coedit-two-nodes")
    finally:
        for ctx in pages.contexts:
            ctx.close()
    assert pages.problems == [], "the page logged errors"
