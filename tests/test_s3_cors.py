"""CORS for presigned S3 transfers (server/storage/blobs/s3_cors.py) against a real rclone S3 server.

rclone has no bucket CORS configuration (its PutBucketCors is not implemented); it answers
preflights for the one origin given with ``--allow-origin``. So the start-up check must pass for
that origin, warn for any other, and never stop the store from starting (CLI clients need no CORS).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator

import httpx
import pytest

from server.config import Config
from server.core.chunking import hash_bytes
from server.storage.blobs.base import BlobKey
from server.storage.blobs.s3 import S3BlobStore
from server.storage.blobs.s3_cors import RULE_ID, merged_rules, parse_origins
from tests.harness.s3 import RcloneS3

ORIGIN = "http://127.0.0.1:18080"


@pytest.fixture(scope="module")
def cors_s3() -> Iterator[RcloneS3]:
    server = RcloneS3.start(allow_origin=ORIGIN)
    yield server
    server.stop()


def store_for(server: RcloneS3, *origins: str) -> S3BlobStore:
    return S3BlobStore(server.bucket, f"c-{secrets.token_hex(4)}", endpoint=server.endpoint,
                       access_key=server.access_key, secret_key=server.secret_key, cors_origins=origins)


def test_origins_setting() -> None:
    assert parse_origins("", "", "127.0.0.1", 8080) == ("http://127.0.0.1:8080", "http://localhost:8080")
    assert parse_origins("", "https://files.example.com/", "0.0.0.0", 8080) == ("https://files.example.com",)
    assert parse_origins("", "", "0.0.0.0", 8080) == ()  # which name browsers use is unknown
    assert parse_origins("", "", "10.0.0.5", 80) == ("http://10.0.0.5:80",)
    assert parse_origins("none", "https://x.example", "127.0.0.1", 1) == ()
    assert parse_origins(" https://A.example , http://b.example:81,https://a.example", "", "h", 1) == (
        "https://a.example", "http://b.example:81")
    for bad in ("ftp://x", "https://x.example/path", "x.example", "https://x.example?q=1"):
        with pytest.raises(ValueError):
            parse_origins(bad, "", "127.0.0.1", 1)


def test_from_config_takes_the_setting() -> None:
    cfg = Config(blob_url="s3://bkt/p", s3_cors_origins="https://app.example", port=9000)
    assert S3BlobStore.from_config(cfg).cors_origins == ("https://app.example",)
    assert S3BlobStore.from_config(Config(blob_url="s3://bkt", port=9000)).cors_origins == (
        "http://127.0.0.1:9000", "http://localhost:9000")


def test_merged_rules_keep_other_applications_rules() -> None:
    other = {"ID": "cdn", "AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}
    old_ours = {"ID": RULE_ID, "AllowedOrigins": ["https://old.example"], "AllowedMethods": ["PUT"]}
    rules = merged_rules([other, old_ours], ("https://new.example",))
    assert rules[0] == other and len(rules) == 2
    assert rules[1]["ID"] == RULE_ID and rules[1]["AllowedOrigins"] == ["https://new.example"]
    assert set(rules[1]["AllowedMethods"]) == {"PUT", "GET", "HEAD"}


async def test_allowed_origin_passes_and_a_browser_put_gets_the_cors_header(
        cors_s3: RcloneS3, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="server.storage.blobs.s3_cors")
    store = store_for(cors_s3, ORIGIN)
    await store.start()
    try:
        assert "does not allow cross-origin" not in caplog.text
        assert f"allows browser transfers from {ORIGIN}" in caplog.text
        data = b"chunk from a browser"
        key = BlobKey(1, hash_bytes(data))
        url = await store.presign_upload("u1", key, len(data), 60)
        pre = httpx.options(url.url, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == ORIGIN
        put = httpx.put(url.url, content=data, headers={**url.headers, "Origin": ORIGIN})
        assert put.status_code == 200
        assert put.headers.get_list("access-control-allow-origin") in ([ORIGIN], ["*"])
        await store.promote("u1", key, len(data))
        assert await store.exists(key)
    finally:
        await store.close()


async def test_refused_origin_is_a_warning_not_a_failed_start(
        cors_s3: RcloneS3, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="server.storage.blobs.s3_cors")
    store = store_for(cors_s3, "https://elsewhere.example")
    await store.start()  # the Python client and the CLI need no CORS
    try:
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "https://elsewhere.example" in warnings[0].getMessage()
        assert await store.exists(BlobKey(1, hash_bytes(b"nothing"))) is False
    finally:
        await store.close()


async def test_no_origins_means_no_cors_calls(cors_s3: RcloneS3, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="server.storage.blobs.s3_cors")
    store = store_for(cors_s3)
    await store.start()
    await store.close()
    assert caplog.records == []
