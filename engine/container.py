"""The .sarz container: a self-describing file of independently readable, CRC-checked chunks.

Layout (all integers little-endian):

    b"SARZ" | u16 format version | u32 header length | deflate(JSON header, utf-8) | u32 CRC32(header)
    chunk*  : u32 payload length | u32 CRC32(payload) | payload
    index   : n_chunks x (u64 chunk offset | u32 payload length)
    footer  : u64 index offset | u32 n_chunks | u32 CRC32(index) | b"ZRAS"

The header is deflated against a preset dictionary (header_dictionary): on a small crop its JSON
(georeferencing, tags) would otherwise be a large share of the bits per pixel. The trailer lets a reader
seek straight to the chunks a window needs; the header comes first so `info` reads only the start of the
file (plus the footer to validate it). Every defect becomes a `ContainerError`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile
import uuid
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union

from .errors import CancelledError, ContainerError
from .header_dictionary import HEADER_DICTIONARY

MAGIC = b"SARZ"
FORMAT_VERSION = 5
"""5: the refinement layer's wavelet goes to 8 levels (was 5). 4: block gains are decoded as offsets spread by
intensity (radiometry). 1-4 came from pre-release codecs and are refused: their refinement layers have other
subbands (4) or would decode with the wrong offsets (3)."""
END_MARKER = b"ZRAS"
MAX_HEADER_BYTES = 64 * 1024 * 1024

_PREFIX = struct.Struct("<4sHI")  # magic, format version, header length
_U32 = struct.Struct("<I")
_CHUNK_HEAD = struct.Struct("<II")  # payload length, payload CRC32
_INDEX_ENTRY = struct.Struct("<QI")  # chunk offset, payload length
_FOOTER = struct.Struct("<QII4s")  # index offset, n_chunks, index CRC32, end marker

HeaderSource = Union[dict, Callable[[], dict]]


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def encode_header(header: dict) -> bytes:
    """Canonical JSON (sorted keys, no whitespace), deflated: equal headers give equal bytes."""
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False)
    deflate = zlib.compressobj(9, zdict=HEADER_DICTIONARY)
    return deflate.compress(text.encode("utf-8")) + deflate.flush()


def _write_stream(out: BinaryIO, header: HeaderSource, chunks: Iterable[bytes], spool: BinaryIO, cancel) -> None:
    """Spool the chunks first: the header may hold statistics only known once all chunks exist."""
    lengths: list[int] = []
    for payload in chunks:
        if cancel is not None and cancel():
            raise CancelledError("cancelled by the user")
        payload = bytes(payload)
        spool.write(_CHUNK_HEAD.pack(len(payload), _crc(payload)))
        spool.write(payload)
        lengths.append(len(payload))
    header_bytes = encode_header(header() if callable(header) else header)
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise ValueError(f"header too large ({len(header_bytes)} bytes)")
    out.write(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header_bytes)))
    out.write(header_bytes)
    out.write(_U32.pack(_crc(header_bytes)))
    offset = out.tell()
    spool.seek(0)
    shutil.copyfileobj(spool, out)
    index = bytearray()
    for length in lengths:
        index += _INDEX_ENTRY.pack(offset, length)
        offset += _CHUNK_HEAD.size + length
    out.write(index)
    out.write(_FOOTER.pack(offset, len(lengths), _crc(bytes(index)), END_MARKER))


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

    def _read_at(self, offset: int, n: int, what: str) -> bytes:
        self._f.seek(offset)
        data = self._f.read(n)
        if len(data) != n:
            raise ContainerError(f"{self.name}: truncated .sarz file ({what} runs past the end of the file)")
        return data

    def _read_header(self) -> dict:
        self._f.seek(0)
        start = self._f.read(_PREFIX.size)
        if not MAGIC.startswith(start[: len(MAGIC)]):
            raise ContainerError(f"{self.name}: not a .sarz file (wrong magic bytes)")
        if len(start) < _PREFIX.size:
            raise ContainerError(f"{self.name}: truncated .sarz file (incomplete file prefix)")
        _, version, header_len = _PREFIX.unpack(start)
        if version != FORMAT_VERSION:
            raise ContainerError(
                f"{self.name}: unsupported .sarz format version {version} (this software reads version "
                f"{FORMAT_VERSION})"
            )
        if header_len > MAX_HEADER_BYTES or _PREFIX.size + header_len + _U32.size > self._size:
            raise ContainerError(f"{self.name}: truncated .sarz file (header length {header_len} past the end)")
        raw = self._read_at(_PREFIX.size, header_len + _U32.size, "header")
        header_bytes, (crc,) = raw[:header_len], _U32.unpack(raw[header_len:])
        if _crc(header_bytes) != crc:
            raise ContainerError(f"{self.name}: header CRC mismatch (the file is corrupt)")
        try:
            inflate = zlib.decompressobj(zdict=HEADER_DICTIONARY)
            text = inflate.decompress(header_bytes) + inflate.flush()
            if not inflate.eof or inflate.unused_data:
                raise zlib.error("the deflate stream does not end where the header does")
            header = json.loads(text.decode("utf-8"))
        except zlib.error as exc:
            raise ContainerError(f"{self.name}: header is not deflated JSON ({exc})") from exc
        except (UnicodeDecodeError, ValueError) as exc:
            raise ContainerError(f"{self.name}: header is not valid JSON ({exc})") from exc
        if not isinstance(header, dict):
            raise ContainerError(f"{self.name}: header is not a JSON object")
        self._data_start = _PREFIX.size + header_len + _U32.size
        return header

    def _read_index(self) -> tuple[list[int], list[int]]:
        if self._size < self._data_start + _FOOTER.size:
            raise ContainerError(f"{self.name}: truncated .sarz file (no chunk index)")
        index_offset, n, index_crc, marker = _FOOTER.unpack(
            self._read_at(self._size - _FOOTER.size, _FOOTER.size, "footer")
        )
        if marker != END_MARKER:
            raise ContainerError(f"{self.name}: truncated or damaged .sarz file (end marker missing)")
        index_len = n * _INDEX_ENTRY.size
        if index_offset < self._data_start or index_offset + index_len + _FOOTER.size != self._size:
            raise ContainerError(f"{self.name}: damaged chunk index (its position does not match the file size)")
        index = self._read_at(index_offset, index_len, "chunk index")
        if _crc(index) != index_crc:
            raise ContainerError(f"{self.name}: chunk index CRC mismatch (the file is corrupt)")
        offsets, lengths = [], []
        expected = self._data_start
        for i, (offset, length) in enumerate(_INDEX_ENTRY.iter_unpack(index)):
            if offset != expected or offset + _CHUNK_HEAD.size + length > index_offset:
                raise ContainerError(f"{self.name}: chunk {i} offset/length point outside the data section")
            offsets.append(offset)
            lengths.append(length)
            expected = offset + _CHUNK_HEAD.size + length
        if expected != index_offset:
            raise ContainerError(f"{self.name}: damaged chunk index (unaccounted bytes before the index)")
        return offsets, lengths

    def read_chunk(self, i: int) -> bytes:
        """Payload of chunk i, CRC-checked."""
        if not 0 <= i < self.n_chunks:
            raise ContainerError(f"{self.name}: chunk {i} out of range (the file has {self.n_chunks} chunks)")
        head = self._read_at(self._offsets[i], _CHUNK_HEAD.size, f"chunk {i}")
        length, crc = _CHUNK_HEAD.unpack(head)
        if length != self._lengths[i]:
            raise ContainerError(f"{self.name}: chunk {i} length field disagrees with the index (corrupt)")
        payload = self._read_at(self._offsets[i] + _CHUNK_HEAD.size, length, f"chunk {i}")
        if _crc(payload) != crc:
            raise ContainerError(f"{self.name}: chunk {i} CRC mismatch (the file is corrupt)")
        return payload


def read_header(source: Union[str, Path, bytes]) -> dict:
    """Header of a .sarz file (validates the whole structure, reads no chunk payloads)."""
    with ContainerReader(source) as reader:
        return reader.header
