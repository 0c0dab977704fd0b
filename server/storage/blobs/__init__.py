"""Content-addressed chunk stores: one contract (``base.BlobStore``), two implementations.

``open_blob_store(config)`` picks one by URL scheme: ``file://`` (``local``, the embedded default)
or ``s3://`` (``s3``, aioboto3), importing only the one it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.config import Config
    from server.storage.blobs.base import BlobStore


def open_blob_store(config: Config) -> BlobStore:
    url = config.blob_url
    if url.startswith("file://"):
        from server.storage.blobs.local import LocalBlobStore

        return LocalBlobStore(url.removeprefix("file://"))
    if url.startswith("s3://"):
        from server.storage.blobs.s3 import S3BlobStore

        return S3BlobStore.from_config(config)
    raise ValueError(f"unknown blob store URL scheme: {url.split(':', 1)[0]!r} (use file:// or s3://)")
