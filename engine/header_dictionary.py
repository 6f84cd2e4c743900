"""The preset dictionary that .sarz headers are deflated with (format 3 on; never change it within a format).

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
    "base": "flat",
    "bright": {"step_db": 0.05, "threshold_db": 4.732899837493903},
    "chunk_version": 2,
    "format": "sarz",
    "format_version": 3,
    "gain": {"block_size": 64, "global": 1.0079591496755072, "log2_step": 0.03125, "mode": "block"},
    "input": {
        "band": 1,
        "band_tags": [{}],
        "count": 1,
        "crs_wkt": _UTM_WGS84,
        "description": "VV",
        "descriptions": ["VV"],
        "dtype": "float32",
        "gcp_crs_wkt": None,
        "gcps": None,
        "has_georef": True,
        "height": 1024,
        "kind": "intensity",
        "nodata": "nan",
        "offsets": [0.0],
        "scales": [1.0],
        "tags": {"AREA_OR_POINT": "Area"},
        "transform": [500000.0, 10.0, 0.0, 4500000.0, 0.0, -10.0],
        "units": [None],
        "width": 1024,
    },
    "latent": {"channels": 16, "halo": 32, "height": 64, "latent_halo": 2, "tile": 256, "width": 64},
    "model": {
        "arch": {"latent_channels": 16, "name": "baseline"},
        "name": "baseline",
        "sha256": "",
    },
    "model_level": 1,
    "n_qualities": 12,
    "quality": 5,
    "range": {"mode": "percentile", "vmax": 4.732899837493903, "vmin": -22.356786184310913},
    "refine": {"dead_zone": 0.1, "levels": 5, "step": 0.2, "wavelet": "cdf97"},
    "software": {"name": "sar_compressor", "version": "0.1.0"},
    "stats": {
        "base_trial": {"chosen": "flat", "costs": {"flat": 0.0, "network": 0.0}, "strips": [0, 1]},
        "clipped_fraction": 0.00600433349609375,
        "input_bytes": 1048576,
        "linear_mean": 0.2014392056737302,
        "n_bright_residuals": 263,
        "pixels": 262144,
        "valid_pixels": 262144,
    },
    "strip_rows": 256,
}

HEADER_DICTIONARY = (
    json.dumps([_GEOGCS_WGS84, "resnet_lite_v2", "amplitude", "db", "uint16", "network", "global", "none", "model"])
    + json.dumps(_TYPICAL_HEADER, sort_keys=True, separators=(",", ":"))
).encode("utf-8")
"""Deflate's preset dictionary for headers: what is common sits at its end, nearest to the header text."""
