"""Abandoned uploads expire and their orphan chunks are collected; committed data is never touched."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from server.core.chunking import chunk_file
from server.storage.blobs.segments import stored_keys
from tests.conftest import STACKS, api, random_file

FAST_SWEEP = {"SATCHEL_UPLOAD_TTL": "2s", "SATCHEL_URL_TTL": "2s", "SATCHEL_ORPHAN_GRACE": "1s",
              "SATCHEL_SWEEP_INTERVAL": "1s"}


@pytest.mark.parametrize("stack", STACKS)
async def test_abandoned_upload_is_collected_and_committed_data_kept(stack, start_server, make_user, tmp_path):
    srv = start_server(stack, **FAST_SWEEP)
    user = await make_user(srv=srv)
    kept = random_file(tmp_path / "kept.bin", 300_000)
    await user.client.upload(kept, "/kept.bin")

    lost = random_file(tmp_path / "lost.bin", 300_000)
    refs = list(chunk_file(lost))
    body = {"path": "/lost.bin", "size": 300_000, "parent_rev": None, "chunks": [[r.hex, r.size] for r in refs]}
    info = await user.client.start_upload(body)
    async with httpx.AsyncClient() as h:
        for m in info["missing"]:
            ref = next(r for r in refs if r.hex == m["hash"])
            resp = await h.put(m["url"], content=lost.read_bytes()[ref.offset:ref.offset + ref.size],
                               headers=m["headers"])
            assert resp.status_code < 300
    if stack == "sqlite-local":
        assert len(stored_keys(srv.data_dir / "chunks")) == len({r.hex for r in refs}) + len(
            list(chunk_file(kept)))
    await asyncio.sleep(6)  # session TTL 2 s + grace 1 s + sweep every 1 s, with margin
    r = api(srv, "GET", f"/api/v1/uploads/{info['upload_id']}", user.client.token)
    assert r.status_code == 404, r.text
    again = await user.client.start_upload(body)
    assert again["missing_count"] == len({r.hex for r in refs}), "orphan chunks should be gone"
    if stack == "sqlite-local":
        assert len(stored_keys(srv.data_dir / "chunks")) == len(list(chunk_file(kept)))
    await user.client.download("/kept.bin", tmp_path / "kept.out")
    assert (tmp_path / "kept.out").read_bytes() == kept.read_bytes()
