"""Decompression: the header validated into a Layout, then the shared StripPass over the tiles rebuilt from the
file's chunks (all of them, or those a window needs: engine.window_decode)."""

from __future__ import annotations

from . import refine
from .container import ContainerReader
from .errors import ContainerError
from .layout import Layout
from .radiometry import bright_contexts, prediction_level, restore_mean_codes
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
        """Tile k's streams (its block-mean codes still less their prediction: `refine` restores them, or
        radiometry.restore_mean_codes)."""
        check_cancel(self.cancel)
        return Strip.from_payload(self.reader.read_chunk(k), k, self.layout)

    def refine(self, strip: Strip, base: float) -> None:
        """The refinement layer applied (its coarse approximation too, in the same pass: the block means'
        prediction), then the bright targets read (their contexts come from the result)."""
        flat = refine.FlatBase(base, (strip.rows, strip.cols))
        coarse = prediction_level(strip)
        image, approximation = refine.decode_levels(strip.refinement, flat, self.layout.refine_step_db, (0, coarse))
        strip.raw_db, strip.coarse_db = self.clip_refined(image), (coarse, approximation)
        restore_mean_codes(self.layout, strip)
        contexts = bright_contexts(self.layout, strip.raw_db) if strip.bright_section else None
        strip.bright = BrightResiduals.decode(strip.bright_section, contexts)

    def run(self, sink: Sink) -> None:
        """Every tile, finished, into `sink` (rows of tiles)."""
        self.sink = sink
        for _ in self.strips():
            pass
