"""The pass over a raster's strips that encoder and decoder share, in a rolling window of at most 3 strips.

Strip k is refined over its flat base as soon as it is loaded, and finished once strip k+1's gains exist (the
gain field is interpolated across the strip border). The encoder and the decoder differ only in how a strip is
obtained (`load`: read from the raster or from the file's chunk), in which side of the refinement layer they
run (`refine`: make it or apply it) and in what the encoder does after that (measure the gains, emit the
chunk); the base and the finishing are the same code, which is what makes the encoder's reconstruction equal
the decoder's output.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Callable, Optional

import numpy as np

from .errors import CancelledError
from .interband import ReferenceBand
from .layout import Layout
from .radiometry import finalize_strip, strip_gain_db
from .strip_payload import Strip

Progress = Optional[Callable[[int, int], None]]
Cancel = Optional[Callable[[], bool]]
Sink = Callable[[int, np.ndarray], None]
"""sink(row0, rows): receives each finished strip of the output raster, top to bottom."""


def check_cancel(cancel: Cancel) -> None:
    if cancel is not None and cancel():
        raise CancelledError("cancelled by the user")


class StripPass(ABC):
    """One pass over the strips; `strips()` yields whatever `after_decode` returns (the encoder's chunks)."""

    def __init__(self, layout: Layout, progress: Progress, cancel: Cancel):
        self.layout, self.progress, self.cancel = layout, progress, cancel
        self.sink: Optional[Sink] = None
        self.feeds: Optional[ReferenceBand] = None
        """Set when other bands are predicted from this one: each refined strip is handed to it."""

    @property
    @abstractmethod
    def global_gain(self) -> float:
        """Linear gain of the whole raster (used when the mean correction is "global")."""

    @abstractmethod
    def load(self, k: int) -> Strip:
        """Strip k, as far as it is known before its refinement layer."""

    @abstractmethod
    def refine(self, strip: Strip) -> None:
        """Make (encoder) or apply (decoder) the strip's refinement layer: raw_db becomes the refined dB."""

    def clip_refined(self, db: np.ndarray) -> np.ndarray:
        """Refined dB kept inside the range (the original is clipped there too)."""
        return np.clip(db, self.layout.rng.vmin, self.layout.rng.vmax).astype(np.float32)

    def after_decode(self, strip: Strip) -> Optional[bytes]:
        """Called once the strip's raw_db is refined; a returned payload is yielded by `strips()`."""
        return None

    def finalize(self, prev: Optional[Strip], cur: Strip, nxt: Optional[Strip]) -> None:
        """Gain, bright residuals and invalid pixels applied; the finished strip goes to the sink."""
        if self.sink is None:
            return
        gain = strip_gain_db(self.layout, [prev, cur, nxt], cur, self.global_gain)
        self.sink(cur.row0, finalize_strip(self.layout, cur.raw_db, gain, cur))

    def strips(self) -> Iterator[bytes]:
        """Rolling window over strips: strip k is loaded and refined, then strip k-1 is finished (its gain
        field needs strip k's gains). At most 3 strips are alive."""
        n = self.layout.n_strips
        window: dict[int, Strip] = {}
        for k in range(n + 1):
            check_cancel(self.cancel)
            if k < n:
                strip = window[k] = self.load(k)
                strip.raw_db = self.layout.flat_db(strip.rows)
                self.refine(strip)
                if self.feeds is not None:
                    self.feeds.remember(k, strip.raw_db)
                payload = self.after_decode(strip)
                if payload is not None:
                    yield payload
                if self.progress is not None:
                    self.progress(k + 1, n)
            if k >= 1:
                self.finalize(window.get(k - 2), window[k - 1], window.get(k))
                window.pop(k - 2, None)
