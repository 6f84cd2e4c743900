"""The .sarz container: round trip, atomic writes, the file id binding header and chunks, and a clear
ContainerError for every kind of damage (splices of different files included)."""

from __future__ import annotations

import hashlib
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sar_compressor.engine.codec.format.container import (
    FORMAT_VERSION,
    MAGIC,
    READ_VERSIONS,
    ContainerReader,
    container_bytes,
    read_header,
    write_container,
)
from sar_compressor.engine.codec.format.header_dictionary import HEADER_DICTIONARIES
from sar_compressor.engine.errors import CancelledError, ContainerError

HEADER = {"format_version": FORMAT_VERSION, "model": {"name": "tiny"}, "shape": [3, 4], "nested": {"a": [1.5, None]}}
DICTIONARY_SHA256 = {
    6: "a5cfe9412b1431cdef07ad406c9de1d20dfff4e3036e2b90e7bf75ff33361064",
    7: "231c6b8321c9fff0a67bf8f9dd0b9d942f5c765453febad0f437c3751909dc23",
    8: "6a38a100c039b1acb5902eab9c56c595c8ada1da1c321d003ff43f65a1d7261e",
}
"""The dictionaries older formats' files were deflated with."""
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


def test_other_versions_are_refused_by_number(sarz):
    data = bytearray(sarz.read_bytes())
    struct.pack_into("<H", data, 4, FORMAT_VERSION + 1)
    assert "format version 14: this software reads versions 6, 7, 8, 9, 10, 11, 12, 13; a newer" in _error(data)
    struct.pack_into("<H", data, 4, 5)
    refusal = (
        "format version 5: this software reads versions 6, 7, 8, 9, 10, 11, 12, 13; decode it with SAR Compressor 0.1.x"
    )
    assert refusal in _error(data)
    assert "format version 5" in _error(bytes(data[:6]))  # refused by number before anything else is read
    struct.pack_into("<H", data, 4, 3)
    assert (
        "format version 3: this software reads versions 6, 7, 8, 9, 10, 11, 12, 13; it came from a pre-release codec"
        in _error(data)
    )


def test_every_readable_version_has_its_header_dictionary():
    """Formats 6, 7 and 8's dictionaries are the ones their files were deflated with (never changed within a
    format)."""
    assert set(HEADER_DICTIONARIES) == set(READ_VERSIONS) and max(READ_VERSIONS) == FORMAT_VERSION
    for version, digest in DICTIONARY_SHA256.items():
        assert hashlib.sha256(HEADER_DICTIONARIES[version]).hexdigest() == digest


def _v5_file() -> bytes:
    """A file as format 5 wrote it (no file id, plain CRCs): refused by its number, never misread."""
    body = zlib.compress(b"{}")
    chunk = b"payload"
    head = struct.pack("<4sHI", MAGIC, 5, len(body)) + body + struct.pack("<I", zlib.crc32(body))
    offset = len(head)
    head += struct.pack("<II", len(chunk), zlib.crc32(chunk)) + chunk
    index = struct.pack("<QI", offset, len(chunk))
    return head + index + struct.pack("<QII4s", offset + 8 + len(chunk), 1, zlib.crc32(index), b"ZRAS")


def test_a_version_5_file_is_refused_by_name():
    assert "format version 5: this software reads versions 6, 7, 8" in _error(_v5_file())


def test_file_id_is_deterministic_and_differs_between_files(sarz):
    with ContainerReader(sarz) as a, ContainerReader(container_bytes(HEADER, CHUNKS)) as b:
        assert a.file_id == b.file_id and len(a.file_id) == 32
    for header, chunks in ((HEADER, CHUNKS[:-1]), ({**HEADER, "x": 1}, CHUNKS), (HEADER, [b"other"] + CHUNKS[1:])):
        with ContainerReader(container_bytes(header, chunks)) as other:
            assert other.file_id != ContainerReader(sarz).file_id


def _parts(data: bytes) -> tuple[bytes, list[bytes]]:
    """(prefix + header + header CRC, [chunk head + payload, ...]) of a container."""
    index_offset, n, _, _ = struct.unpack("<QII4s", data[-20:])
    offsets = [struct.unpack_from("<QI", data, index_offset + 12 * i) for i in range(n)]
    start = offsets[0][0] if offsets else index_offset
    return data[:start], [data[o : o + 8 + length] for o, length in offsets]


def _assemble(head: bytes, chunks: list[bytes], file_id_of: bytes) -> bytes:
    """A container from a header part and chunk parts, its index CRC made with `file_id_of`'s file id (the
    strongest forgery: a consistent index, only the chunks foreign)."""
    file_id = file_id_of[6:22]
    index, offset = bytearray(), len(head)
    for chunk in chunks:
        index += struct.pack("<QI", offset, len(chunk) - 8)
        offset += len(chunk)
    crc = zlib.crc32(bytes(index), zlib.crc32(file_id)) & 0xFFFFFFFF
    return head + b"".join(chunks) + bytes(index) + struct.pack("<QII4s", offset, len(chunks), crc, b"ZRAS")


def test_splices_of_two_files_are_container_errors():
    """Header of A with chunks of B, in several combinations, chunks moved within a file or dropped from its
    end: every chunk that does not belong where it is read fails its CRC, naming the chunk; a header whose file
    has another number of chunks fails its own."""
    a = container_bytes(HEADER, CHUNKS)
    b = container_bytes(HEADER, [c + b"!" for c in CHUNKS])
    head_a, chunks_a = _parts(a)
    head_b, chunks_b = _parts(b)
    assert _assemble(head_a, chunks_a, a) == a
    cases = [
        (_assemble(head_a, chunks_b, a), "chunk 1 of 4 does not belong to this file"),
        (_assemble(head_a, chunks_a[:3] + chunks_b[3:], a), "chunk 4 of 4 does not belong to this file"),
        (_assemble(head_b, chunks_a, b), "chunk 1 of 4 does not belong to this file"),
        (_assemble(head_a, [chunks_a[1], chunks_a[0]] + chunks_a[2:], a), "chunk 1 of 4 does not belong"),
        (_assemble(head_a, chunks_a[:3] + chunks_a[2:3], a), "chunk 4 of 4 does not belong"),
        (_assemble(head_a, chunks_b, b), "index CRC"),  # the index of B's id behind A's header
        (_assemble(head_a, chunks_a[:2], a), "header CRC"),  # the last chunks cut off, the index rebuilt
        (_assemble(head_a, chunks_a + chunks_b[:1], a), "header CRC"),
    ]
    for data, message in cases:
        assert message in _error(data), message


def test_truncations(sarz):
    data = sarz.read_bytes()
    assert "truncated" in _error(b"")
    assert "truncated" in _error(data[:3])
    assert "truncated" in _error(data[:8])
    assert "truncated" in _error(data[:40])
    for cut in (len(data) - 1, len(data) - 30, len(data) // 2):
        assert "truncated" in _error(data[:cut]) or "damaged" in _error(data[:cut])


def test_a_file_cut_short_says_so_and_how_many_chunks_are_whole(sarz):
    """An interrupted copy or download lost the index and footer: "end marker missing" said neither what happened
    nor how much is there. A chunk whose payload is whole but not this file's is damage, not a cut."""
    data = sarz.read_bytes()
    with ContainerReader(sarz) as reader:  # where each chunk ends (its 8-byte head, then its payload)
        ends = [data.index(b"first chunk") + len(b"first chunk")]
        for length in reader.chunk_lengths[1:]:
            ends.append(ends[-1] + 8 + length)
    assert "cut short after" in _error(data[: ends[0] - 1]) and "0 chunk(s) whole" in _error(data[: ends[0] - 1])
    assert "3 chunk(s) whole before the cut" in _error(data[: ends[2] + 3])
    assert "4 chunk(s) whole" in _error(data[: ends[3] + 2])  # every chunk, the index cut
    damaged = bytearray(data[: ends[2] + 3])
    damaged[ends[2] - 5] ^= 0xFF  # chunk 3's payload, whole: not a cut
    assert "cut short" not in _error(bytes(damaged)) and "end marker missing" in _error(bytes(damaged))


def test_header_crc_and_json(sarz):
    data = bytearray(sarz.read_bytes())
    data[30] ^= 0x01
    assert "header CRC" in _error(data)
    data = bytearray(sarz.read_bytes())
    data[8] ^= 0x01  # the file id: the header's CRC covers it
    assert "header CRC" in _error(data)
    file_id = bytes(range(16))
    for body, message in (
        (b"{not deflated", "not deflated JSON"),
        (zlib.compress(b"{not json"), "not valid JSON"),
        (zlib.compress(b"[1, 2]"), "not a JSON object"),
    ):
        prefix = struct.pack("<4sH16sI", MAGIC, FORMAT_VERSION, file_id, len(body))
        crc = zlib.crc32(body, zlib.crc32(struct.pack("<I", 0), zlib.crc32(file_id)))
        end = len(prefix) + len(body) + 4
        footer = struct.pack("<QII4s", end, 0, zlib.crc32(b"", zlib.crc32(file_id)), b"ZRAS")
        assert message in _error(prefix + body + struct.pack("<I", crc) + footer)


def test_chunk_crc_names_the_chunk(sarz):
    data = bytearray(sarz.read_bytes())
    pos = data.index(b"last")
    data[pos] ^= 0xFF
    assert "chunk 4 of 4 does not belong to this file or is corrupt" in _error(data)


def test_index_damage_and_lengths_past_eof(sarz):
    data = bytearray(sarz.read_bytes())
    index_offset, n, crc, marker = struct.unpack("<QII4s", data[-20:])
    damaged = bytearray(data)
    damaged[index_offset] ^= 0x10
    assert "index CRC" in _error(damaged)
    # a consistent index (valid CRC) whose lengths run past the data section
    entries = bytearray(data[index_offset : index_offset + 12 * n])
    struct.pack_into("<QI", entries, 12 * (n - 1), *struct.unpack_from("<QI", entries, 12 * (n - 1))[:1], 10**6)
    crc_forged = zlib.crc32(bytes(entries), zlib.crc32(bytes(data[6:22])))
    forged = data[:index_offset] + entries + struct.pack("<QII4s", index_offset, n, crc_forged, marker)
    assert "outside the data section" in _error(forged)
    # footer pointing past the end
    forged = data[:-20] + struct.pack("<QII4s", len(data) * 2, n, crc, marker)
    assert "damaged chunk index" in _error(forged)


def test_out_of_range_chunk_and_missing_file(sarz, tmp_path):
    with ContainerReader(sarz) as reader:
        with pytest.raises(ContainerError, match=r"chunk index 4 out of range 0\.\.3"):
            reader.read_chunk(len(CHUNKS))
        with pytest.raises(ContainerError, match="chunk index -1 out of range"):
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


OTHER = container_bytes({**HEADER, "other": True}, [c[::-1] + b"?" for c in CHUNKS])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    take=st.lists(st.tuples(st.booleans(), st.integers(0, len(CHUNKS) - 1)), min_size=1, max_size=6),
    header_from_other=st.booleans(),
    index_from_other=st.booleans(),
)
def test_fuzz_splices_of_headers_and_chunks(take, header_from_other, index_from_other):
    """Any mix of the two files' headers and chunks, in any order, behind an index consistent with either file
    id: the spliced file is one of the originals or fails with a ContainerError."""
    head_a, chunks_a = _parts(VALID)
    head_b, chunks_b = _parts(OTHER)
    chunks = [(chunks_b if other else chunks_a)[i] for other, i in take]
    head = head_b if header_from_other else head_a
    data = _assemble(head, chunks, OTHER if index_from_other else VALID)
    try:
        with ContainerReader(data) as reader:
            for i in range(reader.n_chunks):
                reader.read_chunk(i)
    except ContainerError:
        return
    assert data in (VALID, OTHER)
