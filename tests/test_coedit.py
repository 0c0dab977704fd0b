"""Live co-editing (protocol.md, "Co-editing") end to end: real servers, real WebSocket sessions
of the Python SDK (pycrdt), on both stacks.

Servers here save after 0.3 s of quiet (SATCHEL_COEDIT_SAVE_DELAY) so the tests stay short.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from python_client.coedit import DocClosed, DocSession
from python_client.live import LiveSession
from server.coedit import awareness, manager
from server.core.errors import ErrorCode, SatchelError
from server.ws.protocol import MsgType
from tests.coedit_helpers import get_text, joined, put_text
from tests.conftest import STACKS, User
from tests.harness import ws
from tests.harness.server import ServerProcess

MakeUser = Callable[..., Any]
FAST = {"SATCHEL_COEDIT_SAVE_DELAY": "0.3s"}
TRICKY = "naïve café 😀👩‍👩‍👧 e\u0301 漢字 \u200d\n"


@pytest.fixture(scope="module", params=STACKS)
def srv(request: pytest.FixtureRequest, start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server(request.param, **FAST)


async def user(make_user: MakeUser, srv: ServerProcess, name: str | None = None, device: str = "d1") -> User:
    u: User = await make_user(device, name=name, srv=srv)
    return u


def token(u: User) -> str:
    assert u.client.token is not None
    return u.client.token


async def test_two_clients_sync_and_the_save_is_a_revision(srv: ServerProcess, make_user: MakeUser) -> None:
    a = await user(make_user, srv)
    await put_text(a.client, "/notes.md", "hello world\n")
    async with joined(srv.url, token(a), "/notes.md") as one, joined(srv.url, token(a), "/notes.md") as two:
        assert one.value == two.value == "hello world\n"
        assert one.role == "editor" and one.rev is not None
        first_rev = one.rev
        one.insert(5, " there " + TRICKY)
        await two.wait_for(lambda t: TRICKY in t)
        two.insert(0, "e\u0301😀")  # combining mark and emoji at the very front
        two.delete(len("e\u0301😀hello there "), len("e\u0301😀hello there naïve"))
        expected = "e\u0301😀hello there  café 😀👩‍👩‍👧 e\u0301 漢字 \u200d\n world\n"
        assert await one.wait_for(lambda t: t == expected) == expected
        # Quiet for the save delay: a new revision, announced to both, in history, downloadable.
        await one.wait_until(lambda: bool(one.saved), 10)
        await two.wait_until(lambda: bool(two.saved), 10)
        assert one.saved[-1] == two.saved[-1] != first_rev
    assert await get_text(a.client, "/notes.md") == expected
    revs = await a.client.revisions("/notes.md")
    assert [r["rev"] for r in revs][:2] == [one.saved[-1], first_rev]


async def test_a_viewer_watches_but_cannot_edit(srv: ServerProcess, make_user: MakeUser) -> None:
    owner, viewer = await user(make_user, srv), await user(make_user, srv)
    await owner.client.mkdir("/Shared")
    await put_text(owner.client, "/Shared/plan.txt", "plan A")
    await owner.client.share("/Shared", viewer.name, "viewer")
    async with joined(srv.url, token(owner), "/Shared/plan.txt") as ed, \
            joined(srv.url, token(viewer), "/Shared/plan.txt") as view:
        assert view.role == "viewer" and ed.role == "editor"
        view.insert(0, "HACKED ")
        await view.wait_until(lambda: bool(view.errors))
        assert view.errors[0].code is ErrorCode.forbidden
        ed.insert(6, "+")
        await view.wait_for(lambda t: t.endswith("plan A+") or "+" in t)
        await asyncio.sleep(0.5)
        assert ed.value == "plan A+"  # the viewer's edit never reached anyone
    assert await get_text(owner.client, "/Shared/plan.txt") == "plan A+"


async def test_refused_files_and_bad_joins(srv: ServerProcess, make_user: MakeUser) -> None:
    a, b = await user(make_user, srv), await user(make_user, srv)
    await put_text(a.client, "/bin.dat", b"\xff\xfe\x00binary")
    await put_text(a.client, "/nul.txt", b"text\x00with nul")
    await a.client.mkdir("/folder")
    await put_text(a.client, "/mine.txt", "private")
    async with LiveSession.connect(srv.url, token(a)) as live:
        for path, code in (("/bin.dat", ErrorCode.not_text), ("/nul.txt", ErrorCode.not_text),
                           ("/folder", ErrorCode.is_a_directory), ("/missing.txt", ErrorCode.not_found),
                           ("/../x", ErrorCode.invalid_path)):
            with pytest.raises(SatchelError) as err:
                await DocSession.join(live, path)
            assert err.value.code is code, path
        with pytest.raises(SatchelError) as err:
            await live.request(MsgType.doc_join, {"path": "/mine.txt", "sv": b"\xff\xff\xff"})
        assert err.value.code is ErrorCode.bad_request
    async with LiveSession.connect(srv.url, token(b)) as live:  # someone else's file by namespace id
        ns = (await a.client.account())["root_namespace"]
        with pytest.raises(SatchelError) as err:
            await DocSession.join(live, "/mine.txt", ns=ns)
        assert err.value.code is ErrorCode.not_found


async def test_size_limit(start_server: Callable[..., ServerProcess], make_user: MakeUser) -> None:
    small = start_server("sqlite-local", SATCHEL_COEDIT_MAX_BYTES="100", **FAST)
    a = await user(make_user, small)
    await put_text(a.client, "/big.txt", "x" * 101)
    await put_text(a.client, "/ok.txt", "y" * 90)
    async with LiveSession.connect(small.url, token(a)) as live:
        with pytest.raises(SatchelError) as err:
            await DocSession.join(live, "/big.txt")
        assert err.value.code is ErrorCode.too_large and err.value.details["limit"] == 100
        doc = await DocSession.join(live, "/ok.txt")
        doc.insert(0, "z" * 20)  # would pass 100 bytes: refused, not applied
        await doc.wait_until(lambda: bool(doc.errors))
        assert doc.errors[0].code is ErrorCode.too_large
    async with joined(small.url, token(a), "/ok.txt") as again:
        assert again.value == "y" * 90


async def test_malformed_frames_get_errors_and_change_nothing(srv: ServerProcess, make_user: MakeUser) -> None:
    a = await user(make_user, srv)
    await put_text(a.client, "/f.txt", "stable")
    conn = await ws.connect(srv.url)
    try:
        await ws.hello(conn, token(a))
        await ws.send(conn, MsgType.doc_join, 1, {"path": "/f.txt"})
        joined_ = await _reply(conn, 1)
        handle = joined_.body["doc"]
        rnd = random.Random(7)
        bad: list[Any] = [b"", b"\x01", b"\xff" * 9, bytes(rnd.randrange(256) for _ in range(64)), "text", 5, None,
                          [1, 2], {"a": 1}]
        bad += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 200))) for _ in range(40)]
        rid = 10
        for update in bad:
            for mtype in (MsgType.doc_update, MsgType.doc_awareness):
                rid += 1
                await ws.send(conn, mtype, rid, {"doc": handle, "update": update})
        for body in ({"doc": 999, "update": b"\x00\x00"}, {"doc": "x", "update": b"\x00\x00"}, {}):
            rid += 1
            await ws.send(conn, MsgType.doc_update, rid, body)
        await ws.send(conn, MsgType.ping, 9999)
        while (frame := await ws.recv(conn)).id != 9999:
            if frame.type is MsgType.error:
                assert frame.body["code"] in ("bad_request", "not_found"), frame.body
        # The session still works, and the document is what it was.
        await ws.send(conn, MsgType.doc_leave, 10000, {"doc": handle})
        assert (await _reply(conn, 10000)).type is MsgType.doc_left
    finally:
        await conn.close()
    async with joined(srv.url, token(a), "/f.txt") as doc:
        assert doc.value == "stable"


async def _reply(conn: Any, rid: int) -> Any:
    while True:
        frame = await ws.recv(conn)
        if frame.id == rid:
            if frame.type is MsgType.error:
                raise AssertionError(frame.body)
            return frame


async def test_awareness_join_leave(srv: ServerProcess, make_user: MakeUser) -> None:
    a = await user(make_user, srv)
    await put_text(a.client, "/aw.txt", "x")
    async with joined(srv.url, token(a), "/aw.txt") as one:
        one.set_awareness({"user": {"name": "one"}, "cursor": 0})
        async with joined(srv.url, token(a), "/aw.txt") as two:
            # The newcomer gets the snapshot; the first hears about the second.
            await two.wait_until(lambda: {"user": {"name": "one"}, "cursor": 0} in two.peers.values())
            two.set_awareness({"user": {"name": "two"}})
            await one.wait_until(lambda: {"user": {"name": "two"}} in one.peers.values())
        # two's connection ended: the server removes its state and tells one.
        await one.wait_until(lambda: not one.peers, 5)


async def test_awareness_times_out(srv: ServerProcess, make_user: MakeUser,
                                   start_server: Callable[..., ServerProcess]) -> None:
    # A short timeout (the default, 30 s, is y-protocols'), checked every few seconds (manager.TICK).
    srv = start_server("pg-s3" if "DATABASE_URL" in srv.env else "sqlite-local",
                       SATCHEL_COEDIT_AWARENESS_TIMEOUT="2s")
    a = await user(make_user, srv)
    await put_text(a.client, "/aw2.txt", "x")
    async with joined(srv.url, token(a), "/aw2.txt") as watcher, LiveSession.connect(srv.url, token(a)) as live:
        doc = await DocSession.join(live, "/aw2.txt")
        # One state, never renewed (a client that froze without closing its connection).
        await live.send_doc(MsgType.doc_awareness, doc.handle, awareness.encode([(4242, 1, '{"user": "frozen"}')]))
        await watcher.wait_until(lambda: 4242 in watcher.peers)
        await watcher.wait_until(lambda: 4242 not in watcher.peers, 2 + manager.TICK + 10)


async def test_external_revision_is_merged(srv: ServerProcess, make_user: MakeUser,
                                           start_server: Callable[..., ServerProcess]) -> None:
    # A longer quiet period, so the edit typed during the upload is not saved before it arrives.
    srv = start_server("pg-s3" if "DATABASE_URL" in srv.env else "sqlite-local", SATCHEL_COEDIT_SAVE_DELAY="3s")
    a = await user(make_user, srv)
    base = "line one\nline two\nline three\n"
    await put_text(a.client, "/merge.txt", base)
    async with joined(srv.url, token(a), "/merge.txt") as doc:
        doc.insert(len("line one"), " (live 😀)")
        await doc.wait_until(lambda: bool(doc.saved), 10)
        # Meanwhile a desktop edits the saved revision's text (the last line) and uploads it.
        saved = await get_text(a.client, "/merge.txt")
        doc.insert(0, "TOP\n")  # typed while the upload happens: must survive the merge
        await doc.flush()
        await put_text(a.client, "/merge.txt", saved.replace("line three", "line 3 (desktop)"))
        want = "TOP\nline one (live 😀)\nline two\nline 3 (desktop)\n"
        assert await doc.wait_for(lambda t: t == want, 10) == want
        await doc.wait_until(lambda: len(doc.saved) >= 2, 10)
    assert await get_text(a.client, "/merge.txt") == want


async def test_revision_while_nobody_edits_is_picked_up(srv: ServerProcess, make_user: MakeUser) -> None:
    a = await user(make_user, srv)
    await put_text(a.client, "/later.txt", "v1")
    async with joined(srv.url, token(a), "/later.txt") as doc:
        doc.insert(2, "+")
        await doc.wait_until(lambda: bool(doc.saved), 10)
    await put_text(a.client, "/later.txt", "v2 from the desktop")
    async with joined(srv.url, token(a), "/later.txt") as doc:
        assert doc.value == "v2 from the desktop"


async def test_deleted_file_closes_the_session(srv: ServerProcess, make_user: MakeUser) -> None:
    a = await user(make_user, srv)
    await put_text(a.client, "/gone.txt", "bye")
    async with joined(srv.url, token(a), "/gone.txt") as doc:
        await a.client.delete("/gone.txt")
        with pytest.raises(DocClosed) as err:
            await doc.wait_for(lambda t: False, 10)
        assert err.value.reason == "deleted"


async def test_moved_file_keeps_its_session(srv: ServerProcess, make_user: MakeUser) -> None:
    a = await user(make_user, srv)
    await put_text(a.client, "/old.txt", "abc")
    async with joined(srv.url, token(a), "/old.txt") as doc:
        await a.client.mkdir("/dir")
        await a.client.move("/old.txt", "/dir/new.txt")
        await asyncio.sleep(0.3)
        doc.insert(3, "d")
        await doc.wait_until(lambda: bool(doc.saved), 10)
    assert await get_text(a.client, "/dir/new.txt") == "abcd"
    assert await a.client.stat_or_none("/old.txt") is None


@pytest.mark.parametrize("what", ["folder", "file"])
async def test_a_document_open_when_it_becomes_shared_follows_the_share(
        srv: ServerProcess, make_user: MakeUser, what: str) -> None:
    """The owner is typing in /P/doc.md (their own namespace) when they share /P (or the file
    alone): the session stays open, the member joins the same document and edits it, external
    revisions and membership changes of the new namespace reach the room, and a rejoin after a
    reconnect (by file id) finds the file in its new namespace."""
    owner, ed = await user(make_user, srv), await user(make_user, srv)
    await owner.client.mkdir("/P")
    await put_text(owner.client, "/P/doc.md", "base\n")
    live = await _connect(srv, owner)
    mine = await DocSession.join(live, "/P/doc.md")
    old_ns = mine.ns
    mine.insert(0, "owner before\n")
    await mine.wait_until(lambda: bool(mine.saved), 10)
    share = await owner.client.share("/P" if what == "folder" else "/P/doc.md", ed.name, "editor")
    mine.insert(len(mine.value), "owner after\n")  # typed while the room moves over
    member_path = "/P/doc.md" if what == "folder" else "/doc.md"
    async with joined(srv.url, token(ed), member_path) as theirs:
        assert theirs.ns == share["ns"] != old_ns and theirs.role == "editor"
        await theirs.wait_for(lambda t: "owner after" in t)
        theirs.insert(0, "member\n")
        want = "member\nowner before\nbase\nowner after\n"
        await mine.wait_for(lambda t: t == want)
        assert theirs.errors == [] and mine.errors == []
        async with asyncio.timeout(10):  # saved as a revision in the share, readable by the member
            while await get_text(ed.client, member_path) != want:
                await asyncio.sleep(0.1)
        # A revision made through the new namespace (the member's REST upload) is merged live.
        await put_text(ed.client, member_path, want + "uploaded\n")
        await mine.wait_for(lambda t: t.endswith("uploaded\n"))
        # The owner's rejoin on a new connection names the file by id: found in the share now.
        await live.close()
        live = await _connect(srv, owner)
        await mine.rejoin(live)
        assert mine.ns == share["ns"]
        mine.insert(0, "rejoined\n")
        await theirs.wait_for(lambda t: t.startswith("rejoined\n"))
        # Membership changes of the new namespace reach the room: removal closes the member's session.
        uid = next(m["user_id"] for m in share["members"] if m["user"] == ed.name)
        await owner.client.remove_member(share["ns"], uid)
        with pytest.raises(DocClosed) as err:
            await theirs.wait_for(lambda t: False, 10)
        assert err.value.reason == "access_removed"
    await live.close()


async def test_join_by_file_id_is_checked(srv: ServerProcess, make_user: MakeUser) -> None:
    a, b = await user(make_user, srv), await user(make_user, srv)
    meta = await put_text(a.client, "/mine.txt", "secret")
    async with LiveSession.connect(srv.url, token(b)) as live:
        with pytest.raises(SatchelError) as err:
            await live.request(MsgType.doc_join, {"file_id": meta["id"]})
        assert err.value.code is ErrorCode.not_found
        with pytest.raises(SatchelError) as err:
            await live.request(MsgType.doc_join, {"file_id": 2**31 - 1})
        assert err.value.code is ErrorCode.not_found
        with pytest.raises(SatchelError) as err:
            await live.request(MsgType.doc_join, {"file_id": "1"})
        assert err.value.code is ErrorCode.bad_request
    async with LiveSession.connect(srv.url, token(a)) as live:
        reply = await live.request(MsgType.doc_join, {"file_id": meta["id"]})
        assert reply.body["path"] == "/mine.txt" and reply.body["file_id"] == meta["id"]


async def test_removed_member_is_closed(srv: ServerProcess, make_user: MakeUser) -> None:
    owner, ed = await user(make_user, srv), await user(make_user, srv)
    await owner.client.mkdir("/S")
    await put_text(owner.client, "/S/t.txt", "t")
    share = await owner.client.share("/S", ed.name, "editor")
    async with joined(srv.url, token(ed), "/S/t.txt") as doc:
        uid = next(m["user_id"] for m in share["members"] if m["user"] == ed.name)
        await owner.client.remove_member(share["ns"], uid)
        with pytest.raises(DocClosed) as err:
            await doc.wait_for(lambda t: False, 10)
        assert err.value.reason == "access_removed"


async def test_restart_mid_session_loses_nothing(tmp_path: Path, make_user: MakeUser) -> None:
    node = ServerProcess(tmp_path / "data", FAST).start()
    try:
        a = await user(make_user, node)
        await put_text(a.client, "/r.txt", "start\n")
        live1 = await _connect(node, a)
        live2 = await _connect(node, a)
        one, two = await DocSession.join(live1, "/r.txt"), await DocSession.join(live2, "/r.txt")
        one.insert(6, "typed before the crash\n")
        await two.wait_for(lambda t: "crash" in t)
        node.kill()  # SIGKILL: no save on shutdown; the quiet period has not passed
        one.insert(0, "typed while down\n")  # offline edits on both sides
        two.insert(len(two.value), "two offline\n")
        node.start()
        for doc in (one, two):
            await doc.rejoin(await _connect(node, a))
        want = "typed while down\nstart\ntyped before the crash\ntwo offline\n"
        await one.wait_for(lambda t: t == want, 10)
        await two.wait_for(lambda t: t == want, 10)
        await one.wait_until(lambda: bool(one.saved), 10)
        assert await get_text(a.client, "/r.txt") == want
        await one.live.close()
        await two.live.close()
        for live in (live1, live2):
            await live.close()
    finally:
        node.stop()


async def _connect(node: ServerProcess, u: User) -> LiveSession:
    return await _open(node.url, token(u))


# ------------------------------------------------------------------ randomized convergence


async def run_convergence(urls: str | list[str], tok: str, path: str, seed: int, clients: int = 3,
                          steps: int = 40) -> None:
    """Clients edit at random (inserts and deletes, often at the same place), some drop their
    connection and rejoin later with offline edits; at the end all texts and the server's agree.
    With several *urls* (nodes), client i talks to node i mod n."""
    rnd = random.Random(seed)
    nodes = [urls] if isinstance(urls, str) else urls
    alphabet = "ab \n😀e\u0301漢"
    lives = [await _open(nodes[i % len(nodes)], tok) for i in range(clients)]
    docs = [await DocSession.join(live, path) for live in lives]
    offline: set[int] = set()
    for _ in range(steps):
        i = rnd.randrange(clients)
        doc = docs[i]
        n = len(doc.value)
        roll = rnd.random()
        if roll < 0.08 and i not in offline:
            await lives[i].close()
            offline.add(i)
        elif roll < 0.16 and i in offline:
            lives[i] = await _open(nodes[i % len(nodes)], tok)
            await doc.rejoin(lives[i])
            offline.discard(i)
        elif roll < 0.6 or n == 0:
            pos = rnd.choice([0, n, rnd.randint(0, n)])  # ends often: same positions for several clients
            doc.insert(pos, "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 4))))
        else:
            a = rnd.randrange(n)
            doc.delete(a, min(n, a + rnd.randint(1, 3)))
        if rnd.random() < 0.3:
            await asyncio.sleep(0)
    for i in sorted(offline):
        lives[i] = await _open(nodes[i % len(nodes)], tok)
        await docs[i].rejoin(lives[i])
    for doc in docs:
        await doc.flush()
    check = await _open(nodes[0], tok)
    observer = await DocSession.join(check, path)

    async def agreed() -> bool:
        return len({d.value for d in docs} | {observer.value}) == 1

    for _ in range(500):
        if await agreed():
            break
        await asyncio.sleep(0.02)
    texts = [d.value for d in docs]
    assert len(set(texts)) == 1 and texts[0] == observer.value, (seed, texts, observer.value)
    for live in [*lives, check]:
        await live.close()


CONCURRENT_SEEDS = 5
_OPEN: list[Any] = []  # the context managers of open sessions: collected, they would close them


async def _open(url: str, tok: str) -> LiveSession:
    cm = LiveSession.connect(url, tok)
    _OPEN.append(cm)
    del _OPEN[:-50 * CONCURRENT_SEEDS]  # a run opens a dozen or so at most
    live: LiveSession = await cm.__aenter__()
    return live


async def test_random_convergence(srv: ServerProcess, make_user: MakeUser) -> None:
    a = await user(make_user, srv)

    async def one(seed: int) -> None:
        path = f"/conv-{seed}.txt"
        await put_text(a.client, path, "seed text\n")
        await run_convergence(srv.url, token(a), path, seed)

    # 150 seeds x 2 stacks, + 30 across nodes: 330 runs. A few at a time (each its own
    # document): a run mostly waits on round trips. A failing seed cancels the others; its
    # number is in the assertion (replay it alone with run_convergence).
    for first in range(0, 150, CONCURRENT_SEEDS):
        async with asyncio.TaskGroup() as group:
            for seed in range(first, min(150, first + CONCURRENT_SEEDS)):
                group.create_task(one(seed))


@pytest.mark.soak
@pytest.mark.timeout(3600)
async def test_random_convergence_soak(srv: ServerProcess, make_user: MakeUser) -> None:
    a = await user(make_user, srv)
    for seed in range(1000, 1300):
        path = f"/soak-{seed}.txt"
        await put_text(a.client, path, "seed text\n")
        await run_convergence(srv.url, token(a), path, seed, clients=4, steps=80)


async def test_a_binary_revision_closes_the_document(srv: ServerProcess, make_user: MakeUser) -> None:
    a = await user(make_user, srv)
    await put_text(a.client, "/turns.txt", "text for now")
    async with joined(srv.url, token(a), "/turns.txt") as doc:
        await put_text(a.client, "/turns.txt", b"\x89PNG\r\n\x1a\n\x00\x00")
        with pytest.raises(DocClosed) as err:
            await doc.wait_for(lambda t: False, 10)
        assert err.value.reason == "not_text"
    async with LiveSession.connect(srv.url, token(a)) as live:  # and a new join is refused
        with pytest.raises(SatchelError) as refused:
            await DocSession.join(live, "/turns.txt")
        assert refused.value.code is ErrorCode.not_text


async def test_a_multi_megabyte_document(srv: ServerProcess, make_user: MakeUser) -> None:
    a = await user(make_user, srv)
    big = "".join(f"line {i} 😀 e\u0301\n" for i in range(150_000))  # ~3 MB: the join frame is over 1 MiB
    assert len(big.encode()) > 2 * 2**20
    await put_text(a.client, "/big.md", big)
    async with joined(srv.url, token(a), "/big.md") as one, joined(srv.url, token(a), "/big.md") as two:
        assert one.value == big
        one.insert(len(big), "the end\n")
        await two.wait_for(lambda t: t.endswith("the end\n"))
        await one.wait_until(lambda: bool(one.saved), 20)
    assert await get_text(a.client, "/big.md") == big + "the end\n"


async def test_saved_on_last_leave_and_on_shutdown(tmp_path: Path, make_user: MakeUser) -> None:
    # A quiet period far longer than the test: only the last leave and the shutdown can save.
    node = ServerProcess(tmp_path / "data", {"SATCHEL_COEDIT_SAVE_DELAY": "10m"}).start()
    try:
        a = await user(make_user, node)
        await put_text(a.client, "/leave.txt", "a")
        async with joined(node.url, token(a), "/leave.txt") as doc:
            doc.insert(1, "b")
            await doc.flush()
            await asyncio.sleep(0.2)
        for _ in range(100):
            if await get_text(a.client, "/leave.txt") == "ab":
                break
            await asyncio.sleep(0.1)
        assert await get_text(a.client, "/leave.txt") == "ab"
        await put_text(a.client, "/stop.txt", "x")
        live = await _connect(node, a)
        doc = await DocSession.join(live, "/stop.txt")
        doc.insert(1, "y")
        await doc.flush()
        await asyncio.sleep(0.3)
        node.stop()  # SIGTERM: the node saves open documents before it exits
        await live.close()
        node.start()
        assert await get_text(a.client, "/stop.txt") == "xy"
    finally:
        node.stop()
