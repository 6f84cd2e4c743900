"""A decimated read of one raster band, for pictures and summaries (Evaluate's report, the dock's views).

Nearest-neighbour decimation to at most `max_side` pixels a side keeps speckle statistics (no averaging), and
the read stays cheap on rasters of any size. Nodata, masked (a GDAL mask of the band's own, as the codec reads
it) and non-finite pixels become NaN; values are in the band's own units (its GDAL scale and offset applied, as the
codec codes them).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

PREVIEW_SIDE = 1024  # longest side of a preview, in pixels


@dataclass
class Preview:
    """The decimated band (float64 or complex128, NaN where invalid) and what it was read from."""

    data: object  # numpy array
    dtype: str  # the band's data type in the file
    width: int  # the band's full size
    height: int
    band_count: int
    nodata: float | None
    description: str
    tags: dict
    transform: object  # the band's affine transform (rasterio.Affine; identity without georeferencing)
    crs_wkt: str


def read_preview(path: str, band: int, max_side: int = PREVIEW_SIDE) -> Preview:
    """Band `band` of `path` decimated (nearest) to at most `max_side` pixels a side; its nodata pixels, or those
    of the fill the codec finds where it declares none (engine.metrics.original_nodata), NaN."""
    import numpy as np
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    from ..engine import preprocessing as pp
    from ..engine.metrics import original_nodata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            step = max(1, math.ceil(max(src.height, src.width) / max_side))
            shape = (max(1, src.height // step), max(1, src.width // step))
            raw = src.read(band, out_shape=shape)
            complex_data = np.iscomplexobj(raw)
            data = raw.astype(np.complex128 if complex_data else np.float64)
            invalid = ~np.isfinite(data)
            nodata = src.nodatavals[band - 1]  # the band's own (src.nodata is band 1's)
            overviews = step > 1 and bool(src.overviews(band))  # their resampled pixels hide a fill: full resolution
            fill = original_nodata(src, band, None if overviews else raw)  # or the fill the codec finds
            if fill is not None and not math.isnan(fill):
                invalid |= raw == fill  # a -9999 fill set both canvases' stretch from -9999
            if pp.has_own_mask(flag.name for flag in src.mask_flag_enums[band - 1]):
                invalid |= src.read_masks(band, out_shape=shape) == 0  # the comparison showed masked pixels as data
            scaling = pp.band_scaling(src.scales[band - 1], src.offsets[band - 1], "complex" if complex_data else None)
            data = pp.scaled(data, scaling)
            data[invalid] = np.nan
            return Preview(
                data=data,
                dtype=str(src.dtypes[band - 1]),
                width=src.width,
                height=src.height,
                band_count=src.count,
                nodata=nodata,
                description=src.descriptions[band - 1] or "",
                tags=dict(src.tags(band)),
                transform=src.transform,
                crs_wkt=src.crs.to_wkt() if src.crs else "",
            )
