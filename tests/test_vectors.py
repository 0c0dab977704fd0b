"""The shared vectors in tests/vectors/ (also loaded by client_js/test/) match the Python code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from server.core import chunking
from server.ws import protocol
from tests.vectors import make_vectors


def from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bin"}:
            return bytes.fromhex(value["$bin"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


@pytest.mark.parametrize("name", sorted(make_vectors.DOCUMENTS))
def test_vector_files_have_not_drifted(name: str) -> None:
    on_disk = (make_vectors.HERE / name).read_text(encoding="utf-8")
    assert on_disk == make_vectors.render(name), f"run: python -m tests.vectors.make_vectors ({name} drifted)"


def test_frames_round_trip_through_the_protocol_module() -> None:
    doc = json.loads((make_vectors.HERE / "frames.json").read_text(encoding="utf-8"))
    assert doc["frames"]
    for vec in doc["frames"]:
        frame = protocol.decode(bytes.fromhex(vec["hex"]))
        assert (int(frame.type), frame.id, frame.body) == (vec["type"], vec["id"], from_json(vec["body"]))
        assert protocol.encode(frame).hex() == vec["hex"]
    for bad in doc["bad_frames"]:
        with pytest.raises(protocol.ProtocolError) as info:
            protocol.decode(bytes.fromhex(bad["hex"]))
        assert isinstance(info.value, protocol.FrameError) == (bad["error"] == "frame_error"), bad["name"]


def test_chunk_vectors_use_the_documented_input_bytes() -> None:
    doc = json.loads((make_vectors.HERE / "chunks.json").read_text(encoding="utf-8"))
    case = next(c for c in doc["cases"] if c["name"] == "small")
    data = make_vectors.pseudo_random(case["seed"], case["size"])
    assert [[r.offset, r.size, r.hex] for r in chunking.chunk_bytes(data)] == case["chunks"]
