"""`Sarz`: the codec as a numcodecs codec (id "sarz"), for Zarr v2 arrays, xarray and Dask.

    from sar_compressor.engine.zarr_codec import Sarz
    ds.to_zarr("cube.zarr", encoding={"vv": {"compressor": Sarz(quality=4, kind="intensity")}})

Each chunk is coded on its own, so any worker with this package decodes any chunk. The last two axes are the
image; a chunk holding one such plane (2-D, or (1, y, x) in a time/band cube) is a complete .sarz file (range,
layout and the rest in its own header: `sar-compressor info` reads it); a chunk of several planes, or one without
a valid pixel, is a small frame of such planes.
A plane without a valid pixel (all nodata / NaN, e.g. a scene's border) has nothing to code: it is kept exactly,
deflated. Registered with numcodecs on import and through the `numcodecs.codecs` entry point (as imagecodecs
registers JPEG 2000, JPEG XL and LERC), so `numcodecs.get_codec({"id": "sarz", ...})` and Zarr find it.

Lossy, and each chunk carries its own header and pass-1 statistics: use chunks of at least 256x256 pixels
(smaller ones spend a growing share of their bytes on headers; README gives the measured cost).
"""

from __future__ import annotations

import io
import math
import numbers
import re
import struct
import warnings
import zlib
from typing import Any, Optional

import numpy as np
from numcodecs import register_codec
from numcodecs.abc import Codec
from numcodecs.compat import ensure_ndarray, ndarray_copy

from . import preprocessing as pp
from .api import compress_array, decompress_array
from .codec.entropy.codes import inflate
from .codec.entropy.ssim_weights import TUNES
from .codec.format.container import MAGIC
from .codec.passes.quality import DEFAULT_QUALITY, quality_level
from .codec.passes.rate_control import is_target
from .errors import ContainerError, InputError, UnreachableTarget


def _check_settings(
    quality: Optional[int],
    target_bpp: Optional[float],
    kind: str,
    tune: str,
    scale: float,
    offset: float,
    nodata: Optional[float] = None,
) -> None:
    """Refuse settings no chunk can be coded with, when the codec is made: found at the first chunk they failed
    after the array's metadata was written (a half-made store), a target with the per-chunk figure it became."""
    if quality is not None:
        quality_level(quality)
    if target_bpp is not None and not is_target(target_bpp):
        raise InputError(f"the Sarz codec's target_bpp must be a positive number of bits per pixel, got {target_bpp!r}")
    if kind != "auto":
        pp.check_kind(kind)
    if kind == "complex":  # real dtypes only (class docstring): no chunk could be coded
        raise InputError("the Sarz codec codes real arrays: kind 'complex' fits none (its intensity: 'intensity')")
    if nodata is not None and not _is_number(nodata):
        raise InputError(f"the Sarz codec's nodata must be a number (or None), got {nodata!r}")
    if tune not in TUNES:
        raise InputError(f"the Sarz codec's tune must be one of {', '.join(TUNES)}, got {tune!r}")
    numbers_ok = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (scale, offset))
    if not (numbers_ok and math.isfinite(scale) and scale != 0 and math.isfinite(offset)):
        raise InputError(
            f"the Sarz codec's scale must be finite and non-zero, its offset finite: {scale!r}, {offset!r}"
        )


NON_FINITE = ("NaN", "Infinity", "-Infinity")
"""A non-finite nodata in the array's JSON metadata, spelled as Zarr spells its fill_value (Python's json wrote a
bare NaN, which strict JSON readers refuse)."""


def _is_number(value: object) -> bool:
    """A real number: a Python or numpy scalar, or a 0-d numeric array (not text, not a bool)."""
    if isinstance(value, (str, bytes, bool, np.bool_)):
        return False
    return np.ndim(value) == 0 and np.asarray(value).dtype.kind in "iuf"


FRAME_MAGIC = b"SZCK"
BIG_ENDIAN_MAGIC = b"SZBE"
"""Before a chunk of a big-endian array (xarray opens NetCDF3 as such): coded in native order, given back big-endian
(Zarr reads the decoded bytes as the array's dtype)."""
_FRAME = struct.Struct("<4sIII")  # magic, planes, height, width
_LENGTH = struct.Struct("<Q")


class Sarz(Codec):
    """numcodecs codec: `quality` (1..N) or `target_bpp` (bits per pixel, per chunk), the input `kind` and the
    `nodata` value (invalid pixels come back exactly), `tune` ("ssim" or "psnr"), and `scale` / `offset`, what the
    stored values mean (value = raw * scale + offset: the scale_factor / add_offset an xarray encoding applies
    before the codec sees the chunk, so dB x 100 in int16 is coded as the dB it holds). Real dtypes only: a complex
    chunk decodes as intensity, which its Zarr array could not hold."""

    codec_id = "sarz"

    def __init__(
        self,
        quality: Optional[int] = None,
        target_bpp: Optional[float] = None,
        kind: str = "auto",
        nodata: Optional[float] = None,
        tune: str = "ssim",
        scale: float = 1.0,
        offset: float = 0.0,
    ):
        if quality is not None and target_bpp is not None:
            raise InputError("give the Sarz codec a quality or a target_bpp, not both")
        nodata = float(nodata) if isinstance(nodata, str) and nodata in NON_FINITE else nodata  # from get_config
        _check_settings(quality, target_bpp, kind, tune, scale, offset, nodata)
        self.quality = DEFAULT_QUALITY if quality is None and target_bpp is None else quality
        self.target_bpp = target_bpp
        self.kind = kind
        self.nodata = None if nodata is None else float(nodata)  # a 0-d array went into the JSON metadata: TypeError
        self.tune = tune
        self.scale = scale
        self.offset = offset
        self._warned: set[str] = set()

    def get_config(self) -> dict:
        """The codec's settings for the array's metadata; scale and offset only where set, so that an array
        without them reads in 0.6, whose codec takes no such settings."""
        config = super().get_config()
        if (self.scale, self.offset) == (1.0, 0.0):
            config.pop("scale"), config.pop("offset")
        if self.nodata is not None and not math.isfinite(self.nodata):  # a bare NaN token is not JSON
            config["nodata"] = "NaN" if math.isnan(self.nodata) else "Infinity" if self.nodata > 0 else "-Infinity"
        return config

    def encode(self, buf: Any) -> bytes:
        arr = np.asarray(buf)
        if arr.ndim < 2 or arr.size == 0:
            raise InputError(f"the Sarz codec codes images: expected a chunk with at least 2 axes, got {arr.shape}")
        if np.dtype(arr.dtype).kind == "c":
            raise InputError("the Sarz codec stores real values: store complex SAR as intensity or amplitude")
        if arr.flags.f_contiguous and not arr.flags.c_contiguous:  # decoded row-major, read back scrambled
            raise InputError("the Sarz codec codes row-major arrays: create the Zarr array with order='C'")
        if arr.dtype.byteorder == ">":  # big-endian where the machine is not (numpy says '=' where it is)
            return BIG_ENDIAN_MAGIC + self._frame(arr.astype(arr.dtype.newbyteorder("=")))
        return self._frame(arr)

    def _frame(self, arr: np.ndarray) -> bytes:
        """The chunk's bytes: a .sarz file for one plane with valid pixels, else a frame of planes."""
        pp.check_dtype(arr.dtype)
        planes = arr.reshape(-1, *arr.shape[-2:])
        if len(planes) == 1 and self._has_valid(planes[0]):
            return self._plane(planes[0])
        parts = [self._plane(p) if self._has_valid(p) else _deflated(p) for p in planes]
        head = _FRAME.pack(FRAME_MAGIC, len(parts), *arr.shape[-2:])
        return head + b"".join(_LENGTH.pack(len(p)) for p in parts) + b"".join(parts)

    def decode(self, buf: Any, out: Any = None) -> np.ndarray:
        data = ensure_ndarray(buf).tobytes()
        if data.startswith(BIG_ENDIAN_MAGIC):
            native = self.decode(data[len(BIG_ENDIAN_MAGIC) :])
            return ndarray_copy(native.astype(native.dtype.newbyteorder(">")), out)
        if data.startswith(MAGIC):
            return ndarray_copy(decompress_array(data), out)
        height, width, parts = _frame_parts(data)
        planes = [_decode_plane(p, height * width) for p in parts]
        if any(p.shape != (height, width) for p in planes):
            raise ContainerError(f"damaged Sarz chunk: a plane's shape differs from the frame's {height}x{width}")
        return ndarray_copy(np.stack(planes), out)

    def _has_valid(self, plane: np.ndarray) -> bool:
        """Whether a plane has a pixel to code: not nodata, finite, not zero (a plane of zeros, Zarr's default fill
        or a footprint's border, is kept exactly by `_deflated` in every kind)."""
        return bool(pp.valid_mask(plane, self.nodata, zero_fill=True).any())

    def _valid_share(self, plane: np.ndarray) -> float:
        """The share of a plane's pixels the codec codes as data (pp.coded_pixels: zeros are fill where its kind says
        so, unless scattered inside the signal; a fill compression finds without a nodata value, pp.undeclared_fill,
        is not data either: counted, a chunk with 29 % of it at -9999 took 1.41 bits per valid pixel for 1 asked)."""
        step = pp.sample_stride(*plane.shape)  # pass 1's sample (survey.sample_band): the same decision, bounded
        nodata = (
            self.nodata if self.nodata is not None else pp.undeclared_fill(plane[::step, ::step], self._kind_scaling)
        )
        valid = pp.valid_mask(plane, nodata)
        kind = self._kind_scaling(plane[valid])[0] if valid.any() else "db"
        return float(np.mean(pp.coded_pixels(plane, kind, plane.dtype, nodata)))

    def _kind_scaling(self, values: np.ndarray) -> tuple[str, pp.Scaling]:
        """The kind compression gives `values` (the codec's, or detected on them in their own units) and its
        scaling."""
        scaling = pp.band_scaling(self.scale, self.offset)
        kind = (
            self.kind
            if self.kind != "auto"
            else pp.detect_kind(values.dtype, pp.scaled(values, scaling), scaled=scaling != pp.IDENTITY)
        )
        return kind, pp.band_scaling(self.scale, self.offset, kind)

    def _warn(self, text: str) -> None:
        """A warning once per codec and kind of warning (its text without numbers): a write codes many chunks."""
        key = re.sub(r"[-+]?\d[\d.e+-]*", "#", text)
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"Sarz codec: {text} (said once)", stacklevel=4)

    def _plane(self, plane: np.ndarray) -> bytes:
        """One 2-D plane with valid pixels -> a .sarz file. A target is in bits per valid pixel: Zarr pads an
        array's edge chunks to the chunk's shape with its fill value (0 or NaN: invalid), and a target over the
        padded chunk gave the edge's pixels several times the bits (0.5 bpp asked: 1.25 stored over a 300x350
        array's pixels in 256x256 chunks). A chunk too small to reach the target (its header alone) is coded at
        the coarsest quality instead of failing the whole write."""
        if self.target_bpp is None:
            return self._coded(plane, quality=self.quality)
        share = self._valid_share(plane)
        try:
            return self._coded(plane, target_bpp=self.target_bpp * share if share > 0 else self.target_bpp)
        except UnreachableTarget as exc:
            reach = f"{self.target_bpp:g} bits per valid pixel cannot be reached on a chunk ({exc})"
            self._warn(f"{reach}; it is coded at quality 1")
            return self._coded(plane, quality=1)

    def _coded(self, plane: np.ndarray, **options: Any) -> bytes:
        """compress_array's bytes; pass 1's warnings (negative values, a constant plane...) as Python warnings: a
        codec has no other way to say them."""
        result = compress_array(
            plane, kind=self.kind, nodata=self.nodata, tune=self.tune, scale=self.scale, offset=self.offset, **options
        )
        for warning in result.stats.warnings:
            self._warn(warning)
        return result.data


def _deflated(plane: np.ndarray) -> bytes:
    """A plane with nothing to code, exactly (.npy, deflated: a constant plane takes a few dozen bytes)."""
    out = io.BytesIO()
    np.save(out, np.ascontiguousarray(plane), allow_pickle=False)
    return zlib.compress(out.getvalue(), 9)


def _decode_plane(part: bytes, pixels: int) -> np.ndarray:
    """A frame's plane of `pixels` values: a .sarz, or a deflated .npy inflated to no more than such a plane holds
    (16-byte values and the .npy header: a forged chunk could otherwise inflate 1000-fold)."""
    if part.startswith(MAGIC):
        return decompress_array(part)
    try:
        return np.load(io.BytesIO(inflate(part, "a plane", 16 * pixels + 4096)), allow_pickle=False)
    except (ContainerError, ValueError) as exc:
        raise ContainerError(f"damaged Sarz chunk: a plane is neither .sarz nor a deflated array ({exc})") from exc


def _frame_parts(data: bytes) -> tuple[int, int, list[bytes]]:
    """A frame's plane height and width, and its planes' bytes (checked against its length table)."""
    if len(data) < _FRAME.size or not data.startswith(FRAME_MAGIC):
        raise ContainerError("not a Sarz chunk (neither a .sarz file nor a Sarz frame)")
    _, n, height, width = _FRAME.unpack_from(data)
    if n == 0:
        raise ContainerError("damaged Sarz chunk (a frame of no plane)")
    table_end = _FRAME.size + n * _LENGTH.size
    if len(data) < table_end:
        raise ContainerError("truncated Sarz chunk (its length table runs past the end)")
    lengths = [_LENGTH.unpack_from(data, _FRAME.size + i * _LENGTH.size)[0] for i in range(n)]
    if table_end + sum(lengths) != len(data):
        raise ContainerError("damaged Sarz chunk (its planes' lengths do not add up to its size)")
    parts, offset = [], table_end
    for length in lengths:
        parts.append(data[offset : offset + length])
        offset += length
    return height, width, parts


register_codec(Sarz)
