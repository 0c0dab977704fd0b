"""The web app end to end: Debian's Chromium (Playwright) against a real server process.

Each test signs in through the form, works only with what a person can see and press, and fails
on any console error. Screenshots of the main views land in test-artifacts/web/.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import struct
import time
import zlib
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.harness.server import ServerProcess
from tests.web.conftest import Pages, WebUser, both_stacks, screenshot, upload_bytes


def png(width: int = 4, height: int = 3) -> bytes:
    """A small valid PNG (red pixels), built by hand."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def pdf() -> bytes:
    """A one-page PDF with a correct cross-reference table."""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def row(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f"tbody tr[data-name='{name}']")


def wait_uploads_done(page: Page, count: int) -> None:
    expect(page.locator("#total-label")).to_contain_text(f"{count} of {count} files", timeout=30_000)
    expect(page.locator("#total-label")).to_contain_text("100%")
    bars = page.locator(".transfer progress")
    for i in range(bars.count()):
        assert bars.nth(i).evaluate("b => b.value === b.max"), f"progress bar {i} did not reach 100%"
    assert page.locator("#total-progress").evaluate("b => b.value === b.max")


def chunk_put(url: str) -> bool:
    """A request sending chunk bytes: a pack or a chunk to the server's signed URL, or a chunk to the
    S3 server's presigned staging URL."""
    return any(p in url for p in ("/api/v1/blobs/pack/", "/api/v1/blobs/up/", "/staging/"))


def names_on_server(server: ServerProcess, user: WebUser, path: str = "/") -> list[str]:
    return sorted(e["name"] for e in user.api(server, "GET", "/api/v1/list", params={"path": path}).json()["entries"])


def test_built_app_is_served_with_caching_headers(web_server: ServerProcess) -> None:
    page = httpx.get(web_server.url + "/", timeout=10)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
    assert len(assets) == 2 and all(re.search(r"-[A-Z0-9]{8}\.(js|css)$", a) for a in assets), assets
    for a in assets:
        resp = httpx.get(web_server.url + a, timeout=10)
        assert resp.status_code == 200
        assert resp.headers["cache-control"] == "public, max-age=31536000, immutable"
    # Always the whole file, whatever the Range header says (never a plain-text error).
    for rng in ("bytes=0-10", "bytes=5-1", "bytes=99999999-", "pages=1"):
        whole = httpx.get(web_server.url + assets[0], headers={"Range": rng}, timeout=10)
        assert (whole.status_code, len(whole.content)) == (200, int(whole.headers["content-length"])), rng
        assert "accept-ranges" not in whole.headers
    missing = httpx.get(web_server.url + "/assets/app-NOPE.js", timeout=10)
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert httpx.get(web_server.url + "/assets/..%2Findex.html", timeout=10).status_code == 404


@both_stacks
def test_sign_in_upload_download_and_another_device_sees_it_live(pages: Pages, tmp_path: Path) -> None:
    user = pages.new_user()
    watcher = pages.signed_in(user)  # another device, already looking at the folder
    watcher.evaluate("window.__sameDocument = true")

    page = pages.open()
    page.goto(pages.server.url + "/")
    expect(page.get_by_role("heading", name="Sign in to Satchel")).to_be_visible()
    page.get_by_label("User name").fill(user.name)
    page.get_by_label("Password").fill(user.password)
    screenshot(page, "signin")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="All files")).to_be_visible()
    expect(page.locator("#live-status")).to_have_text("Live")

    blob = secrets.token_bytes(700_000)
    files = [{"name": "data.bin", "mimeType": "application/octet-stream", "buffer": blob},
             {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"first line\nsecond line\n"},
             {"name": "empty.txt", "mimeType": "text/plain", "buffer": b""}]
    page.locator("#upload-files").set_input_files(files)  # type: ignore[arg-type]
    wait_uploads_done(page, 3)
    done = time.monotonic()
    for f in files:
        expect(row(page, str(f["name"]))).to_be_visible()
    screenshot(page, "files")

    # The other device's listing updated in place, without a reload, within about a second.
    for f in files:
        expect(row(watcher, str(f["name"]))).to_be_visible(timeout=5_000)
    assert time.monotonic() - done < 2.0
    assert watcher.evaluate("window.__sameDocument") is True
    expect(row(watcher, "data.bin").locator(".col-size")).to_have_text("700 KB")
    assert names_on_server(pages.server, user) == ["data.bin", "empty.txt", "notes.txt"]

    # Download through Range and compare the bytes.
    with page.expect_download() as info:
        page.get_by_role("button", name="Download data.bin").click()
    # The browser's download manager fetched a signed URL (streamed to disk), not a blob: URL.
    assert re.search(r"/api/v1/files/\d+/content\?.*sig=", info.value.url), info.value.url
    saved = tmp_path / "data.bin"
    info.value.save_as(saved)
    assert saved.read_bytes() == blob
    with page.expect_download() as info:
        page.get_by_role("button", name="Download empty.txt").click()
    info.value.save_as(tmp_path / "empty.txt")
    assert (tmp_path / "empty.txt").read_bytes() == b""


@both_stacks
def test_drag_and_drop_files_and_upload_a_folder(pages: Pages, tmp_path: Path) -> None:
    user = pages.new_user()
    page = pages.signed_in(user)
    page.evaluate("""() => {
        const dt = new DataTransfer();
        dt.items.add(new File(["dropped one"], "drop1.txt", {type: "text/plain"}));
        dt.items.add(new File([new Uint8Array(300000).fill(7)], "drop2.bin"));
        const zone = document.getElementById("drop-zone");
        for (const type of ["dragenter", "dragover", "drop"]) {
            zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
        }
    }""")
    wait_uploads_done(page, 2)
    expect(row(page, "drop1.txt")).to_be_visible()
    expect(row(page, "drop2.bin")).to_be_visible()

    album = tmp_path / "album"
    (album / "2024").mkdir(parents=True)
    (album / "cover.png").write_bytes(png())
    (album / "2024" / "trip.txt").write_text("a trip\n")
    page.get_by_role("button", name="Clear finished").click()
    page.locator("#upload-folder").set_input_files(album)
    wait_uploads_done(page, 2)
    expect(row(page, "album")).to_be_visible()
    assert names_on_server(pages.server, user, "/album") == ["2024", "cover.png"]
    assert names_on_server(pages.server, user, "/album/2024") == ["trip.txt"]

    row(page, "album").get_by_role("link", name="album").click()
    expect(page.get_by_role("heading", name="album")).to_be_visible()
    crumbs = page.get_by_role("navigation", name="Folder path")
    expect(crumbs.get_by_role("link")).to_have_text(["All files", "album"])
    expect(crumbs.get_by_role("link", name="album")).to_have_attribute("aria-current", "page")
    expect(row(page, "cover.png").get_by_role("img")).to_have_attribute("aria-label", "Image")
    expect(row(page, "2024").get_by_role("img")).to_have_attribute("aria-label", "Folder")
    crumbs.get_by_role("link", name="All files").click()
    expect(row(page, "drop1.txt")).to_be_visible()


@both_stacks
def test_an_upload_resumes_by_itself_when_the_network_fails(pages: Pages) -> None:
    pages.allow("net::ERR_FAILED")  # the failures this test makes on purpose
    user = pages.new_user()
    page = pages.signed_in(user)
    failed = []

    def flaky(route):  # type: ignore[no-untyped-def]
        if len(failed) < 3:
            failed.append(route.request.url)
            route.abort("failed")
        else:
            route.continue_()

    page.route(chunk_put, flaky)
    data = secrets.token_bytes(600_000)
    page.locator("#upload-files").set_input_files([{"name": "flaky.bin", "mimeType": "application/octet-stream",
                                                     "buffer": data}])
    wait_uploads_done(page, 1)
    assert len(failed) == 3
    stat = user.api(pages.server, "GET", "/api/v1/stat", params={"path": "/flaky.bin"}).json()
    assert stat["size"] == len(data)


def tab_to(page: Page, name: str, limit: int = 60) -> None:
    """Press Tab until the focused element's accessible name is *name* (keyboard-only use)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        label = page.evaluate("() => { const e = document.activeElement;"
                              " return e.getAttribute('aria-label') || e.textContent.trim(); }")
        if label == name:
            return
    raise AssertionError(f"could not Tab to {name!r}")


def test_keyboard_only_new_folder_rename_move_delete_and_sort(pages: Pages) -> None:
    user = pages.new_user()
    upload_bytes(pages.server, user, "/b-small.txt", b"x" * 10)
    upload_bytes(pages.server, user, "/a-large.bin", b"y" * 300_000)
    page = pages.signed_in(user)
    expect(row(page, "a-large.bin")).to_be_visible()

    tab_to(page, "New folder")
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog", name="New folder")).to_be_visible()
    page.keyboard.type("Projects")
    page.keyboard.press("Enter")
    expect(row(page, "Projects")).to_be_visible()

    tab_to(page, "Rename Projects")
    page.keyboard.press("Enter")
    page.keyboard.press("Control+A")
    page.keyboard.type("Work")
    page.keyboard.press("Enter")
    expect(row(page, "Work")).to_be_visible()
    expect(row(page, "Projects")).to_have_count(0)

    tab_to(page, "Move b-small.txt")
    page.keyboard.press("Enter")
    page.keyboard.press("Control+A")
    page.keyboard.type("/Work")
    page.keyboard.press("Enter")
    expect(row(page, "b-small.txt")).to_have_count(0)
    assert names_on_server(pages.server, user, "/Work") == ["b-small.txt"]

    # Sorting: folders stay first; files by size, then reversed.
    upload_bytes(pages.server, user, "/c-medium.bin", b"z" * 50_000)
    expect(row(page, "c-medium.bin")).to_be_visible()
    page.get_by_role("button", name="Size").click()
    expect(page.get_by_role("columnheader", name="Size")).to_have_attribute("aria-sort", "ascending")
    assert page.locator("tbody tr").evaluate_all("rs => rs.map(r => r.dataset.name)") == [
        "Work", "c-medium.bin", "a-large.bin"]
    page.keyboard.press("Enter")  # the sort button keeps focus: Enter flips the order
    expect(page.get_by_role("columnheader", name="Size")).to_have_attribute("aria-sort", "descending")
    assert page.locator("tbody tr").evaluate_all("rs => rs.map(r => r.dataset.name)") == [
        "Work", "a-large.bin", "c-medium.bin"]

    tab_to(page, "Delete c-medium.bin")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Delete c-medium.bin?")
    expect(dialog).to_be_visible()
    screenshot(page, "delete-dialog")
    page.keyboard.press("Tab")  # from Cancel (focused first) to Delete
    page.keyboard.press("Enter")
    expect(row(page, "c-medium.bin")).to_have_count(0)
    assert names_on_server(pages.server, user) == ["Work", "a-large.bin"]


def test_previews_of_image_pdf_and_text_and_a_stale_badge(pages: Pages) -> None:
    user = pages.new_user()
    upload_bytes(pages.server, user, "/pic.png", png())
    upload_bytes(pages.server, user, "/doc.pdf", pdf())
    text = upload_bytes(pages.server, user, "/readme.md", "# Hello\nSatchel ✓\n".encode())
    page = pages.signed_in(user)

    page.get_by_role("button", name="Preview pic.png").click()
    image = page.get_by_role("dialog", name="pic.png").get_by_role("img", name="pic.png")
    expect(image).to_be_visible()
    page.wait_for_function("() => document.querySelector('.preview-image')?.naturalWidth === 4")
    screenshot(page, "preview-image")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.get_by_role("button", name="Preview pic.png")).to_be_focused()

    page.get_by_role("button", name="Preview doc.pdf").click()
    frame = page.locator("iframe.preview-pdf")
    expect(frame).to_have_attribute("src", re.compile(r"^blob:"))
    assert frame.evaluate("f => fetch(f.src).then(r => r.blob()).then(b => b.type + ' ' + b.size)") == \
        f"application/pdf {len(pdf())}"
    page.keyboard.press("Escape")

    page.get_by_role("button", name="Preview readme.md").click()
    dialog = page.get_by_role("dialog", name="readme.md")
    expect(dialog.locator("pre")).to_have_text("# Hello\nSatchel ✓\n")
    stale = dialog.get_by_text("Newer version available")
    expect(stale).to_be_hidden()
    second = upload_bytes(pages.server, user, "/readme.md", b"# Hello again\n", parent_rev=int(text["rev"]))  # type: ignore[call-overload]
    expect(stale).to_be_visible(timeout=5_000)
    screenshot(page, "preview-text-stale")
    page.keyboard.press("Escape")
    expect(row(page, "readme.md").locator(".col-size")).to_have_text("14 B")

    # In the listing, a file whose new revision was announced is marked stale until its entry is in.
    held = []
    page.route("**/api/v1/files/*", lambda route: held.append(route))
    upload_bytes(pages.server, user, "/readme.md", b"# Third\n", parent_rev=int(second["rev"]))  # type: ignore[call-overload]
    badge = row(page, "readme.md").get_by_text("stale")
    expect(badge).to_be_visible(timeout=5_000)
    screenshot(page, "files-stale")
    for route in held:
        route.continue_()
    page.unroute("**/api/v1/files/*")
    expect(badge).to_have_count(0)
    expect(row(page, "readme.md").locator(".col-size")).to_have_text("8 B")


def test_presence_avatars_appear_and_disappear(pages: Pages) -> None:
    user = pages.new_user()
    page = pages.signed_in(user)
    expect(page.locator(".presence .avatar")).to_have_count(0)
    other = pages.signed_in(user)
    avatar = page.locator(".presence .avatar")
    expect(avatar).to_have_count(1)
    expect(avatar).to_have_attribute("title", re.compile(f"^{user.name} on "))
    expect(other.locator(".presence .avatar")).to_have_count(1)
    screenshot(page, "presence")
    other.context.close()
    expect(avatar).to_have_count(0, timeout=10_000)


def test_phone_sized_layout(pages: Pages) -> None:
    user = pages.new_user()
    upload_bytes(pages.server, user, "/a rather long file name for a small screen.txt", b"hello")
    page = pages.signed_in(user, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    expect(row(page, "a rather long file name for a small screen.txt")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "sideways scrolling"
    expect(page.get_by_role("columnheader", name="Size")).to_be_hidden()
    expect(page.get_by_role("button", name="Upload files")).to_be_visible()
    screenshot(page, "phone")


AUDIT = """() => {
    const problems = [];
    const name = (e) => (e.getAttribute('aria-label') || e.textContent || e.getAttribute('title') || '').trim();
    for (const e of document.querySelectorAll('button, a[href]')) if (!name(e)) problems.push('unnamed ' + e.outerHTML);
    for (const e of document.querySelectorAll('input:not([type=file])')) {
        if (!(e.labels && e.labels.length) && !e.getAttribute('aria-label')) problems.push('unlabelled ' + e.outerHTML);
    }
    for (const e of document.querySelectorAll('img')) {
        if (!e.hasAttribute('alt')) problems.push('no alt ' + e.outerHTML);
    }
    if (document.querySelectorAll('h1').length !== 1) problems.push('expected one h1');
    if (!document.querySelector('main')) problems.push('no main landmark');
    const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
    for (const id of ids) if (ids.indexOf(id) !== ids.lastIndexOf(id)) problems.push('duplicate id ' + id);
    return [...new Set(problems)];
}"""


def test_accessible_markup(pages: Pages) -> None:
    page = pages.open()
    page.goto(pages.server.url + "/")
    expect(page.get_by_label("User name")).to_be_focused()
    assert page.evaluate(AUDIT) == []
    user = pages.new_user()
    upload_bytes(pages.server, user, "/x.txt", b"x")
    page = pages.signed_in(user)
    expect(row(page, "x.txt")).to_be_visible()
    assert page.evaluate(AUDIT) == []
    assert page.get_by_role("table", name="All files").is_visible()


def test_cancel_an_upload(pages: Pages) -> None:
    pages.allow("net::ERR_FAILED")
    user = pages.new_user()
    page = pages.signed_in(user)
    held = []
    page.route(chunk_put, lambda route: held.append(route))  # chunk PUTs never answer
    page.locator("#upload-files").set_input_files([{"name": "big.bin", "mimeType": "application/octet-stream",
                                                     "buffer": secrets.token_bytes(400_000)}])
    expect(page.locator(".transfer-state")).to_have_text(re.compile(r"^\d+%$"))  # sending, not scanning
    with page.expect_request(lambda r: r.method == "DELETE" and "/api/v1/uploads/" in r.url):
        page.get_by_role("button", name="Cancel upload of /big.bin").click()
    expect(page.locator(".transfer-state")).to_have_text("Cancelled")
    expect(page.get_by_role("button", name="Cancel upload of /big.bin")).to_be_hidden()
    for route in held:
        with contextlib.suppress(Exception):  # the browser cancelled that request already
            route.abort()
    expect(row(page, "big.bin")).to_have_count(0)
    assert names_on_server(pages.server, user) == []
