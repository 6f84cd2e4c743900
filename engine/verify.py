"""`verify`: is a .sarz file whole? Every chunk's CRC, then a full trial decode whose pixels go nowhere.

`info` reads only the header and the index, so a file with a damaged chunk looked fine until a decompress
failed on it (issue 22); this reads every byte and runs the decoder, without writing anything.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from .codec.format.container import ContainerReader, chunk_name
from .codec.passes.decode_pass import band_passes, run_passes
from .codec.passes.strip_window import Cancel, Progress, check_cancel
from .errors import ContainerError

PathLike = Union[str, "os.PathLike[str]"]
DECODE_FAILURES = (ContainerError, ValueError, IndexError, struct.error, zlib.error)
"""What a chunk whose CRC holds but whose content is wrong (a buggy or foreign writer) raises while decoding."""


@dataclass
class VerifyReport:
    """A file that passed: its size in chunks and pixels."""

    path: str
    n_chunks: int
    width: int
    height: int

    def summary(self) -> str:
        return f"ok: {self.n_chunks} chunks CRC-checked, {self.width}x{self.height} decoded without error"


class _TrackingReader:
    """The reader as DecodePass sees it, remembering the last chunk it read (to name a chunk that fails)."""

    def __init__(self, reader: ContainerReader):
        self._reader = reader
        self.last = -1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def read_chunk(self, i: int) -> bytes:
        self.last = i
        return self._reader.read_chunk(i)


def _check_chunks(reader: ContainerReader, path: PathLike, cancel: Cancel) -> None:
    """Every chunk's length and CRC; ContainerError naming all the damaged ones."""
    damaged = []
    for i in range(reader.n_chunks):
        check_cancel(cancel)
        try:
            reader.read_chunk(i)
        except ContainerError:
            damaged.append(i)
    if damaged:
        held = [reader.holds(i) for i in damaged]
        names = ", ".join(chunk_name(i, reader.n_chunks) + (f" ({h})" if h else "") for i, h in zip(damaged, held))
        predicted = ", nor those of a band predicted from theirs" if any(held) else ""
        raise ContainerError(
            f"{path}: {names} damaged (CRC mismatch or wrong length): the rows they hold cannot be decoded{predicted}"
        )


def _discard(row0: int, rows: np.ndarray) -> None:
    """The trial decode's sink: the pixels are not kept."""


def verify_file(path: PathLike, progress: Progress = None, cancel: Cancel = None) -> VerifyReport:
    """Check a .sarz file end to end (structure, every chunk's CRC, a full decode); ContainerError naming the
    first problem, the damaged chunks by number."""
    with ContainerReader(path) as reader:  # opening validates the prefix, header CRC, index and footer
        _check_chunks(reader, path, cancel)
        tracked = _TrackingReader(reader)
        passes = band_passes(tracked)
        try:
            run_passes(passes, lambda _: _discard, progress, cancel)
        except DECODE_FAILURES as exc:
            where = chunk_name(tracked.last, reader.n_chunks)
            raise ContainerError(f"{path}: {where} (or the one before) does not decode: {exc}") from exc
        return VerifyReport(str(path), reader.n_chunks, passes[0].layout.width, passes[0].layout.height)
