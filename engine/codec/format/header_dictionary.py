"""The preset dictionaries that .sarz headers are deflated with, one per format (never change one within a format).

A header is ~1-2 KB of JSON whose keys and most values recur in every file; deflated alone it stays
~700 bytes, 0.09 bit per pixel on a 256 x 256 crop, a third of the budget at 0.25 bpp. Deflated against
this typical header (and the CRS definitions GDAL writes most often) it takes ~170 bytes, ~360 with a CRS.
"""

from __future__ import annotations

import json

_GEOGCS_WGS84 = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],'
    'AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,'
    'AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]'
)
_UTM_WGS84 = (
    'PROJCS["WGS 84 / UTM zone 33N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,'
    'AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],'
    'UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AUTHORITY["EPSG","4326"]],'
    'PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",15],'
    'PARAMETER["scale_factor",0.9996],PARAMETER["false_easting",500000],PARAMETER["false_northing",0],'
    'UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],AXIS["Northing",NORTH],'
    'AUTHORITY["EPSG","32633"]]'
)
_TYPICAL_HEADER = {
    "bands": [
        {
            "bright": {"step_db": 0.05, "threshold_db": 4.7329},
            "description": "VV",
            "global_gain": 1.007959,
            "kind": "intensity",
            "mean_correction": "block",
            "nodata": "nan",
            "offset": 0.0,
            "quality": 5,
            "range": {"vmax": 4.7329, "vmin": -22.3568},
            "reference": None,
            "refine_step": 0.2,
            "scale": 1.0,
            "source_band": 1,
            "stats": {
                "clipped_fraction": 0.00600433,
                "input_bytes": 1048576,
                "linear_mean": 0.201439,
                "n_bright_residuals": 263,
                "pixels": 262144,
                "valid_pixels": 262144,
            },
            "tags": {},
            "unit": None,
        }
    ],
    "format": "sarz",
    "format_version": 6,
    "gain_blocks": {"block_size": 64, "log2_step": 0.03125},
    "raster": {
        "crs_wkt": _UTM_WGS84,
        "dtype": "float32",
        "gcp_crs_wkt": None,
        "gcps": None,
        "height": 1024,
        "tags": {"AREA_OR_POINT": "Area"},
        "transform": [500000.0, 10.0, 0.0, 4500000.0, 0.0, -10.0],
        "width": 1024,
    },
    "refine": {"dead_zone": 0.05, "levels": 8, "wavelet": "cdf97"},
    "software": {"name": "sar_compressor", "version": "0.1.0"},
    "streams": ["refinement", "block_means", "bright", "mask", "mask_codes"],
    "tiling": {"order": "band, tile row, tile column", "tile_height": 4096, "tile_width": 1024},
    "tools": {"post_filter": None},
}

_FORMAT_7_CHANGES = {
    "format_version": 7,
    "gain_blocks": {"block_size": 64, "offsets": "per_block"},
    "streams": ["refinement", "block_means", "bright", "mask", "mask_codes", "loop_filter"],
}
"""What format 7's typical header says otherwise; its bands also carry mean_log2_step. Without its own
dictionary, format 7's new fields cost a 256 x 256 crop's header 23 bytes (0.003 bpp, 1 % of 0.25 bpp)."""


_FORMAT_7_STATS = {
    "isolated_zeros": 0,
    "kind_reason": "non-negative floating-point values: linear intensity, coded in dB",
    "no_signal_pixels": 0,
    "warnings": [],
}
"""The statistics `info` shows that format 6's dictionary did not know. With them and the kind reasons below the
8 real crops' headers take 1507 bytes instead of 2010 (C11: 171 instead of 229, 0.007 bpp of its 65,536 pixels;
GEFOLKI 168 instead of 259)."""
_FORMAT_7_WORDS = ("description or tags say intensity", "values mostly negative within [-60, 40]: dB")
"""The other kind reasons a header often says (preprocessing.choose_kind)."""


_WORDS = (_GEOGCS_WGS84, "amplitude", "db", "complex", "uint16", "int16", "global", "none", "AREA_OR_POINT")
"""Values a header often holds that the typical header does not."""


def _dictionary(header: dict, more_words: tuple[str, ...] = ()) -> bytes:
    """Deflate's preset dictionary for headers like `header`: what is common sits at its end, nearest to the
    header text; `more_words` go first."""
    words = [*more_words, *_WORDS]
    return (json.dumps(words) + json.dumps(header, sort_keys=True, separators=(",", ":"))).encode("utf-8")


def _format_7_header(version: int) -> dict:
    """Format 7's typical header, as `version` (7 to 13: the same fields) writes it."""
    band = _TYPICAL_HEADER["bands"][0]
    stats = {**band["stats"], **_FORMAT_7_STATS}
    return {
        **_TYPICAL_HEADER,
        **_FORMAT_7_CHANGES,
        "format_version": version,
        "bands": [{**band, "mean_log2_step": 0.03125, "stats": stats}],
    }


HEADER_DICTIONARIES = {
    6: _dictionary(_TYPICAL_HEADER),
    7: _dictionary(_format_7_header(7), _FORMAT_7_WORDS),
    8: _dictionary(
        {**_format_7_header(8), "software": {"name": "sar_compressor", "version": "0.2.0"}}, _FORMAT_7_WORDS
    ),
    9: _dictionary(
        {**_format_7_header(9), "software": {"name": "sar_compressor", "version": "0.3.0"}}, _FORMAT_7_WORDS
    ),
    10: _dictionary(
        {**_format_7_header(10), "software": {"name": "sar_compressor", "version": "0.4.0"}}, _FORMAT_7_WORDS
    ),
    11: _dictionary(
        {
            **_format_7_header(11),
            "software": {"name": "sar_compressor", "version": "0.5.0"},
            "gain_blocks": {"block_size": 256, "offsets": "per_block"},
        },
        _FORMAT_7_WORDS,
    ),
    12: _dictionary(
        {
            **_format_7_header(12),
            "software": {"name": "sar_compressor", "version": "0.6.0"},
            "gain_blocks": {"block_size": 256, "offsets": "per_block"},
        },
        _FORMAT_7_WORDS,
    ),
    13: _dictionary(
        {
            **_format_7_header(13),
            "software": {"name": "sar_compressor", "version": "0.7.0"},
            "gain_blocks": {"block_size": 256, "offsets": "per_block"},
        },
        _FORMAT_7_WORDS,
    ),
}
"""The preset dictionary of each format version's headers (a file's prefix names its version)."""
