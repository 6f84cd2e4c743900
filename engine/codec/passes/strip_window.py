"""The pass over a raster's tiles that encoder and decoder share, one tile at a time.

Tile k is refined over its flat base, then finished on its own (gain field, bright targets, invalid pixels):
no tile depends on another, so a window of the raster decodes from the tiles covering it alone. The encoder and
the decoder differ only in how a tile is obtained (`load`: read from the raster or from the file's chunk), in
which side of the refinement layer they run (`refine`: make it or apply it) and in what the encoder does after
that (measure the gains, emit the chunk); the base and the finishing are the same code, which is what makes the
encoder's reconstruction equal the decoder's output. Finished tiles are put together into rows of tiles for the
sink, so memory follows one row of tiles. A pass over every tile (`strips`) makes or applies the refinement layers of
the next LOOKAHEAD tiles on worker threads while it finishes the tile before them, in tile order: what a tile's
refinement does touches nothing but the tile, so the output is the same to the byte.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Optional

import numpy as np

from ...errors import CancelledError
from ..format.layout import Layout
from ..format.strip_payload import Strip
from ..radiometry import finalize_strip, strip_gain_db
from .interband import ReferenceBand

Progress = Optional[Callable[[int, int], None]]
Cancel = Optional[Callable[[], bool]]
Sink = Callable[[int, np.ndarray], None]
"""sink(row0, rows): receives each finished row of tiles of the output raster (full width), top to bottom."""
Work = Callable[[], Any]
"""A tile's refinement work that touches nothing but the tile (StripPass.prepare): runs on a worker thread."""
MAX_LOOKAHEAD = 4
"""The most tiles refined at once. Each tile in flight holds its working set: measured on a 6144x8192 single-look
scene at quality 5 (peak RSS, same machine): compression 428 / 623 / 1062 MiB with 2 / 4 / 8 tiles at once,
decompression 323 / 416 / 614 MiB (about 100 and 48 MiB a tile, whatever the raster's width: tiles are 1024
pixels a side), the same bytes and pixels. 4 keeps a 20000x20000 compression (582 MiB with 2) well under the
1.2 GB the benchmark holds it to."""


def available_cores() -> int:
    """The cores this process may use (its affinity, where the system tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


LOOKAHEAD = max(2, min(MAX_LOOKAHEAD, available_cores()))
"""Tiles refined at once on worker threads while this thread finishes the one before them (numpy and the ANS coder
let go of the interpreter for much of the work): one per core, at least 2 (1 would be no overlap), at most
MAX_LOOKAHEAD. On the 2-core development machine, 4096x4096 single-look q5 in process, same run: compress 6.40 ->
3.84 s, decompress 3.56 -> 2.80 s with 2 instead of 1; more than 2 gains nothing on 2 cores (20.4-20.8 s for 2, 4
or 8 on a 6144x8192 scene), and what they gain on more cores was not measured (no such machine here). The bytes
are the same whatever it is (tests/test_determinism.py)."""
_AT_MOST: ContextVar[Optional[int]] = ContextVar("sarz_tiles_at_most", default=None)


@contextmanager
def tiles_at_most(n: int) -> Iterator[None]:
    """Code at most `n` tiles at once in this context (a batch's file, one of a file per core) without changing
    LOOKAHEAD for the rest of the process (setting it lowered every later run of a caller's in-process cluster)."""
    token = _AT_MOST.set(n)
    try:
        yield
    finally:
        _AT_MOST.reset(token)


def tiles_at_once() -> int:
    """LOOKAHEAD, or less where `tiles_at_most` says so."""
    limit = _AT_MOST.get()
    return LOOKAHEAD if limit is None else max(1, min(LOOKAHEAD, limit))


def scaled_progress(progress: Progress, lo: float, hi: float) -> Progress:
    """`progress` seen through a slice [lo, hi] of its bar (in thousandths): one band's pass among several."""
    if progress is None:
        return None
    return lambda done, total: progress(round(1000 * (lo + (hi - lo) * done / max(total, 1))), 1000)


def check_cancel(cancel: Cancel) -> None:
    if cancel is not None and cancel():
        raise CancelledError("cancelled by the user")


class TileRows:
    """Puts finished tiles (in chunk order) together into full-width rows of tiles for a sink."""

    def __init__(self, layout: Layout, sink: Sink):
        self.layout, self.sink = layout, sink
        self.row: Optional[np.ndarray] = None

    def add(self, strip: Strip, values: np.ndarray) -> None:
        if strip.col0 == 0:
            self.row = np.empty((strip.rows, self.layout.width), dtype=values.dtype)
        self.row[:, strip.col0 : strip.col0 + strip.cols] = values
        if strip.col0 + strip.cols == self.layout.width:
            self.sink(strip.row0, self.row)
            self.row = None


class StripPass(ABC):
    """One pass over the tiles; `strips()` yields whatever `after_decode` returns (the encoder's chunks)."""

    def __init__(self, layout: Layout, progress: Progress, cancel: Cancel):
        self.layout, self.progress, self.cancel = layout, progress, cancel
        self.rows: Optional[TileRows] = None
        self.feeds: Optional[ReferenceBand] = None
        """Set when other bands are predicted from this one: each refined tile is handed to it."""

    @property
    def sink(self) -> Optional[Sink]:
        return None if self.rows is None else self.rows.sink

    @sink.setter
    def sink(self, sink: Optional[Sink]) -> None:
        self.rows = None if sink is None else TileRows(self.layout, sink)

    @property
    @abstractmethod
    def global_gain(self) -> float:
        """Linear gain of the whole raster (used when the mean correction is "global")."""

    @abstractmethod
    def load(self, k: int) -> Strip:
        """Tile k, as far as it is known before its refinement layer."""

    @abstractmethod
    def prepare(self, strip: Strip, base: float) -> Work:
        """What must happen on this thread, in tile order, before the tile's refinement layer is made (encoder) or
        applied (decoder) over the flat `base` (dB); returns that work, which touches nothing but the tile."""

    @abstractmethod
    def apply(self, strip: Strip, result: Any) -> None:
        """What happens on this thread, in tile order, with the work's result (statistics over the tiles)."""

    def refine(self, strip: Strip, base: float) -> None:
        """Make or apply the tile's refinement layer here and now: raw_db becomes the refined dB."""
        self.apply(strip, self.prepare(strip, base)())

    def clip_refined(self, db: np.ndarray) -> np.ndarray:
        """Refined dB kept inside the range (the original is clipped there too)."""
        return np.clip(db, self.layout.rng.vmin, self.layout.rng.vmax).astype(np.float32)

    def after_decode(self, strip: Strip) -> Optional[bytes]:
        """Called once the tile's raw_db is refined; a returned payload is yielded by `strips()`."""
        return None

    def finished(self, strip: Strip) -> np.ndarray:
        """Gain, bright residuals and invalid pixels applied: the tile as the output raster has it."""
        gain = strip_gain_db(self.layout, strip, self.global_gain)
        return finalize_strip(self.layout, strip.raw_db, gain, strip)

    def finalize(self, strip: Strip) -> None:
        """The finished tile to the sink."""
        if self.rows is not None:
            self.rows.add(strip, self.finished(strip))

    def decoded(self, k: int) -> Strip:
        """Tile k loaded and refined over its flat base."""
        check_cancel(self.cancel)
        strip = self.load(k)
        self.refine(strip, self.layout.flat_db)
        self._refined(strip)
        return strip

    def _refined(self, strip: Strip) -> None:
        """The refined tile handed to the bands predicted from this one (in tile order)."""
        if self.feeds is not None:
            self.feeds.remember(strip.index, strip.refined_db)  # before the loop filter: what prediction codes against

    def _started(self, k: int, pool: ThreadPoolExecutor) -> tuple[Strip, Future]:
        """Tile k loaded, its refinement work handed to `pool`."""
        check_cancel(self.cancel)
        strip = self.load(k)
        return strip, pool.submit(self.prepare(strip, self.layout.flat_db))

    def strips(self) -> Iterator[bytes]:
        """Every tile in chunk order: loaded, refined (LOOKAHEAD at once, on worker threads), finished."""
        n = self.layout.n_tiles
        pending: deque[tuple[Strip, Future]] = deque()
        at_once = tiles_at_once()
        with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="sarz-tile") as pool:
            try:
                for k in range(n):
                    while len(pending) < at_once and k + len(pending) < n:
                        pending.append(self._started(k + len(pending), pool))
                    strip, work = pending.popleft()
                    self.apply(strip, work.result())
                    self._refined(strip)
                    payload = self.after_decode(strip)
                    if payload is not None:
                        yield payload
                    check_cancel(self.cancel)
                    self.finalize(strip)
                    if self.progress is not None:
                        self.progress(k + 1, n)
            finally:
                for _, work in pending:  # cancelled or failed: tiles not started yet are dropped
                    work.cancel()
