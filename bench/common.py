"""Shared pieces of the benchmarks: test files, timed child processes with peak-RSS sampling,
a throwaway ``satchel serve`` and an rsync daemon on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import blake3
import psutil

from tests.harness.server import ServerProcess, free_port, terminate  # one runner for tests and benchmarks

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PIECE = 1024 * 1024
MiB = 1024 * 1024


# ------------------------------------------------------------------ machine and files

def mount_of(path: Path) -> tuple[str, str, str]:
    """(device, mount point, fs type) of the file system holding *path* (longest /proc/mounts match)."""
    path = path.resolve()
    best = ("?", "/", "?")
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, fstype = line.split()[:3]
            mnt = mnt.replace("\\040", " ")
            if (path == Path(mnt) or Path(mnt) in path.parents) and len(mnt) >= len(best[1]):
                best = (dev, mnt, fstype)
    return best


def pick_work_dir(explicit: str | None) -> Path:
    """A scratch folder on the repo's file system (never tmpfs): the system temp dir if it
    qualifies, else ``bench/.work`` inside the repo."""
    if explicit:
        base = Path(explicit)
    else:
        base = Path(tempfile.gettempdir())
        if os.stat(base).st_dev != os.stat(REPO).st_dev or mount_of(base)[2] in ("tmpfs", "ramfs"):
            base = REPO / "bench" / ".work"
    base.mkdir(parents=True, exist_ok=True)
    if mount_of(base)[2] in ("tmpfs", "ramfs"):
        raise SystemExit(f"{base} is on {mount_of(base)[2]}: pick a disk-backed --work-dir")
    return Path(tempfile.mkdtemp(prefix="satchel-bench-", dir=base))


def machine_facts(work: Path) -> dict[str, object]:
    dev, mnt, fstype = mount_of(work)
    du = shutil.disk_usage(work)
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "mem_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "work_dir": str(work), "device": dev, "mount": mnt, "fs": fstype,
        "disk_free_gib": round(du.free / 1024**3, 1), "python": sys.version.split()[0],
        "kernel": os.uname().release,
    }


def create_probe(work: Path, n: int = 300) -> float:
    """Microseconds to create one empty file in a fresh folder of *work* (the files are kept).

    On ext4 without a journal (this VM kind) inode allocation skips recently deleted inodes and
    can cost ~0.8 ms instead of ~40 us for ~30 s after many files were deleted; a chunk store
    creates one file per chunk, so the benchmark never deletes many files while it measures.
    """
    d = Path(tempfile.mkdtemp(prefix="probe-", dir=work))
    t0 = time.perf_counter()
    for i in range(n):
        os.close(os.open(d / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return (time.perf_counter() - t0) / n * 1e6


def wait_fast_creates(work: Path, limit_us: float = 150.0, patience: float = 90.0) -> float:
    """Wait (up to *patience* s) until creating a file costs < *limit_us*; return the last probe."""
    deadline = time.monotonic() + patience
    us = create_probe(work)
    while us >= limit_us and time.monotonic() < deadline:
        print(f"  (file creation slow: {us:.0f} us/file, recently deleted inodes on ext4; waiting)", flush=True)
        time.sleep(10)
        us = create_probe(work)
    return us


def background_busy(seconds: float = 1.0) -> float:
    """System-wide CPU use in percent (all cores) over *seconds*: other load on the machine."""
    return float(psutil.cpu_percent(interval=seconds))


def wait_quiet(limit: float = 15.0, patience: float = 120.0) -> float:
    """Wait (up to *patience* s) until other processes use < *limit* % CPU; return the last reading."""
    deadline = time.monotonic() + patience
    busy = background_busy()
    while busy >= limit and time.monotonic() < deadline:
        print(f"  (machine busy: {busy:.0f}% CPU used by other processes; waiting)", flush=True)
        time.sleep(4)
        busy = background_busy()
    return busy


def make_random_file(path: Path, size: int, seed: bytes) -> str:
    """Write *size* incompressible bytes (BLAKE3 XOF of *seed*) 1 MiB at a time; fsync; return the
    file's BLAKE3 hex digest."""
    xof = blake3.blake3(seed)
    whole = blake3.blake3()
    with open(path, "wb", buffering=0) as f:
        pos = 0
        while pos < size:
            n = min(PIECE, size - pos)
            piece = xof.digest(length=n, seek=pos)
            whole.update(piece)
            f.write(piece)
            pos += n
        os.fsync(f.fileno())
    return whole.hexdigest()


def file_digest(path: Path) -> str:
    """BLAKE3 of a file, read 1 MiB at a time."""
    h = blake3.blake3()
    buf = bytearray(PIECE)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


# ------------------------------------------------------------------ peak RSS

class RssSampler:
    """Samples the summed RSS of a process tree every *interval* seconds in a thread.

    ``peak_mib()`` is the highest sum seen since the last ``reset()``.
    """

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)

    def start(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def _sample(self) -> None:
        total = 0
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        with self._lock:
            self._peak = max(self._peak, total)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def reset(self) -> None:
        with self._lock:
            self._peak = 0
        self._sample()

    def peak_mib(self) -> float:
        self._sample()
        with self._lock:
            return self._peak / MiB

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def vm_hwm_mib(pid: int) -> float | None:
    """The kernel's peak-RSS counter (VmHWM) of *pid*, in MiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_hwm(pid: int) -> bool:
    """Reset *pid*'s VmHWM to its current RSS (``clear_refs`` 5; Linux >= 4.0, needs permission)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass
class Timed:
    seconds: float
    rss_sampled_mib: float  # max summed RSS of the process tree, sampled every 20 ms
    rss_hwm_mib: float  # the kernel's exact peak (ru_maxrss of the child)
    stdout: str = ""
    cpu_s: float = 0.0  # user + system CPU of the child
    extra: dict[str, float] = field(default_factory=dict)


def run_timed(cmd: Sequence[str], *, env: dict[str, str] | None = None, stdin: str | None = None,
              cwd: Path | None = None) -> Timed:
    """Run *cmd*; wall time from spawn to exit, peak RSS sampled and from ``wait4``'s rusage."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdin=subprocess.PIPE if stdin is not None else None,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sampler = RssSampler(proc.pid).start()
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin.encode())
        proc.stdin.close()
    # read pipes in threads so a chatty child never blocks; reap with wait4 for ru_maxrss
    outs: dict[str, bytes] = {}

    def drain(name: str) -> None:
        stream = getattr(proc, name)
        outs[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(n,)) for n in ("stdout", "stderr")]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.stop()
    for r in readers:
        r.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n"
                           f"{outs.get('stdout', b'').decode(errors='replace')}\n"
                           f"{outs.get('stderr', b'').decode(errors='replace')}")
    return Timed(elapsed, sampler.peak_mib(), usage.ru_maxrss / 1024, outs.get("stdout", b"").decode(),
                 usage.ru_utime + usage.ru_stime)


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, not idle or waiting for I/O)."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


# ------------------------------------------------------------------ servers

class SatchelServer(ServerProcess):
    """The tests' ``satchel serve`` runner plus what a benchmark needs: RSS sampling from the start."""

    def __init__(self, data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, extra_env)
        self.sampler: RssSampler | None = None

    def start(self, timeout: float = 30) -> SatchelServer:
        super().start(timeout)
        self.sampler = RssSampler(self.pid).start()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_mib(self) -> float:
        p = psutil.Process(self.pid)
        return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / MiB

    def stop(self) -> None:
        if self.sampler:
            self.sampler.stop()
        super().stop()


class RsyncDaemon:
    """``rsync --daemon --no-detach`` on 127.0.0.1 with one writable module ``bench`` at *root*."""

    def __init__(self, work: Path) -> None:
        self.root = work / "rsync-module"
        self.conf = work / "rsyncd.conf"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rsync://127.0.0.1:{self.port}/bench/"

    def start(self, timeout: float = 10) -> RsyncDaemon:
        if shutil.which("rsync") is None:
            raise SystemExit("rsync is not installed (apt-get install rsync)")
        self.root.mkdir(parents=True, exist_ok=True)
        user = "uid = root\ngid = root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"pid file = {self.conf.with_suffix('.pid')}\nuse chroot = no\n{user}"
            f"[bench]\n  path = {self.root}\n  read only = no\n")
        self.proc = subprocess.Popen(
            ["rsync", "--daemon", "--no-detach", "--address", "127.0.0.1", "--port", str(self.port),
             "--config", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rsync --daemon exited with {self.proc.returncode}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("rsync --daemon did not start listening")

    def stop(self) -> None:
        terminate(self.proc, 10)
        self.proc = None
