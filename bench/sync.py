"""Sync benchmark: two `satchel sync` daemons (devices A and B, one account) on loopback, against
rsync doing the same updates through an rsync daemon.

    .venv/bin/python -m bench.sync [--size-mib 256] [--files 1000] [--only small,big,edit]
                                   [--no-syncthing] [--out bench/results/sync.json]

Measured, each from the moment the change is complete on A's disk (an atomic rename into A's
folder) until B's folder holds the new content (polled every 5 ms, content verified after):

1. a 1-byte insertion in the middle of a SIZE file: wall time, and bytes A sent (from A's log:
   chunk bytes PUT), beside `rsync --stats` pushing the same edit (bytes sent, wall time);
2. initial sync from A to B of FILES files of 4 KiB, and of one SIZE file, beside rsync pushing
   the same to its daemon (one hop, A -> server; Satchel's figure is two hops, A -> server -> B).

Syncthing (the Debian package, ``bench/syncthing.py``): two headless instances on loopback run
the same workloads after Satchel's (not beside them: 2 cores), with A asked to rescan right after
each change so its watcher delay is not counted. ``--no-syncthing`` skips them.

Targets (issue 4): the 1-byte edit sends under 2x rsync's bytes and arrives within 1 s; initial
sync no slower than Syncthing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import syncthing
from bench.common import (
    VENV_BIN,
    MiB,
    RsyncDaemon,
    SatchelServer,
    file_digest,
    machine_facts,
    make_random_file,
    pick_work_dir,
    run_timed,
)
from tests.harness.server import terminate

PASSWORD = "benchmark password"


class Device:
    def __init__(self, work: Path, name: str) -> None:
        self.name = name
        self.config = work / f"config-{name}"
        self.folder = work / f"Satchel-{name}"
        self.env = {**os.environ, "SATCHEL_CONFIG_DIR": str(self.config)}
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, stdin: str | None = None) -> None:
        subprocess.run([str(VENV_BIN / "satchel"), *args], env=self.env, input=stdin, text=True, check=True,
                       capture_output=True)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([str(VENV_BIN / "satchel"), "sync", str(self.folder), "-q"], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        terminate(self.proc)

    def log(self) -> str:
        try:
            return (self.folder / ".satchel" / "sync.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""


def wait_until(check: Any, timeout: float = 300) -> float:
    t0 = time.perf_counter()
    while not check():
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError("timed out")
        time.sleep(0.005)
    return time.perf_counter() - t0


def _size_is(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def _sent_for(log: str, path: str) -> int:
    found = re.findall(rf"uploaded {re.escape(path)}: \d+ bytes, (\d+) sent", log)
    return int(found[-1]) if found else -1


def rsync_push(src: Path, daemon: RsyncDaemon, dest: str = "") -> dict[str, Any]:
    r = run_timed(["rsync", "-a", "--stats", str(src), daemon.url + dest])
    sent = int(re.search(r"Total bytes sent: ([\d,]+)", r.stdout).group(1).replace(",", ""))  # type: ignore[union-attr]
    received = int(re.search(r"Total bytes received: ([\d,]+)", r.stdout).group(1).replace(",", ""))  # type: ignore[union-attr]
    return {"seconds": r.seconds, "bytes_sent": sent, "bytes_received": received}


def edit_in_middle(src: Path, dst: Path, size: int) -> None:
    """Write *src* with one byte inserted in the middle to *dst*."""
    with open(src, "rb") as f, open(dst, "wb") as g:
        left = size // 2
        while left:
            g.write(f.read(min(MiB, left)))
            left -= min(MiB, left)
        g.write(b"!")
        shutil.copyfileobj(f, g, MiB)


Kick = Callable[[], None] | None  # run right after a change lands in A's folder (Syncthing: rescan now)


def arrival(a: Path, staged: Path, name: str, ready: Callable[[], bool], kick: Kick = None) -> float:
    """Rename *staged* to ``a/name`` and time until *ready()* says B has it."""
    t0 = time.perf_counter()
    os.replace(staged, a / name)
    if kick is not None:
        kick()
    wait_until(ready)
    return time.perf_counter() - t0


def small_files_at(a: Path, b: Path, staging: Path, n: int, kick: Kick = None) -> float:
    """(2a) N files of 4 KiB appear in A's folder at once (a folder renamed in); until B has all."""
    src = staging / f"small-{secrets.token_hex(3)}"
    src.mkdir()
    for i in range(n):
        (src / f"f{i:05}.bin").write_bytes(secrets.token_bytes(4096))

    def ready() -> bool:
        return (b / "small").is_dir() and len(os.listdir(b / "small")) >= n and \
            all(_size_is(b / "small" / f"f{i:05}.bin", 4096) for i in range(n))

    return arrival(a, src, "small", ready, kick)


def big_file_at(a: Path, b: Path, staging: Path, size: int, kick: Kick = None) -> float:
    """(2b) one big new file in A's folder; time until B has it (content checked after)."""
    big = staging / "big.bin"
    make_random_file(big, size, b"sync-bench")
    digest = file_digest(big)
    took = arrival(a, big, "big.bin", lambda: _size_is(b / "big.bin", size), kick)
    wait_until(lambda: file_digest(b / "big.bin") == digest, timeout=30)
    return took


def edit_at(a: Path, b: Path, staging: Path, name: str, size: int, kick: Kick = None) -> float:
    """(1) one byte inserted in the middle of ``a/name`` (a new version renamed into place)."""
    edited = staging / name
    edit_in_middle(a / name, edited, size)
    digest = file_digest(edited)
    time.sleep(1)
    took = arrival(a, edited, name, lambda: _size_is(b / name, size + 1), kick)
    wait_until(lambda: file_digest(b / name) == digest, timeout=30)
    return took


def one_byte_edit(a: Device, b: Device, rsyncd: RsyncDaemon, staging: Path, name: str, size: int) -> dict[str, Any]:
    """Satchel's 1-byte edit and the bytes A sent; then rsync pushing the same edit over its
    previous push (bytes sent from ``rsync --stats``, wall time)."""
    rsync_push(a.folder / name, rsyncd)  # rsync's copy of the old version, for its delta
    took = edit_at(a.folder, b.folder, staging, name, size)
    time.sleep(0.5)
    return {"size": size, "satchel_seconds": took, "satchel_bytes_sent": _sent_for(a.log(), "/" + name),
            "rsync": rsync_push(a.folder / name, rsyncd)}


def small_files(a: Device, b: Device, rsyncd: RsyncDaemon, staging: Path, n: int) -> dict[str, Any]:
    took = small_files_at(a.folder, b.folder, staging, n)
    return {"satchel_seconds": took, "rsync": rsync_push(a.folder / "small", rsyncd)}


def big_file(a: Device, b: Device, rsyncd: RsyncDaemon, staging: Path, size: int) -> dict[str, Any]:
    took = big_file_at(a.folder, b.folder, staging, size)
    return {"satchel_seconds": took, "rsync": rsync_push(a.folder / "big.bin", rsyncd)}


def syncthing_runs(work: Path, parts: set[str], n: int, size: int, also: int) -> dict[str, Any]:
    """The same workloads between two Syncthing instances (run after Satchel's, not beside them)."""
    staging = work / "staging-st"
    staging.mkdir()
    pair = syncthing.Pair(work).start()
    out: dict[str, Any] = {"version": subprocess.run(["syncthing", "--version"], capture_output=True,
                                                     text=True).stdout.split()[1]}
    a, b, kick = pair.a.folder, pair.b.folder, pair.a.scan
    try:
        if "small" in parts:
            out["small_files_seconds"] = small_files_at(a, b, staging, n, kick)
        if "big" in parts or "edit" in parts:
            out["big_file_seconds"] = big_file_at(a, b, staging, size, kick)
        if "edit" in parts:
            out["one_byte_edit_seconds"] = edit_at(a, b, staging, "big.bin", size, kick)
            if also:
                make_random_file(staging / "other.bin", also, b"sync-bench-2")
                os.replace(staging / "other.bin", a / "other.bin")
                kick()
                wait_until(lambda: _size_is(b / "other.bin", also))
                time.sleep(1)
                out["one_byte_edit_also_seconds"] = edit_at(a, b, staging, "other.bin", also, kick)
    finally:
        pair.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--also-edit-mib", type=int, default=255, help="also time the edit at this size (0: no)")
    ap.add_argument("--only", default="small,big,edit",
                    help="parts to run: small (many small files), big (one new big file), edit (1-byte edits)")
    ap.add_argument("--no-syncthing", action="store_true", help="skip the Syncthing reference runs")
    ap.add_argument("--work-dir")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (the daemons' and server's logs)")
    ap.add_argument("--out", default="bench/results/sync.json")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    work = pick_work_dir(args.work_dir)
    size = args.size_mib * MiB
    level = os.environ.get("SATCHEL_LOG_LEVEL")  # the server's log too (the harness default: warning)
    server = SatchelServer(work / "server", {"SATCHEL_LOG_LEVEL": level} if level else None).start()
    rsyncd = RsyncDaemon(work).start()
    a, b = Device(work, "A"), Device(work, "B")
    user = "bench" + secrets.token_hex(3)
    results: dict[str, Any] = {"machine": machine_facts(work), "size": size, "files": args.files,
                               "loadavg_before": os.getloadavg()}  # other helpers share these 2 cores
    try:
        a.cli("signup", server.url, user, "--password-stdin", stdin=PASSWORD + "\n")
        for d in (a, b):
            d.cli("login", server.url, user, "--password-stdin", "--device", d.name, stdin=PASSWORD + "\n")
            d.start()
        time.sleep(2)  # both daemons connected and subscribed
        staging = work / "staging"
        staging.mkdir(parents=True)
        if "small" in parts:
            results["small_files"] = small_files(a, b, rsyncd, staging, args.files)
        if "big" in parts or "edit" in parts:
            results["big_file"] = big_file(a, b, rsyncd, staging, size)
        if "edit" in parts:
            # (1) one byte inserted in the middle, at SIZE (the case) and at a size that does
            # not cross a chunk-size step (see the README: 256 MiB + 1 byte moves to 128 KiB chunks)
            results["one_byte_edit"] = one_byte_edit(a, b, rsyncd, staging, "big.bin", size)
            if args.also_edit_mib:
                other = staging / "other.bin"
                make_random_file(other, args.also_edit_mib * MiB, b"sync-bench-2")
                os.rename(other, a.folder / "other.bin")
                wait_until(lambda: _size_is(b.folder / "other.bin", args.also_edit_mib * MiB))
                results["one_byte_edit_also"] = one_byte_edit(a, b, rsyncd, staging, "other.bin",
                                                              args.also_edit_mib * MiB)
    finally:
        a.stop()
        b.stop()
        rsyncd.stop()
        server.stop()
    if not args.no_syncthing:
        if syncthing.available():
            results["syncthing"] = syncthing_runs(work, parts, args.files, size, args.also_edit_mib * MiB)
        else:
            results["syncthing"] = {"skipped": "syncthing is not installed (apt-get install syncthing)"}
    for key in ("one_byte_edit", "one_byte_edit_also"):
        if key in results:
            e = results[key]
            print(f"1-byte insert in {e['size'] / MiB:.0f} MiB: satchel {e['satchel_seconds']:.2f} s, "
                  f"{e['satchel_bytes_sent']:,} B sent; rsync {e['rsync']['seconds']:.2f} s, "
                  f"{e['rsync']['bytes_sent']:,} B sent (+{e['rsync']['bytes_received']:,} B received)")
    if "small_files" in results:
        sm = results["small_files"]
        print(f"{args.files} x 4 KiB A->B: satchel {sm['satchel_seconds']:.2f} s; "
              f"rsync push {sm['rsync']['seconds']:.2f} s")
    if "big_file" in results:
        bg = results["big_file"]
        print(f"{args.size_mib} MiB new file A->B: satchel {bg['satchel_seconds']:.2f} s; "
              f"rsync push {bg['rsync']['seconds']:.2f} s")
    st = results.get("syncthing", {})
    for key, label in (("small_files_seconds", f"{args.files} x 4 KiB"), ("big_file_seconds", "new big file"),
                       ("one_byte_edit_seconds", "1-byte edit"), ("one_byte_edit_also_seconds", "1-byte edit (also)")):
        if key in st:
            print(f"syncthing {st['version']}: {label} A->B {st[key]:.2f} s")
    results["loadavg_after"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
