"""``filechunks``: whatever the download's piece sizes, each chunk's pieces join to the Base64
of exactly its bytes (kingdee.md §10.4.1), sizes add up, only the last is marked last."""

from __future__ import annotations

import base64
import random
from collections.abc import AsyncIterator

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dingdee_loader.filechunks import Chunk, chunked, send_byte_body


async def _pieces(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    pos = 0
    for cut in sorted(cuts):
        yield data[pos:cut]
        pos = cut
    yield data[pos:]


async def _collect(data: bytes, cuts: list[int], chunk_bytes: int) -> list[Chunk]:
    return [c async for c in chunked(_pieces(data, cuts), chunk_bytes)]


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(0, 300),
    chunk_bytes=st.integers(1, 64),
    cuts=st.lists(st.integers(0, 300), max_size=12),
)
async def test_chunks_are_the_base64_of_their_bytes(
    size: int, chunk_bytes: int, cuts: list[int]
) -> None:
    data = random.Random(size).randbytes(size)
    chunks = await _collect(data, [min(c, size) for c in cuts], chunk_bytes)
    expected = [data[i : i + chunk_bytes] for i in range(0, size, chunk_bytes)] or [b""]
    assert [b"".join(c.parts) for c in chunks] == [base64.b64encode(e) for e in expected]
    assert [c.size for c in chunks] == [len(e) for e in expected]
    assert [c.last for c in chunks] == [False] * (len(expected) - 1) + [True]


async def test_a_file_of_whole_chunks_ends_with_a_full_last_chunk() -> None:
    data = bytes(range(256)) * 4
    chunks = await _collect(data, [100, 700], 256)
    assert [c.size for c in chunks] == [256] * 4 and chunks[-1].last


async def test_the_body_is_the_json_kingdee_reads() -> None:
    (chunk,) = await _collect(b"\x00\xffabc", [2], 1024)
    head = orjson.dumps({"data": {"FileName": "发票.pdf", "IsLast": True}})
    body = orjson.loads(b"".join(send_byte_body(head, chunk)))
    assert body == {
        "data": {
            "FileName": "发票.pdf",
            "IsLast": True,
            "SendByte": base64.b64encode(b"\x00\xffabc").decode(),
        }
    }
    with pytest.raises(ValueError, match="data"):
        send_byte_body(b"[]", chunk)
