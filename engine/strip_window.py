"""The pass over a raster's strips that encoder and decoder share, in a rolling window of at most 4 strips.

Strip k's base is decoded once strip k+1's latents exist (they are the network's bottom halo; a flat base
needs none), refined, and finished once strip k+1's gains exist (the gain field is interpolated across the
strip border). The encoder and the decoder differ only in how a strip's latents are obtained (`load`), in
which side of the refinement layer they run (`refine`: make it or apply it) and in what the encoder does
after that (measure the gains, emit the chunk); the base and the finishing are the same code, which is what
makes the encoder's reconstruction equal the decoder's output.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Callable, Optional

import numpy as np

from . import preprocessing as pp
from .compressor import LATENT_HALO, SARCompressor
from .errors import CancelledError
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


class _TileProgress:
    """Counts network tiles into progress(done, total)."""

    def __init__(self, total: int, progress: Progress):
        self.total, self.done, self.progress = max(total, 1), 0, progress

    def __call__(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total)


class StripPass(ABC):
    """One pass over the strips; `strips()` yields whatever `after_decode` returns (the encoder's chunks)."""

    def __init__(self, comp: SARCompressor, layout: Layout, progress: Progress, cancel: Cancel, passes: int = 1):
        """`passes`: network runs over every strip's tiles that `progress` counts (the encoder makes two); with
        a flat base there are none, and progress counts strips."""
        self.comp, self.layout, self.cancel = comp, layout, cancel
        per_strip = passes * comp.tiles_per_strip(layout.width) if layout.uses_network else 1
        self.ticker = _TileProgress(layout.n_strips * per_strip, progress)
        self.sink: Optional[Sink] = None
        self._network_start = comp.seconds_network

    @property
    def seconds_network(self) -> float:
        """Network time spent since this pass was made."""
        return self.comp.seconds_network - self._network_start

    @property
    @abstractmethod
    def global_gain(self) -> float:
        """Linear gain of the whole raster (used when the mean correction is "global")."""

    @abstractmethod
    def load(self, k: int) -> Strip:
        """Strip k with its dequantized latents."""

    def y_hat(self, symbols: np.ndarray) -> np.ndarray:
        """Dequantized latents, as the network decodes them."""
        return self.comp.entropy.dequantize(symbols, self.layout.level).numpy()

    def no_latents(self, k: int) -> np.ndarray:
        """Strip k's latents under a flat base: none (zero channels, the strip's latent rows)."""
        return np.zeros((0, self.layout.latent_rows(k), self.layout.latent_width), dtype=np.float32)

    @abstractmethod
    def refine(self, strip: Strip) -> None:
        """Make (encoder) or apply (decoder) the strip's refinement layer: raw_db becomes the refined dB."""

    def clip_refined(self, db: np.ndarray) -> np.ndarray:
        """Refined dB kept inside the range like the network's own output (the original is clipped there too)."""
        return np.clip(db, self.layout.rng.vmin, self.layout.rng.vmax).astype(np.float32)

    def after_decode(self, strip: Strip) -> Optional[bytes]:
        """Called once the strip's raw_db is refined; a returned payload is yielded by `strips()`."""
        return None

    def decode_raw(self, prev: Optional[Strip], cur: Strip, nxt: Optional[Strip]) -> np.ndarray:
        """The base of a strip in dB: the network's output (latent rows of the neighbours as halo) or flat."""
        if not self.layout.uses_network:
            self.ticker(1)
            return self.layout.flat_db(cur.rows)
        parts, top, bottom = [cur.y_hat], 0, 0
        if prev is not None:
            top = min(LATENT_HALO, prev.y_hat.shape[1])
            parts.insert(0, prev.y_hat[:, -top:])
        if nxt is not None:
            bottom = min(LATENT_HALO, nxt.y_hat.shape[1])
            parts.append(nxt.y_hat[:, :bottom])
        y = np.concatenate(parts, axis=1)
        x01 = self.comp.decode_strip(y, top, bottom, cancel=self.cancel, on_batch=self.ticker)
        return pp.denormalize(x01[: cur.rows, : self.layout.width], self.layout.rng)

    def finalize(self, prev: Optional[Strip], cur: Strip, nxt: Optional[Strip]) -> None:
        """Gain, bright residuals and invalid pixels applied; the finished strip goes to the sink."""
        if self.sink is None:
            return
        gain = strip_gain_db(self.layout, [prev, cur, nxt], cur, self.global_gain)
        self.sink(cur.row0, finalize_strip(self.layout, cur.raw_db, gain, cur))

    def strips(self) -> Iterator[bytes]:
        """Rolling window over strips: decode strip k-1 once strip k's latents exist (decoder halo), finalize
        strip k-2 once strip k-1's gains exist (gain interpolation). At most 4 strips are alive."""
        n = self.layout.n_strips
        window: dict[int, Strip] = {}
        for k in range(n + 2):
            check_cancel(self.cancel)  # the network checks between batches too; a flat base has no network
            if k < n:
                window[k] = self.load(k)
            j = k - 1
            if 0 <= j < n:
                window[j].raw_db = self.decode_raw(window.get(j - 1), window[j], window.get(j + 1))
                self.refine(window[j])
                payload = self.after_decode(window[j])
                if payload is not None:
                    yield payload
            i = k - 2
            if 0 <= i < n:
                self.finalize(window.get(i - 1), window[i], window.get(i + 1))
                window.pop(i - 1, None)
