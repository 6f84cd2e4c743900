"""Decompression: the header validated into a Layout, then the shared StripPass over the tiles rebuilt from the
file's chunks (all of them, or those a window needs: engine.window_decode)."""

from __future__ import annotations

import numpy as np

from . import refine
from .container import ContainerReader
from .errors import ContainerError
from .layout import Layout
from .radiometry import bright_contexts, mean_code_prediction, predicted_codes
from .raster_io import RasterInfo
from .sarz_header import global_gain, layout_from_header
from .strip_payload import BrightResiduals, Strip
from .strip_window import Cancel, Progress, Sink, StripPass, check_cancel


class DecodePass(StripPass):
    """The decode pass: strips come from the file's chunks, the global gain from its header."""

    def __init__(self, reader: ContainerReader, layout: Layout, info: RasterInfo, progress: Progress, cancel: Cancel):
        super().__init__(layout, progress, cancel)
        self.reader, self.info = reader, info
        self._global_gain = global_gain(reader.header)

    @classmethod
    def open(cls, reader: ContainerReader, progress: Progress = None, cancel: Cancel = None) -> DecodePass:
        """Header validated, chunk count checked: nothing decoded yet."""
        layout, info = layout_from_header(reader.header)
        if reader.n_chunks != layout.n_tiles:
            raise ContainerError(f"the file has {reader.n_chunks} chunks, its header implies {layout.n_tiles}")
        return cls(reader, layout, info, progress, cancel)

    @property
    def global_gain(self) -> float:
        return self._global_gain

    def load(self, k: int) -> Strip:
        """Tile k's streams, its block-mean codes restored from their prediction."""
        check_cancel(self.cancel)
        strip = Strip.from_payload(self.reader.read_chunk(k), k, self.layout)
        if strip.gains is not None:
            prediction = mean_code_prediction(self.layout, strip)
            strip.gains = predicted_codes(strip.gains.astype(np.int32) + prediction, prediction)
        return strip

    def refine(self, strip: Strip, base: float) -> None:
        """The refinement layer applied, then the bright targets read (their contexts come from the result)."""
        flat = refine.FlatBase(base, (strip.rows, strip.cols))
        strip.raw_db = self.clip_refined(refine.decode(strip.refinement, flat, self.layout.refine_step_db))
        contexts = bright_contexts(self.layout, strip.raw_db) if strip.bright_section else None
        strip.bright = BrightResiduals.decode(strip.bright_section, contexts)

    def run(self, sink: Sink) -> None:
        """Every tile, finished, into `sink` (rows of tiles)."""
        self.sink = sink
        for _ in self.strips():
            pass
