"""Garbage collection: retention of versions and trash, admin gc (dry run first), and the race with
uploads forced: a chunk that an upload or commit starts naming during a collection is never freed."""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import replace

import pytest

from server.app import open_services
from server.config import Config
from server.core.chunking import chunk_file
from server.services import sweeper
from server.storage.blobs.segments import stored_keys
from tests.conftest import STACKS, random_file
from tests.harness.server import VENV_BIN


def admin_gc(srv, *flags: str) -> dict:
    proc = subprocess.run([str(VENV_BIN / "satchel"), "admin", "gc", "--data-dir", str(srv.data_dir), "--json",
                           *flags], env=srv.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def announce(path: str, local) -> dict:
    return {"path": path, "size": local.stat().st_size, "parent_rev": None,
            "chunks": [[r.hex, r.size] for r in chunk_file(local)]}


def chunk_files(srv) -> int:
    return len(stored_keys(srv.data_dir / "chunks"))


@pytest.mark.parametrize("stack", STACKS)
async def test_retention_and_admin_gc(stack, start_server, make_user, tmp_path):
    srv = start_server(stack, SATCHEL_RETENTION="1s", SATCHEL_ORPHAN_GRACE="1s")
    user = await make_user(srv=srv)
    c = user.client
    v1, v2 = random_file(tmp_path / "v1", 200_000), random_file(tmp_path / "v2", 200_000)
    await c.upload(v1, "/doc.bin")
    await c.upload(v2, "/doc.bin")
    await c.upload(random_file(tmp_path / "t", 100_000), "/old.bin")
    await c.delete("/old.bin")
    cursor = (await c.request("GET", "/api/v1/changes/latest"))["cursor"]
    await asyncio.sleep(1.2)
    dry = admin_gc(srv, "--dry-run")
    assert dry["dry_run"] and dry["versions"] >= 1 and dry["trash_items"] >= 1
    assert len(await c.revisions("/doc.bin")) == 2 and len(await c.trash()) == 1  # a dry run changes nothing

    done = admin_gc(srv)
    assert done["versions"] >= 1 and done["trash_items"] >= 1 and done["chunks"] >= 1
    assert [r["current"] for r in await c.revisions("/doc.bin")] == [True]
    assert await c.trash() == []
    entries = (await c.request("GET", "/api/v1/changes", params={"cursor": cursor}))["entries"]
    assert [(e["op"], e["path"]) for e in entries] == [("purge", "/old.bin")]  # devices see the purge
    await c.download("/doc.bin", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == v2.read_bytes()
    if stack == "sqlite-local":  # only the current version's chunks are left on disk
        assert chunk_files(srv) == len(list(chunk_file(v2)))
    # The freed chunks must be sent again by the next upload of the same bytes.
    again = await c.start_upload(announce("/v1-again.bin", v1))
    assert again["missing_count"] == len({r.hex for r in chunk_file(v1)})


@pytest.mark.parametrize("stack", STACKS)
async def test_collection_racing_uploads_and_commits_keeps_their_chunks(stack, start_server, make_user, tmp_path):
    srv = start_server(stack)
    user = await make_user(srv=srv)
    c = user.client
    config = replace(Config.from_env(env=srv.env, data_dir=str(srv.data_dir)), orphan_grace=0.0)

    async def unreferenced_after_purge(local, path: str) -> list[tuple[int, bytes, int]]:
        await c.upload(local, path)
        await c.delete(path)
        await c.purge(path)
        digests = {r.digest for r in chunk_file(local)}
        found = [cand for cand in await sweeper.unreferenced_chunks(svc, 100_000) if cand[1] in digests]
        assert {d for _o, d, _n in found} == digests
        return found

    async with open_services(config) as svc:
        # 1. The collector lists the chunks as unreferenced; then an upload of the same bytes starts
        #    (the server still has them, so nothing is sent) before the collector deletes.
        a = random_file(tmp_path / "a", 300_000)
        listed = await unreferenced_after_purge(a, "/a.bin")
        session = await c.start_upload(announce("/b.bin", a))
        assert session["missing_count"] == 0
        assert await sweeper.drop_chunk_rows(svc, listed) == (0, 0)
        await c.commit_upload(session["upload_id"])

        # 2. Same, but the upload starts *and commits* between the listing and the delete.
        d = random_file(tmp_path / "d", 300_000)
        listed = await unreferenced_after_purge(d, "/c.bin")
        assert (await c.start_upload(announce("/d.bin", d)))["missing_count"] == 0
        await c.upload(d, "/d.bin")
        assert await sweeper.drop_chunk_rows(svc, listed) == (0, 0)

        # 3. Control: with nothing racing, the same steps free the chunks (the test can fail).
        e = random_file(tmp_path / "e", 300_000)
        listed = await unreferenced_after_purge(e, "/e.bin")
        rows, size = await sweeper.drop_chunk_rows(svc, listed)
        assert rows == len(listed) and size == 300_000

        before = chunk_files(srv) if stack == "sqlite-local" else None
        report = await sweeper.sweep_once(svc)  # then the files of freed chunks go
        assert report["orphan_chunks"] == len(listed)
        if before is not None:
            assert chunk_files(srv) == before - len(listed)
    for local, path in ((a, "/b.bin"), (d, "/d.bin")):
        await c.download(path, tmp_path / "check")
        assert (tmp_path / "check").read_bytes() == local.read_bytes()
