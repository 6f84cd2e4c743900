"""Decompression: the header validated into one Layout per band, then the shared StripPass over each chosen
band's tiles, rebuilt from the file's chunks (all of them, or those a window needs: engine.codec.passes.window_decode; a
predicted band also decodes its reference's refinement streams: engine.codec.passes.interband)."""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ...errors import ContainerError, InputError
from ...io.raster_io import RasterInfo
from ..entropy import refine
from ..format.container import ContainerReader, chunk_name
from ..format.layout import Layout
from ..format.sarz_header import global_gain, layouts_from_header
from ..format.strip_payload import BrightResiduals, Strip
from ..radiometry import bright_contexts, prediction_level, restore_mean_codes
from ..restoration.loop_filter import LoopFilter
from .interband import ReferenceBand
from .strip_window import Cancel, Progress, Sink, StripPass, Work, check_cancel, scaled_progress


class DecodePass(StripPass):
    """The decode pass of one band: strips come from its chunks, the global gain from its header entry."""

    def __init__(
        self,
        reader: ContainerReader,
        layout: Layout,
        info: RasterInfo,
        progress: Progress,
        cancel: Cancel,
        reference: Optional[ReferenceBand] = None,
    ):
        super().__init__(layout, progress, cancel)
        self.reader, self.info, self.reference = reader, info, reference
        self._global_gain = global_gain(reader.header, layout.band_index)
        self._finished: tuple[int, Optional[np.ndarray]] = (-1, None)

    @property
    def global_gain(self) -> float:
        return self._global_gain

    def load(self, k: int) -> Strip:
        """Tile k's streams (its block-mean codes still less their prediction: `refine` restores them, or
        radiometry.restore_mean_codes)."""
        check_cancel(self.cancel)
        return _strip(self.reader, self.layout, k)

    def prepare(self, strip: Strip, base: float) -> Work:
        """The reference band's tile when predicted (decoded in tile order), then the work: `_decode_tile`."""
        strip.reference = None if self.reference is None else self.reference.deviation(strip.index, self.layout)
        return lambda: self._decode_tile(strip, base)

    def apply(self, strip: Strip, result: np.ndarray) -> None:
        """The finished tile waits for `finished` (which every pass asks for next)."""
        self._finished = (strip.index, result)

    def finished(self, strip: Strip) -> np.ndarray:
        """What the work finished (the tile is its own: nothing here depends on another)."""
        index, values = self._finished
        self._finished = (-1, None)
        return values if index == strip.index else super().finished(strip)

    def _decode_tile(self, strip: Strip, base: float) -> np.ndarray:
        """The refinement layer applied over the reference band's tile when predicted (its coarse approximation
        too, in the same pass: the block means' prediction), the bright targets read (their contexts come from
        the result), the loop filter applied, then the tile finished."""
        layout = self.layout
        flat = refine.FlatBase(base, (strip.rows, strip.cols))
        coarse = prediction_level(strip)
        image, approximation = refine.decode_levels(
            strip.refinement, flat, layout.refine_step_db, (0, coarse), strip.reference, layout.syntax
        )
        strip.raw_db = strip.refined_db = self.clip_refined(image)
        strip.coarse_db = (coarse, approximation)
        restore_mean_codes(layout, strip)
        contexts = bright_contexts(layout, strip.raw_db) if strip.bright_section else None
        strip.bright = BrightResiduals.decode(strip.bright_section, contexts)
        fitted = LoopFilter.decode(strip.loop_filter, strip.chunk)
        if fitted is not None:  # after the contexts: nothing entropy-decoded depends on it
            strip.raw_db = self.clip_refined(fitted.apply(strip.raw_db, layout.flat_db))
        return super().finished(strip)

    def run(self, sink: Sink) -> None:
        """Every tile, finished, into `sink` (rows of tiles)."""
        self.sink = sink
        for _ in self.strips():
            pass


def band_passes(reader: ContainerReader, band: Optional[int] = None) -> list[DecodePass]:
    """The decode passes of every band in source band order, or of the band whose source number is `band`
    (InputError when the file has no such band): header validated, chunk count checked, nothing decoded yet.
    Progress and cancel are set per pass by the caller."""
    layouts, infos = layouts_from_header(reader.header)
    if reader.n_chunks != len(layouts) * layouts[0].n_tiles:
        raise ContainerError(
            f"the file has {reader.n_chunks} chunks, its header implies {len(layouts) * layouts[0].n_tiles}"
        )
    sources = [int(entry["source_band"]) for entry in reader.header["bands"]]
    order = sorted(range(len(layouts)), key=lambda i: sources[i])
    if band is not None:
        if band not in sources:
            raise InputError(f"the file holds no band {band}: its bands are {', '.join(map(str, sorted(sources)))}")
        order = [sources.index(band)]
    references = {
        ref: ReferenceBand(layouts[ref], _refinement_reader(reader, layouts[ref]))
        for ref in {layouts[i].reference for i in order} - {None}
    }
    passes = [DecodePass(reader, layouts[i], infos[i], None, None, references.get(layouts[i].reference)) for i in order]
    for dec in passes:
        dec.feeds = references.get(dec.layout.band_index)
    return passes


def run_passes(passes: list[DecodePass], sink: Callable[[int], Sink], progress: Progress, cancel: Cancel) -> None:
    """Decode `passes` one after the other, pass i into `sink(i)`, each its share of one progress bar."""
    for i, dec in enumerate(passes):
        dec.progress = scaled_progress(progress, i / len(passes), (i + 1) / len(passes))
        dec.cancel = cancel
        dec.run(sink(i))


def _refinement_reader(reader: ContainerReader, layout: Layout):
    """refinement(k): the refinement stream of the band's strip k, read from its chunk."""

    def refinement(k: int) -> bytes:
        return _strip(reader, layout, k).refinement

    return refinement


def _strip(reader: ContainerReader, layout: Layout, k: int) -> Strip:
    """The band's tile k from its chunk (the file's chunk_number(k)), errors naming the chunk as the reader does."""
    i = layout.chunk_number(k)
    return Strip.from_payload(reader.read_chunk(i), k, layout, chunk_name(i, reader.n_chunks))
