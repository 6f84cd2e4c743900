"""The .sarz container: a self-describing file of independently readable, CRC-checked chunks bound to one file.

Layout (all integers little-endian), format versions 6 to 8:

    b"SARZ" | u16 format version | 16-byte file id | u32 header length | deflate(JSON header, utf-8)
            | u32 CRC32(file id | u32 n_chunks | header)
    chunk*  : u32 payload length | u32 CRC32(file id | u32 chunk number | payload) | payload
    index   : n_chunks x (u64 chunk offset | u32 payload length)
    footer  : u64 index offset | u32 n_chunks | u32 CRC32(file id | index) | b"ZRAS"

The file id is the first 16 bytes of BLAKE2b over the deflated header and every chunk (length, then payload) in
order: deterministic (the same input gives the same bytes), and different for any two files that differ. Every
CRC covers it, each chunk's CRC its number too and the header's CRC the number of chunks, so a header spliced
with another file's chunks, or chunks moved within a file or dropped from its end, fail a CRC like a damaged
byte ("chunk 4 of 9 does not belong to this file or is corrupt"), never decode to garbage. Chunks come in the order
the header's `tiling` section states (band, tile row, tile column); sarz_header describes the JSON,
docs/FORMAT.md the whole file.
The header is deflated against a preset dictionary (header_dictionary): on a small crop its JSON
(georeferencing, tags) would otherwise be a large share of the bits per pixel. The trailer lets a reader
seek straight to the chunks a window needs; the header comes first so `info` reads only the start of the
file (plus the footer to validate it). Every defect becomes a `ContainerError`; an older version is refused by
number.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tempfile
import uuid
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union

from ...errors import CancelledError, ContainerError
from .header_dictionary import HEADER_DICTIONARIES

MAGIC = b"SARZ"
FORMAT_VERSION = 13
"""13: a band with a GDAL scale or offset (value = raw * scale + offset: a dB x 100 int16 product's 0.01) is coded in
those values, and decoded back to raw ones (Layout.scaling; 12 and below coded the raw values, which made a dB x 100
product's hundreds of "dB" overflow). A file with no such band is written as PLAIN_VERSION, the same chunks and
header fields as 0.6 wrote, so that older software keeps reading it. 12: a pixel that is not a coded bright target is
never lifted above the bright threshold by its block's offset (engine.codec.radiometry._cap_band; the block's other
pixels take the rest of its mean), with everything else as format 11 writes it. 11: a band's block means are kept per
256x256 block (was 64x64; the header's gain_blocks.block_size), with the refinement layer as format 10 codes it. 10:
the signs of each detail subband's second checkerboard phase may be coded under a law of their neighbours' signs that
the tile's encoder fits (engine.codec.entropy.sign_contexts), and that phase predicted from its first
(engine.codec.entropy.phase_prediction); both laws ride in the refinement layer's side information after the
inter-scale predictors. 9: each tile may predict its finest levels' LH and HL subbands from the approximation above
them (engine.codec.transform.interscale; the predictors ride in the refinement layer's side information). 8: the
refinement layer's contexts are finer (17 activity buckets, was 13) and a group's table index is coded under a
narrower law (engine.codec.entropy.contexts.CONTEXTS). 7: a band's block means are coded in a step of its own (header:
the band's mean_log2_step), and every block takes an offset of its own (radiometry.offset_field; 6 interpolated them
between block centres). 6: the autoencoder base is retired (no latents in chunks), a file id binds the header and
every chunk, the header lists bands and states the tiling. 5: the refinement layer's wavelet goes to 8 levels (was
5). 4: block gains are decoded as offsets spread by intensity (radiometry). This software writes 13 or 12 and reads
6, 7, 8, 9, 10 and 11 as they were written (the same pixels); 5 and below are refused by number and need the software
that wrote them (SAR Compressor 0.1.x reads version 5)."""
PLAIN_VERSION = 12
"""The version of a file none of whose bands has a scale or offset: format 13 adds nothing else."""
READ_VERSIONS = (6, 7, 8, 9, 10, 11, PLAIN_VERSION, FORMAT_VERSION)
"""The versions this software decodes (sarz_header reads each as its version says)."""
LAST_RELEASE_FOR = {5: "0.1.x"}
"""The software that still reads an older format, named in the refusal."""
FILE_ID_BYTES = 16
END_MARKER = b"ZRAS"
MAX_HEADER_BYTES = 64 * 1024 * 1024
MAX_HEADER_TEXT = 256 * 1024 * 1024
"""The most a header's JSON may take once inflated (a deflate stream of zeros inflates 1000-fold: a forged header
would otherwise take the reader's memory before its JSON is read); the writer holds to it too."""

_MAGIC_VERSION = struct.Struct("<4sH")  # magic, format version
_PREFIX = struct.Struct(f"<4sH{FILE_ID_BYTES}sI")  # magic, format version, file id, header length
_U32 = struct.Struct("<I")
_CHUNK_HEAD = struct.Struct("<II")  # payload length, payload CRC32
_INDEX_ENTRY = struct.Struct("<QI")  # chunk offset, payload length
_FOOTER = struct.Struct("<QII4s")  # index offset, n_chunks, index CRC32, end marker

HeaderSource = Union[dict, Callable[[], dict]]


def _crc(*parts: bytes) -> int:
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc & 0xFFFFFFFF


def _header_crc(file_id: bytes, n_chunks: int, header_bytes: bytes) -> int:
    """The header's CRC: its bytes, the file it belongs to and how many chunks that file has."""
    return _crc(file_id, _U32.pack(n_chunks), header_bytes)


def _chunk_crc(file_id: bytes, i: int, payload: bytes) -> int:
    """A chunk's CRC: its bytes, its place in the file and the file it belongs to."""
    return _crc(file_id, _U32.pack(i), payload)


def version_of(header: dict) -> int:
    """The format version a header is written as: its own `format_version` where this software reads that one (the
    encoder writes PLAIN_VERSION or FORMAT_VERSION; tests relabel older ones), else FORMAT_VERSION (a header of
    another layout, as the tests write). The file's prefix says it, and a reader refuses a header that says another."""
    version = header.get("format_version")
    return version if version in READ_VERSIONS else FORMAT_VERSION


def encode_header(header: dict) -> bytes:
    """Canonical JSON (sorted keys, no whitespace), deflated: equal headers give equal bytes."""
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if len(text) > MAX_HEADER_TEXT:
        raise ValueError(f"header too large ({len(text)} characters of JSON)")
    deflate = zlib.compressobj(9, zdict=HEADER_DICTIONARIES[version_of(header)])
    return deflate.compress(text.encode("utf-8")) + deflate.flush()


def _write_stream(out: BinaryIO, header: HeaderSource, chunks: Iterable[bytes], spool: BinaryIO, cancel) -> None:
    """Spool the chunks first: the header may hold statistics only known once all chunks exist, and the file id
    (which every chunk's CRC covers) hashes the header and the chunks."""
    identity = hashlib.blake2b(digest_size=FILE_ID_BYTES)
    lengths: list[int] = []
    for payload in chunks:
        if cancel is not None and cancel():
            raise CancelledError("cancelled by the user")
        payload = bytes(payload)
        identity.update(struct.pack("<Q", len(payload)))
        identity.update(payload)
        spool.write(payload)
        lengths.append(len(payload))
    if cancel is not None and cancel():  # asked while the last chunk was made
        raise CancelledError("cancelled by the user")
    header = header() if callable(header) else header
    header_bytes = encode_header(header)
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise ValueError(f"header too large ({len(header_bytes)} bytes)")
    identity.update(header_bytes)
    file_id = identity.digest()
    out.write(_PREFIX.pack(MAGIC, version_of(header), file_id, len(header_bytes)))
    out.write(header_bytes)
    out.write(_U32.pack(_header_crc(file_id, len(lengths), header_bytes)))
    offset = out.tell()
    spool.seek(0)
    index = bytearray()
    for i, length in enumerate(lengths):
        payload = spool.read(length)
        out.write(_CHUNK_HEAD.pack(length, _chunk_crc(file_id, i, payload)))
        out.write(payload)
        index += _INDEX_ENTRY.pack(offset, length)
        offset += _CHUNK_HEAD.size + length
    out.write(index)
    out.write(_FOOTER.pack(offset, len(lengths), _crc(file_id, bytes(index)), END_MARKER))


def write_container(
    path: Union[str, Path],
    header: HeaderSource,
    chunks: Iterable[bytes],
    cancel: Optional[Callable[[], bool]] = None,
) -> int:
    """Write a .sarz atomically (temp file in the same folder + rename); returns the file size.

    `header` may be a callable, evaluated after the last chunk, so it can carry statistics of the whole run.
    On any error, cancel or interrupt the temp file is removed and `path` is left untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        # open(..., "xb") rather than mkstemp: the file gets the usual umask permissions, not 0600
        with open(tmp, "xb") as out, tempfile.TemporaryFile(dir=path.parent) as spool:
            _write_stream(out, header, chunks, spool, cancel)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path.stat().st_size


def container_bytes(header: HeaderSource, chunks: Iterable[bytes], cancel=None) -> bytes:
    """The same container in memory (array round trips, tests)."""
    out = io.BytesIO()
    with tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024) as spool:
        _write_stream(out, header, chunks, spool, cancel)
    return out.getvalue()


def chunk_name(i: int, n_chunks: int) -> str:
    """Chunk i (its 0-based place in the index) as every message names it: counted from 1, with the total ("chunk 1
    of 1"; a bare "chunk 0" read as a mistake, and some messages counted a band's tiles instead)."""
    return f"chunk {i + 1} of {n_chunks}"


class ContainerReader:
    """Validates the header and the chunk index on open; `read_chunk(i)` seeks and reads only chunk i.

    Accepts a path or the bytes of a container. Use as a context manager (closes the file).
    """

    def __init__(self, source: Union[str, Path, bytes, bytearray]):
        if isinstance(source, (bytes, bytearray)):
            self._f: BinaryIO = io.BytesIO(bytes(source))
            self.name = "<bytes>"
        else:
            self.name = str(source)
            try:
                self._f = open(source, "rb")  # noqa: SIM115 (closed by close())
            except OSError as exc:
                raise ContainerError(f"cannot open {source}: {exc.strerror or exc}") from exc
        try:
            self._size = self._f.seek(0, io.SEEK_END)
            self.header: dict = self._read_header()
            self._offsets, self._lengths = self._read_index()
        except BaseException:
            self._f.close()
            raise

    def __enter__(self) -> ContainerReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    @property
    def n_chunks(self) -> int:
        return len(self._offsets)

    @property
    def file_size(self) -> int:
        return self._size

    @property
    def chunk_lengths(self) -> list[int]:
        """Each chunk's payload length, from the index (nothing read)."""
        return list(self._lengths)

    def _read_at(self, offset: int, n: int, what: str) -> bytes:
        self._f.seek(offset)
        data = self._f.read(n)
        if len(data) != n:
            raise ContainerError(f"{self.name}: truncated .sarz file ({what} runs past the end of the file)")
        return data

    @property
    def file_id(self) -> str:
        """The file's identifier, in hex (for `info`)."""
        return self._file_id.hex()

    def _read_header(self) -> dict:
        self._f.seek(0)
        start = self._f.read(_PREFIX.size)
        if not MAGIC.startswith(start[: len(MAGIC)]):
            raise ContainerError(f"{self.name}: not a .sarz file (wrong magic bytes)")
        if len(start) >= _MAGIC_VERSION.size:
            _check_version(self.name, _MAGIC_VERSION.unpack_from(start)[1])
        if len(start) < _PREFIX.size:
            raise ContainerError(f"{self.name}: truncated .sarz file (incomplete file prefix)")
        _, version, self._file_id, header_len = _PREFIX.unpack(start)
        if header_len > MAX_HEADER_BYTES or _PREFIX.size + header_len + _U32.size > self._size:
            raise ContainerError(f"{self.name}: truncated .sarz file (header length {header_len} past the end)")
        raw = self._read_at(_PREFIX.size, header_len + _U32.size, "header")
        header_bytes, (crc,) = raw[:header_len], _U32.unpack(raw[header_len:])
        self._data_start = _PREFIX.size + header_len + _U32.size
        if _header_crc(self._file_id, self._footer()[1], header_bytes) != crc:
            raise ContainerError(f"{self.name}: header CRC mismatch (the file is corrupt)")
        try:
            inflate = zlib.decompressobj(zdict=HEADER_DICTIONARIES[version])
            text = inflate.decompress(header_bytes, MAX_HEADER_TEXT + 1)
            if len(text) > MAX_HEADER_TEXT:
                raise zlib.error(f"it inflates past {MAX_HEADER_TEXT} bytes")
            if not inflate.eof or inflate.unused_data:
                raise zlib.error("the deflate stream does not end where the header does")
            header = json.loads(text.decode("utf-8"))
        except zlib.error as exc:  # each version inflates with its own dictionary
            raise ContainerError(
                f"{self.name}: header is not deflated JSON of format {version} ({exc}; is the version damaged?)"
            ) from exc
        except (UnicodeDecodeError, ValueError) as exc:
            raise ContainerError(f"{self.name}: header is not valid JSON ({exc})") from exc
        if not isinstance(header, dict):
            raise ContainerError(f"{self.name}: header is not a JSON object")
        if header.get("format_version", version) != version:  # the prefix's version is under no CRC
            raise ContainerError(
                f"{self.name}: the file prefix says format {version}, its header {header.get('format_version')!r} "
                "(the file is damaged)"
            )
        return header

    def _footer(self) -> tuple[int, int, int]:
        """(index offset, chunk count, index CRC) from the footer, its end marker checked."""
        if self._size < self._data_start + _FOOTER.size:
            raise ContainerError(f"{self.name}: truncated .sarz file (no chunk index{self._whole()})")
        index_offset, n, index_crc, marker = _FOOTER.unpack(
            self._read_at(self._size - _FOOTER.size, _FOOTER.size, "footer")
        )
        if marker != END_MARKER:
            raise ContainerError(f"{self.name}: truncated or damaged .sarz file (end marker missing{self._whole()})")
        return index_offset, n, index_crc

    def _whole(self) -> str:
        """What a file without its end holds, for the message: its chunks walked from the first (each one's head
        gives its length, its CRC binds it to this file and its number) while they are whole. A file cut short (an
        interrupted copy or download) lost its index and footer, where a reader looks first."""
        offset, whole, cut = self._data_start, 0, True
        while offset + _CHUNK_HEAD.size <= self._size:
            self._f.seek(offset)
            length, crc = _CHUNK_HEAD.unpack(self._f.read(_CHUNK_HEAD.size))
            if offset + _CHUNK_HEAD.size + length > self._size:
                break  # runs past the end: cut there
            if _chunk_crc(self._file_id, whole, self._f.read(length)) != crc:
                cut = False  # a whole chunk that is not this file's: damaged, not cut short
                break
            whole, offset = whole + 1, offset + _CHUNK_HEAD.size + length
        if not cut:
            return ""
        return (
            f"; cut short after {self._size} bytes, an interrupted copy or download? {whole} chunk(s) whole before "
            "the cut, no chunk index: copy or download it again"
        )

    def _read_index(self) -> tuple[list[int], list[int]]:
        index_offset, n, index_crc = self._footer()
        index_len = n * _INDEX_ENTRY.size
        if index_offset < self._data_start or index_offset + index_len + _FOOTER.size != self._size:
            raise ContainerError(f"{self.name}: damaged chunk index (its position does not match the file size)")
        index = self._read_at(index_offset, index_len, "chunk index")
        if _crc(self._file_id, index) != index_crc:
            raise ContainerError(f"{self.name}: chunk index CRC mismatch (the file is corrupt)")
        offsets, lengths = [], []
        expected = self._data_start
        n_chunks = len(index) // _INDEX_ENTRY.size
        for i, (offset, length) in enumerate(_INDEX_ENTRY.iter_unpack(index)):
            if offset != expected or offset + _CHUNK_HEAD.size + length > index_offset:
                where = chunk_name(i, n_chunks)
                raise ContainerError(f"{self.name}: {where} offset/length point outside the data section")
            offsets.append(offset)
            lengths.append(length)
            expected = offset + _CHUNK_HEAD.size + length
        if expected != index_offset:
            raise ContainerError(f"{self.name}: damaged chunk index (unaccounted bytes before the index)")
        return offsets, lengths

    def holds(self, i: int) -> str:
        """What chunk i holds, for messages about a file of several bands ("band 3's tile 1 of 6": a predicted band's
        read fails on its reference band's damaged chunk, which the message must name); empty for one band."""
        bands = self.header.get("bands") or []
        if len(bands) < 2 or self.n_chunks % len(bands):
            return ""
        per_band = self.n_chunks // len(bands)
        return f"band {bands[i // per_band]['source_band']}'s tile {i % per_band + 1} of {per_band}"

    def read_chunk(self, i: int) -> bytes:
        """Payload of chunk i (0-based), CRC-checked; errors name it as chunk_name does."""
        if not 0 <= i < self.n_chunks:
            raise ContainerError(f"{self.name}: chunk index {i} out of range 0..{self.n_chunks - 1}")
        where = chunk_name(i, self.n_chunks)
        head = self._read_at(self._offsets[i], _CHUNK_HEAD.size, where)
        length, crc = _CHUNK_HEAD.unpack(head)
        if length != self._lengths[i]:
            raise ContainerError(f"{self.name}: {where} length field disagrees with the index (corrupt)")
        payload = self._read_at(self._offsets[i] + _CHUNK_HEAD.size, length, where)
        if _chunk_crc(self._file_id, i, payload) != crc:
            holds = self.holds(i)
            held = f"; it holds {holds}" if holds else ""
            raise ContainerError(
                f"{self.name}: {where} does not belong to this file or is corrupt (CRC mismatch{held})"
            )
        return payload


def _check_version(name: str, version: int) -> None:
    """ContainerError naming the version when it is not this software's."""
    if version in READ_VERSIONS:
        return
    if version > FORMAT_VERSION:
        advice = "a newer SAR Compressor wrote it: update the software"
    elif version in LAST_RELEASE_FOR:
        advice = f"decode it with SAR Compressor {LAST_RELEASE_FOR[version]}"
    else:
        advice = "it came from a pre-release codec that no release reads"
    raise ContainerError(
        f"{name}: .sarz format version {version}: this software reads versions "
        f"{', '.join(map(str, READ_VERSIONS))}; {advice}"
    )


def read_header(source: Union[str, Path, bytes]) -> dict:
    """Header of a .sarz file (validates the whole structure, reads no chunk payloads)."""
    with ContainerReader(source) as reader:
        return reader.header
