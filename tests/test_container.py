"""The .sarz container: round trip, atomic writes, and a clear ContainerError for every kind of damage."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sar_compressor.engine.container import (
    FORMAT_VERSION,
    MAGIC,
    ContainerReader,
    container_bytes,
    read_header,
    write_container,
)
from sar_compressor.engine.errors import CancelledError, ContainerError

HEADER = {"format_version": 1, "model": {"name": "tiny"}, "shape": [3, 4], "nested": {"a": [1.5, None]}}
CHUNKS = [b"first chunk", b"", bytes(range(256)) * 3, b"last"]


@pytest.fixture()
def sarz(tmp_path):
    path = tmp_path / "x.sarz"
    write_container(path, HEADER, CHUNKS)
    return path


def test_round_trip_and_random_access(sarz):
    with ContainerReader(sarz) as reader:
        assert reader.header == HEADER
        assert reader.n_chunks == len(CHUNKS)
        assert reader.read_chunk(2) == CHUNKS[2]
        assert [reader.read_chunk(i) for i in range(reader.n_chunks)] == CHUNKS
    assert read_header(sarz) == HEADER
    assert sarz.read_bytes()[:4] == MAGIC


def test_bytes_version_identical_and_deterministic(sarz):
    data = container_bytes(HEADER, CHUNKS)
    assert data == sarz.read_bytes()
    assert container_bytes(dict(reversed(list(HEADER.items()))), iter(CHUNKS)) == data
    with ContainerReader(data) as reader:
        assert reader.read_chunk(3) == b"last"


def test_header_callable_is_evaluated_after_the_chunks(tmp_path):
    seen = []

    def chunks():
        for c in CHUNKS:
            seen.append(c)
            yield c

    path = tmp_path / "late.sarz"
    write_container(path, lambda: {"n_seen": len(seen)}, chunks())
    assert read_header(path) == {"n_seen": len(CHUNKS)}


def test_zero_chunks(tmp_path):
    path = tmp_path / "empty.sarz"
    write_container(path, {}, [])
    with ContainerReader(path) as reader:
        assert reader.n_chunks == 0 and reader.header == {}


def _failing_chunks():
    yield b"ok"
    raise RuntimeError("boom")


def test_failure_and_cancel_leave_no_file(tmp_path):
    path = tmp_path / "out.sarz"
    with pytest.raises(RuntimeError):
        write_container(path, HEADER, _failing_chunks())
    with pytest.raises(CancelledError):
        write_container(path, HEADER, CHUNKS, cancel=lambda: True)
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_existing_file(sarz):
    before = sarz.read_bytes()
    with pytest.raises(RuntimeError):
        write_container(sarz, HEADER, _failing_chunks())
    assert sarz.read_bytes() == before
    assert [p.name for p in sarz.parent.iterdir()] == ["x.sarz"]


def _error(data: bytes) -> str:
    with pytest.raises(ContainerError) as info, ContainerReader(bytes(data)) as reader:
        for i in range(reader.n_chunks):
            reader.read_chunk(i)
    return str(info.value)


def test_wrong_magic(sarz):
    assert "not a .sarz file" in _error(b"GIF89a" + sarz.read_bytes()[6:])
    assert "not a .sarz file" in _error(b"II*\x00" + b"\x00" * 100)


def test_unknown_version(sarz):
    data = bytearray(sarz.read_bytes())
    struct.pack_into("<H", data, 4, FORMAT_VERSION + 1)
    assert f"reads version {FORMAT_VERSION}" in _error(data)


def test_truncations(sarz):
    data = sarz.read_bytes()
    assert "truncated" in _error(b"")
    assert "truncated" in _error(data[:3])
    assert "truncated" in _error(data[:8])
    assert "truncated" in _error(data[:40])
    for cut in (len(data) - 1, len(data) - 30, len(data) // 2):
        assert "truncated" in _error(data[:cut]) or "damaged" in _error(data[:cut])


def test_header_crc_and_json(sarz):
    data = bytearray(sarz.read_bytes())
    data[12] ^= 0x01
    assert "header CRC" in _error(data)
    for body, message in (
        (b"{not deflated", "not deflated JSON"),
        (zlib.compress(b"{not json"), "not valid JSON"),
        (zlib.compress(b"[1, 2]"), "not a JSON object"),
    ):
        prefix = struct.pack("<4sHI", MAGIC, FORMAT_VERSION, len(body))
        assert message in _error(prefix + body + struct.pack("<I", zlib.crc32(body)) + b"\x00" * 20)


def test_chunk_crc_names_the_chunk(sarz):
    data = bytearray(sarz.read_bytes())
    pos = data.index(b"last")
    data[pos] ^= 0xFF
    assert "chunk 3 CRC mismatch" in _error(data)


def test_index_damage_and_lengths_past_eof(sarz):
    data = bytearray(sarz.read_bytes())
    index_offset, n, crc, marker = struct.unpack("<QII4s", data[-20:])
    damaged = bytearray(data)
    damaged[index_offset] ^= 0x10
    assert "index CRC" in _error(damaged)
    # a consistent index (valid CRC) whose lengths run past the data section
    entries = bytearray(data[index_offset : index_offset + 12 * n])
    struct.pack_into("<QI", entries, 12 * (n - 1), *struct.unpack_from("<QI", entries, 12 * (n - 1))[:1], 10**6)
    forged = data[:index_offset] + entries + struct.pack("<QII4s", index_offset, n, zlib.crc32(entries), marker)
    assert "outside the data section" in _error(forged)
    # footer pointing past the end
    forged = data[:-20] + struct.pack("<QII4s", len(data) * 2, n, crc, marker)
    assert "damaged chunk index" in _error(forged)


def test_out_of_range_chunk_and_missing_file(sarz, tmp_path):
    with ContainerReader(sarz) as reader:
        with pytest.raises(ContainerError, match="out of range"):
            reader.read_chunk(len(CHUNKS))
        with pytest.raises(ContainerError, match="out of range"):
            reader.read_chunk(-1)
    with pytest.raises(ContainerError, match="cannot open"):
        ContainerReader(tmp_path / "nope.sarz")


VALID = container_bytes(HEADER, CHUNKS)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flips=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)), max_size=4),
    cut=st.integers(0, len(VALID)),
    junk=st.binary(max_size=40),
)
def test_fuzz_only_container_errors(flips, cut, junk):
    data = bytearray(VALID)
    for pos, xor in flips:
        data[pos] ^= xor
    data = bytes(data[:cut]) + junk
    try:
        with ContainerReader(data) as reader:
            assert isinstance(reader.header, dict)
            for i in range(reader.n_chunks):
                reader.read_chunk(i)
    except ContainerError:
        pass
