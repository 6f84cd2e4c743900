"""The JSON header of a .sarz: written by the encoder, validated into a Layout by the decoder.

The header carries every parameter the decoder needs (raster geometry and georeferencing, kind, dB range,
quality, base, network level and refinement step, model identity, strip and gain-block sizes), so a file decodes
without the options it was made with.
Reading checks each field against what this version writes: a foreign or damaged header is a ContainerError
naming the fields, never a wrong raster.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import preprocessing as pp
from . import refine
from .compressor import HALO, LATENT_HALO, TILE
from .container import FORMAT_VERSION
from .errors import ContainerError, SARCompressorError
from .layout import BASES, BLOCK, Layout, strip_height
from .quality import N_QUALITIES
from .radiometry import GAIN_LOG2_STEP, MEAN_CORRECTIONS
from .raster_io import RasterInfo
from .strip_payload import CHUNK_VERSION

if TYPE_CHECKING:
    from .models.checkpoint import LoadedModel


def _software_version() -> str:
    """The plugin version from metadata.txt, recorded so a file says what wrote it."""
    meta = Path(__file__).resolve().parents[1] / "metadata.txt"
    with contextlib.suppress(OSError):
        for line in meta.read_text(encoding="utf-8").splitlines():
            if line.startswith("version="):
                return line.split("=", 1)[1].strip()
    return "unknown"


def build_header(
    layout: Layout,
    info: RasterInfo,
    band: int,
    model: LoadedModel,
    range_mode: str,
    global_gain: float,
    stats: dict[str, Any],
) -> dict[str, Any]:
    """The header of a file with this layout, made from band `band` of `info` by `model`."""
    input_dict = info.to_dict()
    input_dict.update(
        kind=layout.kind,
        band=band,
        description=info.descriptions[0] if info.descriptions else None,
    )
    return {
        "format": "sarz",
        "format_version": FORMAT_VERSION,
        "software": {"name": "sar_compressor", "version": _software_version()},
        "model": {"name": model.name, "sha256": model.sha256[:MODEL_ID_HEX], "arch": model.config.get("model", {})},
        "quality": layout.quality,
        "n_qualities": N_QUALITIES,
        "model_level": layout.level + 1,
        "base": layout.base,
        "refine": {
            "step": layout.refine_step,
            "wavelet": "cdf97",
            "levels": refine.LEVELS,
            "dead_zone": refine.DEAD_ZONE,
        },
        "input": input_dict,
        "range": {**layout.rng.to_dict(), "mode": range_mode},
        "strip_rows": layout.strip_height,
        "chunk_version": CHUNK_VERSION,
        "latent": {
            "channels": layout.latent_channels,
            "height": layout.latent_height,
            "width": layout.latent_width,
            "tile": TILE,
            "halo": HALO,
            "latent_halo": LATENT_HALO,
        },
        "gain": {
            "mode": layout.mean_correction,
            "block_size": BLOCK,
            "log2_step": GAIN_LOG2_STEP,
            "global": global_gain,
        },
        "bright": {"threshold_db": layout.bright_threshold, "step_db": layout.bright_step_db},
        "stats": stats,
    }


MODEL_ID_HEX = 16
"""The header names its model by the first 64 bits of the checkpoint's sha256: enough to tell models apart,
and the whole hash would be ~45 of the ~230 header bytes that a small crop pays for."""


def model_identity(header: dict[str, Any]) -> tuple[str, str]:
    """(name, sha256 prefix) of the model that wrote the file."""
    try:
        return str(header["model"]["name"]), str(header["model"]["sha256"])
    except (KeyError, TypeError) as exc:
        raise ContainerError("the .sarz header does not name its model") from exc


def layout_from_header(header: dict[str, Any]) -> tuple[Layout, RasterInfo]:
    """Validated layout from a header; ContainerError naming the field that is missing or wrong."""
    try:
        inp = header["input"]
        info = RasterInfo.from_dict(inp)
        gain, lat = header["gain"], header["latent"]
        layout = Layout(
            width=int(info.width),
            height=int(info.height),
            kind=pp.check_kind(inp["kind"]),
            dtype=pp.check_dtype(info.dtype),
            nodata=info.nodata,
            rng=pp.Range.from_dict(header["range"]),
            level=int(header["model_level"]) - 1,
            quality=int(header["quality"]),
            refine_step=_refine_step(header["refine"]),
            mean_correction=str(gain["mode"]),
            bright_threshold=float(header["bright"]["threshold_db"]),
            latent_channels=int(lat["channels"]),
            base=str(header["base"]),
            strip_height=int(header["strip_rows"]),
        )
        checks = {
            "size": layout.width >= 1 and layout.height >= 1 and info.count == 1,
            "strip_rows": layout.strip_height == strip_height(layout.width)
            and header["chunk_version"] == CHUNK_VERSION,
            "gain": layout.mean_correction in MEAN_CORRECTIONS
            and gain["block_size"] == BLOCK
            and gain["log2_step"] == GAIN_LOG2_STEP
            and math.isfinite(float(gain["global"]))
            and float(gain["global"]) > 0,
            "bright": header["bright"]["step_db"] == layout.bright_step_db and math.isfinite(layout.bright_threshold),
            "refine": header["refine"]["wavelet"] == "cdf97"
            and header["refine"]["levels"] == refine.LEVELS
            and header["refine"]["dead_zone"] == refine.DEAD_ZONE,
            "latent": (lat["height"], lat["width"]) == (layout.latent_height, layout.latent_width),
            "base": layout.base in BASES,
        }
    except (KeyError, TypeError, ValueError, AttributeError, SARCompressorError) as exc:
        raise ContainerError(f"the .sarz header is incomplete or invalid ({type(exc).__name__}: {exc})") from exc
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise ContainerError(f"the .sarz header has invalid fields: {', '.join(bad)}")
    return layout, info


def _refine_step(section: dict[str, Any]) -> float:
    """The refinement step (a fraction of the dB range); ValueError if not a usable step."""
    step = float(section["step"])
    if not (math.isfinite(step) and 0.0 < step <= 1.0):
        raise ValueError(f"refinement step {step!r} out of range")
    return step
