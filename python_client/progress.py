"""Progress bars (rich) for transfers that take more than a second; silent when not on a terminal."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

SHOW_AFTER = 1.0


class TransferBar:
    """``factory(total_bytes, n_chunks) -> advance(n)``; draws only once a transfer passes 1 s."""

    def __init__(self, label: str, enabled: bool | None = None) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.started = time.monotonic()
        self.total = 0
        self.done = 0

    def __call__(self, total: int, _chunks: int):  # type: ignore[no-untyped-def]
        self.total, self.started = total, time.monotonic()
        return self.advance

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.progress is None:
            if time.monotonic() - self.started < SHOW_AFTER:
                return
            # rich loads in ~30 ms: only once a bar is drawn, not at every command's start-up
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                TimeRemainingColumn(), transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=self.total, completed=self.done)
            return
        assert self.task is not None
        self.progress.update(self.task, completed=self.done)

    def __enter__(self) -> TransferBar:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.progress is not None:
            self.progress.stop()
