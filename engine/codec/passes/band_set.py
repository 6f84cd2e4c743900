"""Several bands in one .sarz: pass 1 of each band, the inter-band references chosen by measurement, then the
per-band passes one after the other (chunk order "band, tile row, tile column"), and the header listing them.

Each band is coded by its own EncodePass with its own kind, range, nodata and statistics; bands are coded in
the order interband picks (the reference first). Memory stays that of one band's strips: the bands are
coded one after the other, strip by strip, and a predicted band re-decodes its reference's strips from the
refinement streams kept while the reference was coded (a few percent of the file, not a band of pixels).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ... import preprocessing as pp
from ...errors import InputError
from ...io.raster_io import RasterInfo, differing_nodata
from ..format.sarz_header import build_header
from .encode_pass import BandSource, EncodeOptions, EncodePass, Log
from .interband import ReferenceBand, choose_references, sample_window
from .strip_window import Cancel, Progress, Sink, scaled_progress
from .survey import Survey, declared, survey_band

BandSinks = Callable[[int], Sink]
"""sinks(i) -> the sink of the output's band i (0-based, source band order)."""


@dataclass
class BandPlan:
    """What pass 1 fixed for every band, shared by rate control's trial passes (none depends on the step)."""

    surveys: list[Survey]
    order: list[int]
    """Indices into the sources, in coding order."""
    references: list[Optional[int]]
    """Per coding position, the coding position of the band it is predicted from (None: on its own)."""


def stack_infos(infos: list[RasterInfo]) -> RasterInfo:
    """Single-band infos of one raster's bands -> the info of a raster holding them in this order (dataset
    fields from the first; GeoTIFF has one nodata for all bands: the first band's)."""

    def each(name: str) -> list:
        values = [getattr(info, name) for info in infos]
        return [v[0] for v in values] if all(len(v) == 1 for v in values) else []

    return replace(
        infos[0],
        count=len(infos),
        descriptions=[info.descriptions[0] if info.descriptions else None for info in infos],
        band_tags=[info.band_tags[0] if info.band_tags else {} for info in infos],
        units=[info.units[0] if info.units else None for info in infos],
        scales=each("scales"),
        offsets=each("offsets"),
        color_interp=each("color_interp"),
        band_nodata=differing_nodata([info.nodata for info in infos]),
        band_domains=_band_domains([info.band_domains[0] if info.band_domains else {} for info in infos]),
    )


def _band_domains(domains: list[dict]) -> list[dict]:
    return domains if any(domains) else []


def output_dtype(kinds: list[str], dtype: str) -> str:
    """The dtype of a raster holding every decoded band (complex input decodes to float32 intensity)."""
    return str(np.result_type(*[pp.output_dtype(kind, dtype) for kind in kinds]))


def band_warnings(surveys: list[Survey], sources: list[BandSource]) -> list[str]:
    """Pass 1's warnings, each once, naming the bands it concerns where not every band (an alpha band, no SAR data,
    says none): one empty band among three said "no valid pixels ... the file holds only the mask" of the file."""
    bands: dict[str, list[int]] = {}
    data = [(survey, source) for survey, source in zip(surveys, sources) if source.info.color_interp != ["alpha"]]
    for survey, source in data:
        for warning in survey.warnings:
            bands.setdefault(warning, []).append(source.band)
    return [
        text if len(which) == len(data) else f"band{'s' * (len(which) > 1)} {', '.join(map(str, which))}: {text}"
        for text, which in bands.items()
    ]


def plan_bands(sources: list[BandSource], options: EncodeOptions, log: Log = None, warn: Log = None) -> BandPlan:
    """Pass 1 of every band (its warnings to `warn`, each once), then the coding order and references
    (interband) measured on a window of the raster in each band's normalized dB (unless `options.interband` is
    off)."""
    surveys = [_survey(s, options, len(sources) > 1) for s in sources]
    if warn is not None:
        for warning in band_warnings(surveys, sources):
            warn(warning)
    if len(sources) == 1 or not options.interband:
        return BandPlan(surveys, list(range(len(sources))), [None] * len(sources))
    info = sources[0].info
    row0, row1, col0, col1 = sample_window(info.height, info.width)
    windows = []
    for source, survey in zip(sources, surveys):
        raw = source.read(row0, row1)[:, col0:col1]
        valid = pp.valid_mask(raw, declared(source.info, survey).nodata)
        db = np.where(valid, pp.to_db(raw, survey.kind, survey.scaling), survey.fill_db)
        windows.append(np.clip(db, survey.rng.vmin, survey.rng.vmax) / survey.rng.span)
    order, references = choose_references(windows)
    if log is not None:
        links = [
            f"band {sources[order[i]].band} from band {sources[order[ref]].band}"
            for i, ref in enumerate(references)
            if ref is not None
        ]
        log(f"inter-band prediction: {', '.join(links) or 'none (the bands share too little)'}")
    return BandPlan(surveys, order, references)


def _survey(source: BandSource, options: EncodeOptions, several: bool) -> Survey:
    """Pass 1 of one band; its InputError names the band when the file has several."""
    try:
        return survey_band(source.info, source.read, options.kind, ssim=options.tune == "ssim")
    except InputError as exc:
        if not several:
            raise
        raise InputError(f"band {source.band}: {exc}") from exc


class BandSetEncoder:
    """The per-band passes of one file: `chunks()` for the container writer, then `header()` and
    `flush_deferred()`."""

    def __init__(
        self,
        sources: list[BandSource],
        options: EncodeOptions,
        plan: BandPlan,
        progress: Progress = None,
        cancel: Cancel = None,
        log: Log = None,
    ):
        self.sources, self.plan = sources, plan
        self.passes: list[EncodePass] = []
        references: dict[int, ReferenceBand] = {}  # one per reference band, shared by the bands it predicts
        n = len(sources)
        for position, (index, ref) in enumerate(zip(plan.order, plan.references)):
            if ref is not None and ref not in references:
                parent = self.passes[ref]
                parent.refinements = []
                references[ref] = parent.feeds = ReferenceBand(parent.layout, parent.refinements.__getitem__)
            reference = None if ref is None else references[ref]
            bar = progress if n == 1 else scaled_progress(progress, position / n, (position + 1) / n)  # 1: tiles
            enc = EncodePass.plan(sources[index], options, bar, cancel, log, plan.surveys[index], position, reference)
            self.passes.append(enc)

    @property
    def by_source(self) -> list[EncodePass]:
        """The passes in source band order (the output raster's)."""
        return sorted(self.passes, key=lambda enc: enc.source.band)

    def chunks(self) -> Iterator[bytes]:
        for enc in self.passes:
            yield from enc.strips()

    def header(self) -> dict[str, Any]:
        """The .sarz header (call once `chunks()` is exhausted)."""
        info = stack_infos([enc.source.info for enc in self.by_source])
        return build_header(self.passes[0].layout, info, [enc.band_entry() for enc in self.passes])

    @contextlib.contextmanager
    def reconstructing(self, sinks: BandSinks, spool_parent: Optional[Path]) -> Iterator[None]:
        """Each band's finished strips to its output band too."""
        with contextlib.ExitStack() as stack:
            for i, enc in enumerate(self.by_source):
                stack.enter_context(enc.reconstructing(sinks(i), spool_parent))
            yield

    def flush_deferred(self) -> None:
        for enc in self.passes:
            enc.flush_deferred()
