"""Co-editing across two nodes (PostgreSQL + S3 + Redis, as in test_cluster.py): sessions on
different nodes see each other's edits and cursors, one save wins, an external revision is merged
exactly once, and random concurrent editing converges."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from python_client.coedit import DocSession
from tests.coedit_helpers import get_text, joined, put_text
from tests.conftest import User
from tests.harness.server import ServerProcess
from tests.test_cluster import nodes, on_both, redis  # noqa: F401  (fixtures)
from tests.test_coedit import run_convergence, token

MakeUser = Callable[..., Any]
Nodes = tuple[ServerProcess, ServerProcess]


async def test_editors_on_two_nodes_converge_and_save_once(nodes: Nodes, make_user: MakeUser) -> None:  # noqa: F811
    a, b, _ns = await on_both(make_user, nodes)
    await put_text(a.client, "/two.md", "shared line\n")
    async with joined(nodes[0].url, token(a), "/two.md") as one, joined(nodes[1].url, token(b), "/two.md") as two:
        one.set_awareness({"user": {"name": "on n1"}})
        two.set_awareness({"user": {"name": "on n2"}})
        one.insert(0, "n1 😀 ")
        two.insert(len(two.value), "n2 e\u0301\n")
        await one.wait_for(lambda t: "n2" in t)
        await two.wait_for(lambda t: "n1" in t)
        assert one.value == two.value
        await one.wait_until(lambda: {"user": {"name": "on n2"}} in one.peers.values())
        await two.wait_until(lambda: {"user": {"name": "on n1"}} in two.peers.values())
        for _ in range(300):  # each session wakes only for its own frames: poll both
            if one.saved and two.saved and one.saved[-1] == two.saved[-1]:
                break
            await asyncio.sleep(0.05)
        assert one.saved and one.saved[-1] == two.saved[-1], (one.saved, two.saved)
        final = one.value
    assert await get_text(a.client, "/two.md") == final
    revs = await a.client.revisions("/two.md")
    assert sum(1 for r in revs if r["size"] == len(final.encode())) >= 1
    assert len(revs) <= 4  # the upload plus at most a few saves, not one per node per edit


async def test_external_revision_is_merged_once_across_nodes(nodes: Nodes, make_user: MakeUser) -> None:  # noqa: F811
    a, b, _ns = await on_both(make_user, nodes)
    await put_text(a.client, "/ext.md", "alpha\nbeta\n")
    async with joined(nodes[0].url, token(a), "/ext.md") as one, joined(nodes[1].url, token(b), "/ext.md") as two:
        one.insert(0, "live ")
        await two.wait_for(lambda t: t.startswith("live "))
        await one.wait_until(lambda: bool(one.saved), 15)
        await two.wait_until(lambda: bool(two.saved), 15)
        saved = await get_text(a.client, "/ext.md")
        await put_text(a.client, "/ext.md", saved + "gamma from the desktop\n")
        want = "live alpha\nbeta\ngamma from the desktop\n"
        await one.wait_for(lambda t: t == want, 15)
        await two.wait_for(lambda t: t == want, 15)
        await asyncio.sleep(1)
        assert one.value == two.value == want  # both nodes merged it, and it is there once


async def test_random_convergence_across_nodes(nodes: Nodes, make_user: MakeUser) -> None:  # noqa: F811
    u: User = await make_user("d", srv=nodes[0])
    for seed in range(30):
        path = f"/cl-{seed}.txt"
        await put_text(u.client, path, "x\n")
        await run_convergence([nodes[0].url, nodes[1].url], token(u), path, seed, clients=4, steps=40)


async def test_a_join_on_the_other_node_sees_unsaved_edits(nodes: Nodes, make_user: MakeUser) -> None:  # noqa: F811
    a, b, _ns = await on_both(make_user, nodes)
    await put_text(a.client, "/late.md", "base")
    async with joined(nodes[0].url, token(a), "/late.md") as one:
        one.insert(4, " + unsaved")
        await one.flush()
        await asyncio.sleep(0.05)  # well inside the save delay
        async with joined(nodes[1].url, token(b), "/late.md") as two:
            assert isinstance(two, DocSession)
            await two.wait_for(lambda t: t == "base + unsaved", 10)
