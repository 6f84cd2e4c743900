"""The JSON header of a .sarz: written by the encoder, validated into a Layout by the decoder.

The header carries every parameter the decoder needs, so a file decodes without the options it was made with:
- `raster`: what the whole raster shares (size, dtype, georeferencing, dataset tags);
- `bands`: one entry per coded band, in coding order, holding everything per band: its number in the source,
  kind, nodata, description, tags, unit/scale/offset, dB range, quality and refinement step, mean correction,
  the block means' log2 step (formats 7 and 8) and global gain, bright-target threshold and step, `reference` (the
  place in this list of the band it is predicted from, engine.codec.passes.interband, or null), and the band's
  statistics (for `info`, not for decoding);
- `tiling`: the tile size and the chunk order ("band, tile row, tile column"): chunk i is tile i of that order;
  each tile is coded on its own (a window decodes from the tiles it touches); the last row and column of tiles
  may be smaller;
- `streams`: the streams of every chunk, in order (layout.STREAMS; files written before the loop filter
  list its first five, and decode as they did);
- `tools`: the learned parts a decoder must run, each {"name", "sha256"} or null (today: post_filter null);
- `refine` / `gain_blocks`: the codec constants this version writes (the reader checks they match): formats 7 to
  12's gain_blocks name the block size (256 from format 11, 64 before) and per-block offsets, format 6's the block
  size and its one log2 step (its files decode as they did: that step, offsets interpolated between block centres).
  The version also names how the refinement layer reads (Layout.syntax): formats 10 to 13's (with sign and phase
  laws), 9's (with inter-scale predictors), 8's, or 6 and 7's.
Reading checks each field against what this version writes: a foreign or damaged header is a ContainerError
naming the fields, never a wrong raster; a header using a feature this software lacks (narrower tiles, a
learned tool) is refused by name. docs/FORMAT.md describes the whole file.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from ... import preprocessing as pp
from ...errors import ContainerError, SARCompressorError
from ...io.raster_io import RasterInfo, _float_from_json, _float_to_json
from ..entropy import refine, tables
from .container import FORMAT_VERSION, PLAIN_VERSION, READ_VERSIONS
from .layout import BLOCK_SIDES, LEGACY_BLOCK, MEAN_CORRECTIONS, MEAN_LOG2_STEPS, STREAMS, TILE, Layout, tiles_hold

TILE_ORDER = "band, tile row, tile column"
RASTER_FIELDS = ("width", "height", "dtype", "crs_wkt", "transform", "gcps", "gcp_crs_wkt", "tags", "rpcs", "domains")
"""The raster section's fields; `rpcs` and `domains` (0.6.1) only where the raster has them (a decoder that does not
know them writes the same pixels without them)."""
LEGACY_STREAMS = 5
"""Format 6 files written before the loop filter have this many streams per chunk (STREAMS' first)."""
BLOCK_OFFSETS = "per_block"
"""Formats 7 to 10's `gain_blocks` offsets: every block takes an offset of its own (format 6 interpolated them between
block centres; radiometry.offset_field)."""
TOOLS = {"post_filter": None}
"""The learned tools a file may ask its decoder to run; none is bundled in this version."""


def software_version() -> str:
    """The plugin version from metadata.txt, recorded so a file says what wrote it."""
    meta = Path(__file__).resolve().parents[3] / "metadata.txt"  # engine/codec/format/ -> the plugin folder
    with contextlib.suppress(OSError):
        for line in meta.read_text(encoding="utf-8").splitlines():
            if line.startswith("version="):
                return line.split("=", 1)[1].strip()
    return "unknown"


def _first(values: list) -> Any:
    """A single-band list field's value (None when the source had none)."""
    return values[0] if values else None


def _finite(value: Any) -> Any:
    """A scale or offset as the header can hold it: None for a non-finite one (GDAL's none; it crashed the header's
    JSON after the whole coding)."""
    return None if value is None or not math.isfinite(value) else value


def band_entry(layout: Layout, info: RasterInfo, band: int, global_gain: float, stats: dict) -> dict[str, Any]:
    """The header entry of band `band` of a raster (`info`: that band alone) coded with `layout`."""
    return {
        "source_band": band,
        "kind": layout.kind,
        "nodata": _float_to_json(info.nodata),
        "description": _first(info.descriptions),
        "tags": _first(info.band_tags),
        "unit": _first(info.units),
        "scale": _finite(_first(info.scales)),
        "offset": _finite(_first(info.offsets)),
        **({"color_interp": info.color_interp[0]} if info.color_interp else {}),  # only where not plain (0.6.1)
        **({"domains": info.band_domains[0]} if info.band_domains and info.band_domains[0] else {}),  # 0.6.1
        "range": layout.rng.to_dict(),
        "quality": layout.quality,
        "refine_step": layout.refine_step,
        "mean_correction": layout.mean_correction,
        "mean_log2_step": layout.mean_log2_step,
        "global_gain": global_gain,
        "bright": {"threshold_db": layout.bright_threshold, "step_db": layout.bright_step_db},
        "reference": layout.reference,
        "stats": stats,
    }


def build_header(layout: Layout, info: RasterInfo, bands: list[dict[str, Any]]) -> dict[str, Any]:
    """The header of a file whose bands (`band_entry`, in coding order) share this layout's geometry, made from
    a raster described by `info`."""
    raster = info.to_dict()
    scaled = any(pp.band_scaling(band["scale"], band["offset"], band["kind"]) != pp.IDENTITY for band in bands)
    return {
        "format": "sarz",
        "format_version": FORMAT_VERSION if scaled else PLAIN_VERSION,
        "software": {"name": "sar_compressor", "version": software_version()},
        "raster": {name: raster[name] for name in RASTER_FIELDS if name in raster},
        "bands": bands,
        "tiling": {"tile_width": layout.tile_width, "tile_height": layout.tile_height, "order": TILE_ORDER},
        "streams": list(STREAMS),
        "tools": dict(TOOLS),
        "refine": {"wavelet": "cdf97", "levels": refine.LEVELS, "dead_zone": tables.DEAD_ZONE},
        "gain_blocks": {"block_size": layout.block, "offsets": BLOCK_OFFSETS},
    }


def _unsupported(header: dict[str, Any], raster: dict[str, Any]) -> list[str]:
    """Features a later version may write and this one cannot decode, named for the message."""
    tools = header["tools"]
    found = []
    if not isinstance(tools, dict) or any(value is not None for value in tools.values()) or set(tools) - set(TOOLS):
        found.append(f"learned tools {tools!r}")
    if header["streams"] not in (list(STREAMS), list(STREAMS[:LEGACY_STREAMS])):
        found.append(f"chunk streams {header['streams']!r}")
    return found


def _info(raster: dict[str, Any], band: dict[str, Any]) -> RasterInfo:
    """The single-band RasterInfo the writer needs, from the raster section and the band's entry."""

    def listed(value: Any) -> list:
        return [] if value is None else [value]

    info = RasterInfo.from_dict(
        {
            **raster,
            "count": 1,
            "nodata": band["nodata"],
            "descriptions": listed(band["description"]),
            "band_tags": listed(band["tags"]),
            "units": listed(band["unit"]),
            "scales": listed(band["scale"]),
            "offsets": listed(band["offset"]),
            "color_interp": listed(band.get("color_interp")),
            "band_domains": listed(band.get("domains")),
        }
    )
    return as_decoded(info, band["kind"])


def as_decoded(info: RasterInfo, kind: str) -> RasterInfo:
    """A band's single-band RasterInfo as its decoded output carries it, for the decoder and for the reconstruction
    written while compressing alike: a complex band decodes to intensity, to which the SLC's scale and offset do not
    apply, and whose unit is SNAP's for |z|**2 (an SLC's "amplitude" made the decoded intensity read as amplitude
    again; on the reconstruction, a CInt16 SLC's scale of 0.001 made GDAL and QGIS show 1/1000 of it)."""
    if kind != "complex":
        return info
    return replace(info, units=["intensity"], scales=[], offsets=[])


def layouts_from_header(header: dict[str, Any]) -> tuple[list[Layout], list[RasterInfo]]:
    """Validated layouts of every band (coding order) and each band's single-band RasterInfo; ContainerError
    naming the field that is missing or wrong."""
    try:
        raster = header["raster"]
        unsupported = _unsupported(header, raster)
        if unsupported:
            raise ContainerError(
                f"the file uses {'; '.join(unsupported)}: not supported by this version of the software"
            )
        bands = header["bands"]
        if not isinstance(bands, list) or not bands:
            raise ValueError("no bands")
        parsed = [_band_layout(header, raster, i, band) for i, band in enumerate(bands)]
    except ContainerError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, SARCompressorError) as exc:
        raise ContainerError(f"the .sarz header is incomplete or invalid ({type(exc).__name__}: {exc})") from exc
    layouts = [layout for layout, _, _ in parsed]
    sources = [band["source_band"] for band in bands]
    bad = sorted({name for _, _, checks in parsed for name, ok in checks.items() if not ok})
    if len(set(sources)) != len(sources) or not all(isinstance(s, int) and s >= 1 for s in sources):
        bad.append("source_band")
    if any(not _valid_reference(layout, layouts) for layout in layouts):
        bad.append("reference")
    if bad:
        raise ContainerError(f"the .sarz header has invalid fields: {', '.join(bad)}")
    return layouts, [info for _, info, _ in parsed]


def _tiling_ok(layout: Layout) -> bool:
    """Tiles within the raster and no larger than TILE (every format read, 6 on, tiles so), each side whole gain blocks
    (their grid is the raster's) or the raster's whole side."""
    sides = (layout.tile_width, layout.width), (layout.tile_height, layout.height)
    return all(1 <= tile <= min(size, TILE) for tile, size in sides) and tiles_hold(
        layout.block, layout.tile_width, layout.tile_height, layout.width, layout.height
    )


def _block_ok(version: Any, block: Any) -> bool:
    """Formats 11 and 12 name their block side (BLOCK_SIDES); formats 6 to 10 have LEGACY_BLOCK."""
    return type(block) is int and (block in BLOCK_SIDES if version >= 11 else block == LEGACY_BLOCK)


def _valid_reference(layout: Layout, layouts: list[Layout]) -> bool:
    """None, or another band of the file that is itself coded on its own (references form a star)."""
    ref = layout.reference
    if ref is None:
        return True
    return type(ref) is int and 0 <= ref < len(layouts) and ref != layout.band_index and layouts[ref].reference is None


def _band_layout(
    header: dict[str, Any], raster: dict[str, Any], index: int, band: dict[str, Any]
) -> tuple[Layout, RasterInfo, dict[str, bool]]:
    """Band `index`'s layout, its single-band info and the checks of its fields."""
    info = _info(raster, band)
    tiling, gain, bright = header["tiling"], header["gain_blocks"], band["bright"]
    legacy = header["format_version"] == 6  # format 6's block means: one step (1/32 log2), Layout.legacy_means
    block_ok = _block_ok(header["format_version"], gain["block_size"])
    layout = Layout(
        width=int(info.width),
        height=int(info.height),
        kind=pp.check_kind(band["kind"]),
        dtype=pp.check_dtype(info.dtype),
        nodata=_float_from_json(band["nodata"]),
        rng=pp.Range.from_dict(band["range"]),
        quality=int(band["quality"]),
        refine_step=_refine_step(band["refine_step"]),
        mean_correction=str(band["mean_correction"]),
        bright_threshold=float(bright["threshold_db"]),
        tile_width=int(tiling["tile_width"]),
        tile_height=int(tiling["tile_height"]),
        band_index=index,
        reference=band["reference"],
        n_streams=len(header["streams"]),
        mean_log2_step=float(gain["log2_step"] if legacy else band["mean_log2_step"]),
        format_version=int(header["format_version"]),
        block=gain["block_size"] if block_ok else LEGACY_BLOCK,  # a wrong side is refused below, by name
        scaling=pp.band_scaling(band["scale"], band["offset"], band["kind"]) if scales(header) else pp.IDENTITY,
    )
    global_gain = float(band["global_gain"])
    checks = {
        "format_version": header["format_version"] in READ_VERSIONS,
        "size": layout.width >= 1 and layout.height >= 1,
        "tiling": _tiling_ok(layout) and tiling["order"] == TILE_ORDER,
        "gain": layout.mean_correction in MEAN_CORRECTIONS
        and block_ok
        and (gain["log2_step"] == MEAN_LOG2_STEPS[0] if legacy else gain["offsets"] == BLOCK_OFFSETS)
        and layout.mean_log2_step in MEAN_LOG2_STEPS
        and math.isfinite(global_gain)
        and global_gain > 0,
        "bright": bright["step_db"] == layout.bright_step_db and math.isfinite(layout.bright_threshold),
        "refine": header["refine"]["wavelet"] == "cdf97"
        and header["refine"]["levels"] == refine.LEVELS
        and header["refine"]["dead_zone"] == tables.DEAD_ZONE,
    }
    return layout, info, checks


def scales(header: dict[str, Any]) -> bool:
    """Whether the file's bands were coded in their GDAL scale and offset (format 13 on)."""
    return header["format_version"] >= FORMAT_VERSION


def global_gain(header: dict[str, Any], index: int = 0) -> float:
    """Band `index`'s global gain (validated by layouts_from_header)."""
    return float(header["bands"][index]["global_gain"])


def _refine_step(value: Any) -> float:
    """The refinement step (a fraction of the dB range); ValueError if not a usable step."""
    step = float(value)
    if not (math.isfinite(step) and 0.0 < step <= 1.0):
        raise ValueError(f"refinement step {step!r} out of range")
    return step
