"""The planner, exhaustively and without I/O: three trees in, actions out."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from python_client.sync.conflicts import conflicted_name
from python_client.sync.model import DIR, FILE, Action, LocalNode, Op, RemoteNode, SyncedNode
from python_client.sync.planner import local_change, plan, remote_change

DAY = "2026-11-26"
S_FILE = SyncedNode(FILE, 10, rev=5, size=3, mtime_ns=100, inode=7, content_hash="h0")
L_SAME = LocalNode(FILE, 3, 100, 7)
L_TOUCHED = LocalNode(FILE, 3, 200, 7, "h0")    # new mtime, same bytes
L_EDIT = LocalNode(FILE, 4, 300, 7, "h1")
R_SAME = RemoteNode(FILE, 10, 5, 3, "h0")
R_EDIT = RemoteNode(FILE, 10, 6, 5, "h2")
R_EDIT_SAME_BYTES = RemoteNode(FILE, 10, 6, 4, "h1")


def run(r: dict[str, RemoteNode], l: dict[str, LocalNode], s: dict[str, SyncedNode],  # noqa: E741
        skip: tuple[str, ...] = ()) -> list[tuple[Op, str, str | None]]:
    return [(a.op, a.path, a.dest) for a in plan(r, l, s, device="dev", day=DAY, skip=skip)]


def one(r: RemoteNode | None, l: LocalNode | None, s: SyncedNode | None) -> list[Action]:  # noqa: E741
    return plan({"/f": r} if r else {}, {"/f": l} if l else {}, {"/f": s} if s else {}, device="dev", day=DAY)


COPY = conflicted_name("/f", "dev", DAY, ())


@pytest.mark.parametrize(("r", "l", "s", "want"), [
    (None, None, None, []),
    (R_SAME, L_SAME, S_FILE, []),
    (R_SAME, L_TOUCHED, S_FILE, [Op.record]),            # touched, same bytes: remember the new stat
    (R_SAME, L_EDIT, S_FILE, [Op.upload]),
    (R_SAME, None, S_FILE, [Op.delete_remote]),
    (R_EDIT, L_SAME, S_FILE, [Op.download]),
    (R_EDIT, L_TOUCHED, S_FILE, [Op.download]),
    (R_EDIT, L_EDIT, S_FILE, [Op.conflict_rename]),
    (R_EDIT_SAME_BYTES, L_EDIT, S_FILE, [Op.record]),    # both made the same edit
    (R_EDIT, None, S_FILE, [Op.download]),               # edit wins over delete
    (None, L_SAME, S_FILE, [Op.trash_local]),
    (None, L_EDIT, S_FILE, [Op.upload]),                 # edit wins over delete
    (None, None, S_FILE, [Op.forget]),
    (None, L_EDIT, None, [Op.upload]),
    (R_EDIT, None, None, [Op.download]),
    (R_EDIT, L_EDIT, None, [Op.conflict_rename]),        # both created, different bytes
    (R_EDIT_SAME_BYTES, L_EDIT, None, [Op.record]),
    (RemoteNode(DIR, 3), LocalNode(DIR, inode=9), None, [Op.record]),
    (RemoteNode(DIR, 3), L_EDIT, None, [Op.conflict_rename]),  # a file where the server has a folder
    (None, LocalNode(DIR, inode=9), None, [Op.mkdir_remote]),
    (RemoteNode(DIR, 3), None, None, [Op.mkdir_local]),
    (R_SAME, LocalNode(DIR, inode=9), S_FILE, [Op.delete_remote]),  # file -> folder locally: step 1
])
def test_decision_table(r: RemoteNode | None, l: LocalNode | None, s: SyncedNode | None,  # noqa: E741
                        want: list[Op]) -> None:
    acts = one(r, l, s)
    assert [a.op for a in acts] == want
    for a in acts:
        if a.op is Op.upload:
            assert a.rev == (r.rev if r and s else None), "uploads name the head they edited"
        if a.op is Op.delete_remote:
            assert a.rev == s.rev if s else None
        if a.op is Op.conflict_rename:
            assert a.dest == COPY


def _states() -> list[tuple[RemoteNode | None, LocalNode | None, SyncedNode | None]]:
    rs = [None, R_SAME, R_EDIT, R_EDIT_SAME_BYTES, RemoteNode(DIR, 10), RemoteNode(DIR, 11)]
    ls = [None, L_SAME, L_TOUCHED, L_EDIT, LocalNode(DIR, inode=7), LocalNode(DIR, inode=8)]
    ss = [None, S_FILE, SyncedNode(DIR, 10, inode=7)]
    return list(itertools.product(rs, ls, ss))


@pytest.mark.parametrize(("r", "l", "s"), _states())
def test_no_combination_loses_bytes(r: RemoteNode | None, l: LocalNode | None, s: SyncedNode | None  # noqa: E741
                                    ) -> None:
    """Whatever the three states, a local edit is never overwritten or trashed, and a server
    revision the planner has not seen is never deleted."""
    acts = one(r, l, s)
    assert len(acts) <= 1
    lc, rc = local_change(l, s), remote_change(r, s)
    for a in acts:
        if lc is not None and l is not None and l.kind == FILE:
            assert a.op not in (Op.trash_local, Op.download), a
        if a.op is Op.delete_remote:
            assert rc is None and r is not None and a.rev == r.rev
        if a.op is Op.download:
            assert r is not None and r.kind == FILE
    if lc is not None and rc is not None and l and r and l.kind == r.kind == FILE and l.content_hash != r.content_hash:
        assert [a.op for a in acts] == [Op.conflict_rename]


def test_settles_after_applying_each_action() -> None:
    """Applying every action's effect to the trees leaves nothing more to do (no ping-pong)."""
    for r, l, s in _states():  # noqa: E741
        acts = one(r, l, s)
        if not acts or acts[0].op in (Op.conflict_rename, Op.delete_remote, Op.trash_local):
            continue  # these settle over two rounds (checked end to end)
        a = acts[0]
        node = (r if a.op in (Op.download, Op.mkdir_local, Op.record) else None)
        if a.op is Op.forget:
            assert one(r, l, None) == []
            continue
        if a.op is Op.upload:
            assert l is not None
            node = RemoteNode(FILE, 99, 42, l.size, l.content_hash)
        if a.op is Op.mkdir_remote:
            node = RemoteNode(DIR, 99)
        assert node is not None
        loc = l if a.op in (Op.upload, Op.mkdir_remote, Op.record) else (
            LocalNode(FILE, node.size, 555, 77, node.content_hash) if node.kind == FILE else LocalNode(DIR, inode=77))
        assert loc is not None
        synced = SyncedNode(node.kind, node.node_id, node.rev, loc.size, loc.mtime_ns, loc.inode, node.content_hash)
        assert one(node, loc, synced) == [], (r, l, s, a)


def test_local_rename_and_folder_move_are_moves() -> None:
    s = {"/a": SyncedNode(DIR, 1, inode=11), "/a/x": SyncedNode(FILE, 2, 1, 1, 5, 12, "hx"),
         "/y": SyncedNode(FILE, 3, 1, 1, 5, 13, "hy")}
    r = {"/a": RemoteNode(DIR, 1), "/a/x": RemoteNode(FILE, 2, 1, 1, "hx"), "/y": RemoteNode(FILE, 3, 1, 1, "hy")}
    l = {"/b": LocalNode(DIR, inode=11), "/b/x": LocalNode(FILE, 1, 5, 12),  # noqa: E741
         "/b/y2": LocalNode(FILE, 1, 5, 99, "hy")}                          # copied across file systems
    assert run(r, l, s) == [(Op.move_remote, "/a", "/b"), (Op.move_remote, "/y", "/b/y2"),
                            (Op.record, "/b/y2", None)]  # same bytes under a new inode


def test_remote_folder_move_is_a_local_rename() -> None:
    s = {"/a": SyncedNode(DIR, 1, inode=11), "/a/x": SyncedNode(FILE, 2, 1, 1, 5, 12, "hx")}
    l = {"/a": LocalNode(DIR, inode=11), "/a/x": LocalNode(FILE, 1, 5, 12)}  # noqa: E741
    r = {"/b": RemoteNode(DIR, 1), "/b/x2": RemoteNode(FILE, 2, 1, 1, "hx")}  # moved, and x renamed inside
    assert run(r, l, s) == [(Op.move_local, "/a", "/b"), (Op.move_local, "/b/x", "/b/x2")]


def test_remote_rename_of_locally_edited_file_is_a_conflict() -> None:
    s = {"/d.txt": S_FILE}
    l = {"/d.txt": L_EDIT}  # noqa: E741
    r = {"/e.txt": R_SAME}
    got = run(r, l, s)
    copy = conflicted_name("/d.txt", "dev", DAY, ())
    assert got[0] == (Op.conflict_rename, "/d.txt", copy)
    assert (Op.download, "/e.txt", None) in got and (Op.upload, copy, None) in got


def test_folder_delete_spares_new_content_below() -> None:
    s = {"/d": SyncedNode(DIR, 1, inode=11), "/d/old": S_FILE}
    r = {"/d": RemoteNode(DIR, 1), "/d/old": R_SAME, "/d/new": R_EDIT}
    assert run(r, {}, s) == [(Op.download, "/d/new", None), (Op.delete_remote, "/d/old", None)]
    # and the other way round: the server deleted the folder, the disk has something new in it
    l = {"/d": LocalNode(DIR, inode=11), "/d/old": L_SAME, "/d/mine": L_EDIT}  # noqa: E741
    assert run({}, l, s) == [(Op.upload, "/d/mine", None), (Op.trash_local, "/d/old", None)]


def test_folder_delete_goes_children_first_and_trash_takes_the_top() -> None:
    s = {"/d": SyncedNode(DIR, 1, inode=11), "/d/e": SyncedNode(DIR, 2, inode=12), "/d/e/f": S_FILE}
    r = {"/d": RemoteNode(DIR, 1), "/d/e": RemoteNode(DIR, 2), "/d/e/f": R_SAME}
    assert run(r, {}, s) == [(Op.delete_remote, "/d/e/f", None), (Op.delete_remote, "/d/e", None),
                             (Op.delete_remote, "/d", None)]
    l = {"/d": LocalNode(DIR, inode=11), "/d/e": LocalNode(DIR, inode=12), "/d/e/f": L_SAME}  # noqa: E741
    assert run({}, l, s) == [(Op.trash_local, "/d", None)]


def test_skipped_paths_are_left_alone_with_their_folders() -> None:
    s = {"/d": SyncedNode(DIR, 1, inode=11), "/d/f": S_FILE}
    r = {"/d": RemoteNode(DIR, 1), "/d/f": R_SAME}
    assert run(r, {}, s, skip=("/d/f",)) == []


def test_conflicted_names() -> None:
    assert conflicted_name("/a/report.pdf", "laptop", DAY, ()) == "/a/report (conflicted copy, laptop, 2026-11-26).pdf"
    taken = {"/x (conflicted copy, l, 2026-11-26)"}
    assert conflicted_name("/x", "l", DAY, taken) == "/x (conflicted copy, l, 2026-11-26 2)"
    assert conflicted_name("/.bashrc", "a/b", DAY, ()) == "/.bashrc (conflicted copy, a_b, 2026-11-26)"
    long = conflicted_name("/" + "é" * 127 + ".txt", "d", DAY, ())
    assert len(long.encode()) <= 256 and long.endswith("2026-11-26).txt")


def test_case_clashes_on_case_folding_disks() -> None:
    from python_client.sync.engine import case_clashes

    remote = {"/Readme.md": RemoteNode(FILE, 1), "/README.md": RemoteNode(FILE, 2), "/Docs": RemoteNode(DIR, 3),
              "/docs": RemoteNode(DIR, 4), "/docs/x": RemoteNode(FILE, 5), "/other": RemoteNode(FILE, 6)}
    got = case_clashes(remote)
    assert set(got) == {"/Readme.md", "/docs"}  # "/README.md" and "/Docs" sort first; views drop /docs/x too
    assert "/README.md" in got["/Readme.md"]


def test_trash_is_emptied_after_thirty_days(tmp_path: Path) -> None:
    from python_client.sync.executor import purge_trash

    for day in ("2020-01-01", "2999-01-01"):
        (tmp_path / ".satchel" / "trash" / day).mkdir(parents=True)
        (tmp_path / ".satchel" / "trash" / day / "f").write_text("x")
    purge_trash(tmp_path)
    assert [p.name for p in (tmp_path / ".satchel" / "trash").iterdir()] == ["2999-01-01"]


async def test_watcher_ignores_only_its_own_folder(tmp_path: Path) -> None:
    import asyncio

    from python_client.sync.watcher import Watcher

    w = Watcher(tmp_path, asyncio.get_running_loop())
    assert w.is_private(str(tmp_path / ".satchel" / "state.db"))
    assert not w.is_private(str(tmp_path / ".satchelignore")), "the ignore file is the user's"
    assert not w.is_private(str(tmp_path / "docs" / ".satchel"))


def test_a_file_written_in_place_just_now_waits_but_one_renamed_into_place_does_not(tmp_path: Path) -> None:
    """`settle` holds back files that may still be being written; an atomic save (write a temp
    file, rename it into place) is complete, and holding it back would only add latency."""
    import os
    import time

    from python_client.sync.ignore import Ignore
    from python_client.sync.scanner import scan

    (tmp_path / "inplace.txt").write_bytes(b"still being written")
    tmp = tmp_path.parent / f"{tmp_path.name}.tmp"
    tmp.write_bytes(b"saved atomically")
    time.sleep(0.02)  # past the file system's timestamp granularity (a jiffy)
    os.rename(tmp, tmp_path / "saved.txt")
    found = scan(tmp_path, {}, Ignore(tmp_path, []), settle=30.0)
    assert found.busy == {"/inplace.txt"}
    assert set(found.local) == {"/saved.txt"}


async def test_the_watcher_tells_the_scanner_which_writers_are_done(tmp_path: Path) -> None:
    """A recently written file waits `settle` unless watchdog saw its writer finish: closed after
    writing (IN_CLOSE_WRITE), or moved in inside a folder (its bytes were written before), and it
    is still as the writer left it. One still open for writing waits, and so does one written
    again since; without a watcher everything recent waits."""
    import asyncio
    import os

    from python_client.chunk_cache import RACY_NS
    from python_client.sync.ignore import Ignore
    from python_client.sync.scanner import scan
    from python_client.sync.watcher import Watcher

    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    for i in range(3):
        (outside / f"{i}.bin").write_bytes(os.urandom(100))
    w = Watcher(root, asyncio.get_running_loop())
    w.start()  # the watches are in place when it returns

    def scanned(finished: bool) -> set[str]:
        return scan(root, {}, Ignore(root, []), settle=30.0, finished=w.finished_since if finished else None).busy

    async def until(want: set[str]) -> None:
        for _ in range(100):  # the observer's thread delivers the events
            if scanned(True) == want:
                return
            await asyncio.sleep(0.02)
        assert scanned(True) == want

    try:
        outside.rename(root / "moved")
        (root / "closed.txt").write_bytes(b"written and closed")
        with open(root / "open.txt", "wb") as still_open:
            still_open.write(b"half")
            still_open.flush()
            await until({"/open.txt"})
            assert scanned(False) == {"/open.txt", "/closed.txt", "/moved/0.bin", "/moved/1.bin", "/moved/2.bin"}
        await until(set())  # closed after writing: done
        # Written again in place without a close the watcher saw (its stat is not the one recorded).
        fd = os.open(root / "closed.txt", os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b" and more")
            assert "/closed.txt" in scanned(True), "changed since the close it saw: not proven done"
        finally:
            os.close(fd)
        # Just written and closed: trusted only once the mtime is older than a timestamp tick.
        (root / "fresh.txt").write_bytes(b"new")
        st = os.stat(root / "fresh.txt")
        w.finished(str(root / "fresh.txt"))
        assert not w.finished_since(str(root / "fresh.txt"), st) or \
            time.time_ns() - st.st_mtime_ns >= RACY_NS
        await asyncio.sleep(RACY_NS / 1e9)
        assert w.finished_since(str(root / "fresh.txt"), os.stat(root / "fresh.txt"))
    finally:
        w.stop()


def test_upload_batches_fill_a_frame_but_never_overflow_it() -> None:
    """Small uploads go in batches as full as a WebSocket frame allows (each batch is a server
    transaction and an fsync), whatever the files' sizes, names and types."""
    import os
    import random

    from python_client import batching
    from python_client.sync import batches
    from server.ws.protocol import MAX_FRAME, Frame, MsgType, encode

    rng = random.Random(5)
    actions = []
    for i in range(1500):
        size = rng.choice([0, 1, 4096, 60_000, batching.SMALL_MAX])
        name = "/" + "d" * rng.choice([1, 200]) + f"/f{i}" + rng.choice([".txt", ".docx", ".bin", ""])
        actions.append(Action(Op.upload, name, rev=10**12, local=LocalNode(FILE, size, 2**62, 1)))
    groups = batches.groups(actions)
    assert sum(len(g) for g in groups) == len(actions)
    for group in groups:
        items = [batching.commit_body(a.path, a.rev, os.urandom(a.local.size) if a.local else b"", 2**62)
                 for a in group]
        frame = encode(Frame(MsgType.commit_batch, 2**31, {"items": items}))
        assert len(frame) <= MAX_FRAME, f"{len(group)} files make a {len(frame)}-byte frame"
    small = [Action(Op.upload, f"/s{i}.bin", local=LocalNode(FILE, 4096)) for i in range(1000)]
    assert len(batches.groups(small)) <= 5, "4 KiB files: over 200 to a batch"


def test_local_moves_into_a_folder_of_the_same_name_or_from_a_moved_source(tmp_path: Path) -> None:
    """Moves the planner asks for that cannot go in one rename (found by the soak convergence
    runs, seeds 46 and 319): a folder into a new folder that took its name on the server steps
    aside first; a source already gone (moved with its folder earlier in the round) is Stale,
    so the next round plans again, instead of an OSError ending the round."""
    from python_client.api import SatchelClient
    from python_client.sync.executor import Executor
    from python_client.sync.model import Stale
    from python_client.sync.state import State

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "inside.txt").write_text("kept")
    ex = Executor(SatchelClient("http://127.0.0.1:9"), State(tmp_path), tmp_path)
    ex._rename("/d", "/d/m")
    assert (tmp_path / "d" / "m" / "inside.txt").read_text() == "kept"
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["m"]
    (tmp_path / "f.bin").write_bytes(b"a file")
    ex._rename("/f.bin", "/f.bin/g.bin")
    assert (tmp_path / "f.bin" / "g.bin").read_bytes() == b"a file"
    with pytest.raises(Stale):
        ex._rename("/gone/x", "/elsewhere/y")
    (tmp_path / "plain").write_text("a file where a folder must be")
    (tmp_path / "src.txt").write_text("source")
    with pytest.raises(Stale):
        ex._rename("/src.txt", "/plain/src.txt")
    assert (tmp_path / "src.txt").read_text() == "source"


@pytest.mark.parametrize("bad", ["/a/../../outside.txt", "/../x", "/a//b", "a/b", "/a/./b", "/a/b/", "/x\x01y",
                                 "/a\\b", "/ok/" + "n" * 300])
def test_a_malformed_path_from_the_server_never_enters_the_remote_tree(tmp_path: Path, bad: str) -> None:
    """A compromised server (or an impostor on plain HTTP) must not make the client write
    outside its folder: paths not in normal form are dropped where they come in."""
    from python_client.sync.state import State

    state = State(tmp_path)
    state.put_remote("/ok", RemoteNode(DIR, 1))
    state.put_remote(bad, RemoteNode(FILE, 2, 1, 3, "h"))
    assert bad not in state.remote and set(state.remote) == {"/ok"}
    state.move_remote("/ok", bad)
    assert set(state.remote) == {"/ok"}
    state.close()
    assert set(State(tmp_path).remote) == {"/ok"}  # nor in the database


def test_a_folder_download_refuses_a_path_that_leaves_its_folder(tmp_path: Path) -> None:
    from python_client.folder_get import _local
    from server.core.errors import ErrorCode, SatchelError

    assert _local(tmp_path, "/T", "/T/a/b.txt") == tmp_path / "a" / "b.txt"
    for bad in ("/T/../etc/passwd", "/T/a/../../x", "/Tx/a", "/T", "/T//a"):
        with pytest.raises(SatchelError) as err:
            _local(tmp_path, "/T", bad)
        assert err.value.code is ErrorCode.invalid_path
