"""One large raster on many Dask workers: its strips coded as separate tasks, assembled into the serial file.

What a strip's chunk depends on (encode_pass / strip_window): pass 1 (the survey: kind, range, fill value, the
SSIM weights' reference) and the layout fixed from it, the options, and the strip's own rows, and nothing else
(the base is flat): its base is the flat image, the refinement layer is coded against the strip alone, the
block gains and bright residuals are measured in it. What the serial pass accumulates across strips goes only
into the header: the valid / clipped / bright counts (integer sums) and the linear sums behind the global gain,
which it adds strip by strip in order; each task returns its strip's terms and the client adds them in the same
order, so the header, and the file, are byte for byte the serial ones. The neighbours matter only to the
reconstruction raster (gain interpolation across strip borders), which this path does not write.
Pass 1 runs on the client (it reads a strided sample of the raster, a small share of the work); the plan is sent
to the workers once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from . import preprocessing as pp
from .api import CompressStats, PathLike, _compress_stats
from .codec.format.container import write_container
from .codec.format.layout import Layout
from .codec.passes.band_set import BandSetEncoder, plan_bands
from .codec.passes.encode_pass import BandSource, EncodeOptions, EncodePass
from .codec.passes.quality import DEFAULT_QUALITY
from .codec.passes.strip_window import Cancel, Progress
from .codec.passes.survey import Survey
from .errors import CancelledError, InputError
from .input_checks import check_kind_fits, check_not_paletted
from .io.output_paths import check_outputs, replace_into, temp_path
from .io.raster_io import RasterInfo, RasterReader, bounded_gdal_cache, open_info

if TYPE_CHECKING:
    from distributed import Client


@dataclass
class StripPlan:
    """What every strip task needs: the band, the layout and survey of pass 1, the options."""

    src: str
    band: int
    info: RasterInfo
    layout: Layout
    survey: Survey
    options: EncodeOptions


@dataclass
class CodedStrip:
    """A strip's chunk bytes and its terms of the header's whole-raster statistics."""

    payload: bytes
    totals: dict[str, float]
    """EncodePass.TOTALS of this strip alone."""


def code_strip(plan: StripPlan, k: int) -> CodedStrip:
    """Strip k of the plan, as the serial pass codes it (flat base: no neighbour involved)."""
    with bounded_gdal_cache(), RasterReader(plan.src) as reader:
        source = BandSource(plan.info, plan.band, lambda r0, r1: reader.read_rows(plan.band, r0, r1))
        enc = EncodePass(source, plan.layout, plan.survey, plan.options, None, None)
        strip = enc.decoded(k)
        payload = enc.after_decode(strip)
    return CodedStrip(payload, {name: getattr(enc, name) for name in EncodePass.TOTALS})


def compress_split(
    src: PathLike,
    dst: PathLike,
    client: Client,
    *,
    quality: int = DEFAULT_QUALITY,
    band: Optional[int] = None,
    kind: str = "auto",
    mean_correction: str = "block",
    tune: str = "ssim",
    loop_filter: bool = True,
    interscale: bool = True,
    sign_contexts: bool = False,
    phase_prediction: bool = True,
    neighbour_bits: bool = True,
    progress: Progress = None,
    cancel: Cancel = None,
) -> CompressStats:
    """compress_file's .sarz (byte for byte) with the strips coded as tasks on `client`'s workers, which must read
    `src` at the same path. `progress(done, total)` counts strips."""
    start = time.perf_counter()
    info = open_info(src)
    if band is None:
        if info.count > 1:  # several bands: a predicted band's strips wait on its reference's (interband)
            raise InputError(f"raster has {info.count} bands; compress_split codes one: choose it with band=")
        band = 1
    dtype = info.band(band).dtype
    pp.check_dtype(dtype)
    check_kind_fits(dtype, kind)
    check_not_paletted(info.color_interp, [band])
    dst = Path(dst)
    check_outputs([src], [dst], overwrite=True)  # as compress_file: never the input, a folder, a FIFO or a device
    options = EncodeOptions(
        quality,
        kind,
        mean_correction,
        tune=tune,
        loop_filter=loop_filter,
        interscale=interscale,
        sign_contexts=sign_contexts,
        phase_prediction=phase_prediction,
        neighbour_bits=neighbour_bits,
    )
    with bounded_gdal_cache(), RasterReader(src) as reader:
        source = BandSource(info.band(band), band, lambda r0, r1: reader.read_rows(band, r0, r1))
        band_plan = plan_bands([source], options)
        bands = BandSetEncoder([source], options, band_plan, None, cancel)
    enc = bands.passes[0]
    plan = StripPlan(str(src), band, enc.source.info, enc.layout, enc.survey, options)
    [shared] = client.scatter([plan], broadcast=False, hash=False)
    futures = [client.submit(code_strip, shared, k, pure=False) for k in range(enc.layout.n_tiles)]
    staged = temp_path(dst)  # as compress_file: the .sarz goes into place whole (replace_into)
    try:
        size = write_container(staged, bands.header, _in_order(enc, futures, progress, cancel), cancel)
        replace_into(staged, dst)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    finally:
        client.cancel(futures)
    return _compress_stats(bands, size, time.perf_counter() - start, output=str(dst))


def _in_order(enc: EncodePass, futures: list, progress: Progress, cancel: Cancel) -> Iterator[bytes]:
    """The chunks in strip order, adding each strip's statistics to `enc` as the serial pass does."""
    for k, fut in enumerate(futures):
        if cancel is not None and cancel():
            raise CancelledError("cancelled by the user")
        coded: CodedStrip = fut.result()
        for name, value in coded.totals.items():
            setattr(enc, name, getattr(enc, name) + value)
        enc.chunk_bytes += len(coded.payload)
        if progress is not None:
            progress(k + 1, len(futures))
        yield coded.payload
