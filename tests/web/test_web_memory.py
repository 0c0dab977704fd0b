"""A large file through the browser with flat memory: the upload is scanned and sent from the File
on disk in slices (never read whole), and a download streams to disk instead of into the page.

Memory is Chromium's own: the private resident memory of every Chromium process this test session
started (browser, renderer with the page and its scan worker, network service), sampled while the
transfer runs, plus the page's JavaScript heap from the DevTools protocol. The file is pseudo-random, so no
chunk deduplicates away and every byte really travels.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import Page, expect

from server.core import chunking
from tests.conftest import random_file
from tests.web.conftest import Pages, WebUser
from tests.web.test_web import row

MiB = 1 << 20
GiB = 1 << 30
GROWTH_LIMIT = 128 * MiB  # "without the tab's memory growing": measured peaks are 20-30 MiB whatever the size


def chromium_processes() -> list[psutil.Process]:
    """Every Chromium process below this pytest process (not other people's browsers)."""
    out = []
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "chromium" in p.name() or "chrome" in p.name():
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def chromium_memory() -> dict[str, int]:
    """Private resident memory (USS) by Chromium process kind (browser, renderer, utility, ...).
    Private, because what a buffered file would take is private, while the share of pages that
    processes share (PSS) jumps in every process whenever one of them exits."""
    out: dict[str, int] = {}
    for p in chromium_processes():
        try:
            kind = next((a.split("=", 1)[1] for a in p.cmdline() if a.startswith("--type=")), "browser")
            out[kind] = out.get(kind, 0) + p.memory_full_info().uss
        except psutil.NoSuchProcess:  # a utility process may come and go
            pass
    return out




class MemoryWatch:
    """Samples Chromium's memory (a thread, so it also runs while Playwright blocks) and the page's JS
    heap (DevTools protocol, from the test's thread) until stopped."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Performance.enable")
        self.start = time.monotonic()
        self.base = chromium_memory()
        self.base_heap = self.heap()
        self.mem: list[dict[str, int]] = []
        self.times: list[float] = []
        self.states: list[tuple[float, str]] = []  # (time, what the page shows), for the report
        self.heaps: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            self.mem.append(chromium_memory())
            self.times.append(time.monotonic() - self.start)

    def heap(self) -> int:
        metrics = self.cdp.send("Performance.getMetrics")["metrics"]
        return int(next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize"))

    def until(self, done: Callable[[], bool], timeout: float, state: Callable[[], str] = lambda: "") -> None:
        deadline = time.monotonic() + timeout
        while not done():
            self.states.append((time.monotonic() - self.start, state()))
            if time.monotonic() > deadline:
                raise AssertionError(f"not finished after {timeout:.0f}s")
            self.heaps.append(self.heap())
            self.page.wait_for_timeout(500)

    def check(self, what: str, size: int) -> None:
        self._stop.set()
        self._thread.join()
        self.heaps.append(self.heap())
        elapsed = time.monotonic() - self.start
        base = sum(self.base.values())
        at = max(range(len(self.mem)), key=lambda i: sum(self.mem[i].values()), default=-1)
        peak = self.mem[at] if at >= 0 else self.base
        when = self.times[at] if at >= 0 else 0.0
        showing = next((s for t, s in reversed(self.states) if t <= when), "")
        growth = sum(peak.values()) - base
        by_kind = ", ".join(f"{k} {(v - self.base.get(k, 0)) / MiB:+.0f}" for k, v in sorted(peak.items()))
        heap_growth = max(self.heaps) - self.base_heap
        print(f"{what} {size / MiB:.0f} MiB in {elapsed:.1f}s ({size / MiB / elapsed:.0f} MiB/s): "
              f"{len(self.mem)} samples, Chromium USS {base / MiB:.0f} MiB, peak {growth / MiB:+.0f} MiB "
              f"({by_kind}) at {when:.0f}s {showing!r}; "
              f"JS heap {self.base_heap / MiB:.0f} MiB, peak {heap_growth / MiB:+.0f} MiB")
        if os.environ.get("SATCHEL_MEMORY_TRACE"):  # every sample, to see where memory goes
            for t, m in zip(self.times, self.mem, strict=True):
                print(f"  {t:6.1f}s", *(f"{k} {(v - self.base.get(k, 0)) / MiB:+.0f}" for k, v in sorted(m.items())))
        assert len(self.mem) >= 4, "too few samples to say anything about memory"
        assert growth < GROWTH_LIMIT, f"Chromium grew by {growth / MiB:.0f} MiB during the {what}"
        assert heap_growth < GROWTH_LIMIT // 2, f"the page's JS heap grew by {heap_growth / MiB:.0f} MiB"


def expected_content_hash(path: Path) -> str:
    return chunking.content_hash(r.digest for r in chunking.chunk_file(path))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(4 * MiB):
            h.update(piece)
    return h.hexdigest()


def upload_then_download(pages: Pages, user: WebUser, path: Path, timeout: float) -> None:
    page = pages.signed_in(user)
    size = path.stat().st_size
    page.wait_for_timeout(500)  # let the page settle before the baseline
    watch = MemoryWatch(page)
    page.locator("#upload-files").set_input_files(path)  # a path: Chromium reads the file from disk
    label = page.locator("#total-label")
    watch.until(lambda: "1 of 1 files" in (label.text_content() or "") or page.locator(".transfer.failed").count() > 0,
                timeout, lambda: page.locator(".transfer-state").text_content() or "")
    expect(page.locator(".transfer-state")).to_have_text("Done")
    watch.check("upload", size)
    stat = user.api(pages.server, "GET", "/api/v1/stat", params={"path": "/" + path.name}).json()
    assert stat["size"] == size
    assert stat["content_hash"] == expected_content_hash(path)  # same chunks, same bytes

    # The download goes to disk through the browser's download manager, not into the page.
    expect(row(page, path.name)).to_be_visible()
    watch = MemoryWatch(page)
    with page.expect_download(timeout=timeout * 1000) as info:
        page.get_by_role("button", name=f"Download {path.name}").click()
    # Blocks until the browser has the whole file (the sampling thread keeps going meanwhile).
    saved = Path(info.value.path())
    watch.check("download", size)
    assert saved.stat().st_size == size
    assert sha256_file(saved) == sha256_file(path)


def test_a_1_gib_file_uploads_and_downloads_with_flat_memory(pages: Pages, tmp_path: Path) -> None:
    big = random_file(tmp_path / "big.bin", GiB, seed=7)
    upload_then_download(pages, pages.new_user(), big, timeout=240)


@pytest.mark.soak
def test_a_10_gib_file_uploads_and_downloads_with_flat_memory(pages: Pages, tmp_path: Path) -> None:
    big = random_file(tmp_path / "huge.bin", 10 * GiB, seed=10)
    upload_then_download(pages, pages.new_user(), big, timeout=3600)
