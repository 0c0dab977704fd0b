"""Domain rows to JSON-ready dicts (one place, so every route says the same thing)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from server.core import paths
from server.storage.models import Node


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def entry_json(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": node.id,
        "path": node.path,
        "name": paths.name(node.path),
        "kind": node.kind,
        "modified_at": iso(node.updated_ms),
    }
    if node.kind == "file":
        out.update(size=node.size, content_hash=node.content_hash, mime=node.mime,
                   mtime=iso(node.mtime_ms), rev=node.head_rev_id)
    return out
