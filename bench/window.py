"""Random access (issue 18): a 1024x1024 window at full resolution and the whole raster at its coarsest overview
at least 1000 pixels wide, from a large .sarz (decode_window) and from an equivalent tiled .jp2 with its own
overviews (GDAL's JP2OpenJPEG), each read from a freshly opened file.

The window is centred, so it straddles four 1024 tiles on a raster whose side is an odd multiple of 512 and
two to four otherwise. The .jp2 is coded from the same dB values (uint16 over the coded range) at the bpp the
.sarz reached (QUALITY = 100 * bpp / 16, untuned), in 1024x1024 tiles.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import numpy as np

from ..engine.api import compress_file
from ..engine.codec.passes.window_decode import SarzWindowReader
from ..engine.simulate import write_scene
from . import jpeg2000

WINDOW = 1024
OVERVIEW_WIDTH = 1000


def _level_for(width: int, max_level: int) -> int:
    """The coarsest level at least OVERVIEW_WIDTH wide (half the raster's width for small test rasters)."""
    target = min(OVERVIEW_WIDTH, max(1, width // 2))
    level = 0
    while level < max_level and math.ceil(width / 2 ** (level + 1)) >= target:
        level += 1
    return level


def _write_jp2(tif: Path, jp2: Path, rng: tuple[float, float], bpp: float, resolutions: int) -> None:
    """`resolutions`: wavelet levels + 1 (OpenJPEG's default keeps 1024 tiles to 1/8: the coarse read needs more)."""
    import rasterio

    from ..engine.metrics import to_domains

    with rasterio.open(tif) as ds:
        db, _ = to_domains(ds.read(1), "intensity")
        profile = {"driver": jpeg2000.DRIVER, "width": ds.width, "height": ds.height, "count": 1, "dtype": "uint16"}
        profile.update(crs=ds.crs, transform=ds.transform)
    q16 = jpeg2000.db_to_uint16(db, rng)
    del db
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        options = {"QUALITY": f"{100.0 * bpp / (8 * q16.itemsize):.6g}", "REVERSIBLE": "NO", "RESOLUTIONS": resolutions}
        with rasterio.open(jp2, "w", BLOCKXSIZE=WINDOW, BLOCKYSIZE=WINDOW, **options, **profile) as dst:
            dst.write(q16, 1)


def _timed(fn) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def measure(size: int, quality: int, workdir: Path) -> dict:
    """Window and overview read times of our codec and of OpenJPEG on a simulated size x size scene."""
    import rasterio
    from rasterio.windows import Window

    tif = write_scene(workdir / f"window_{size}.tif", size, size, looks=1, seed=7)
    sarz, jp2 = workdir / "window.sarz", workdir / "window.jp2"
    stats = compress_file(tif, sarz, quality=quality)
    side = min(WINDOW, size)
    off = (size - side) // 2
    with SarzWindowReader(sarz) as reader:
        level = _level_for(size, reader.max_level)
        shape = reader.level_shape(level)
    with SarzWindowReader(sarz) as reader:
        window_s, _ = _timed(lambda: reader.read((off, off, side, side)))
    with SarzWindowReader(sarz) as reader:
        overview_s, _ = _timed(lambda: reader.read((0, 0, shape[1], shape[0]), level))
    _write_jp2(tif, jp2, (stats.vmin, stats.vmax), stats.bpp, max(level + 1, 2))
    with rasterio.open(jp2) as ds:
        j_window_s, _ = _timed(lambda: ds.read(1, window=Window(off, off, side, side)))
    with rasterio.open(jp2, overview_level=level - 1) if level else rasterio.open(jp2) as ds:
        j_overview_s, j_ov = _timed(lambda: ds.read(1))
    result = {
        "size": size,
        "quality": quality,
        "window": [off, off, side, side],
        "overview_level": level,
        "overview_shape": list(shape),
        "ours": {"bpp": stats.bpp, "window_s": window_s, "overview_s": overview_s},
        "jpeg2000": {
            "bpp": 8.0 * jp2.stat().st_size / size**2,
            "window_s": j_window_s,
            "overview_s": j_overview_s,
            "overview_shape": list(j_ov.shape),
        },
    }
    for path in (tif, sarz, jp2):
        path.unlink(missing_ok=True)
    return result
