"""Quality figures for SAR reconstructions; each number says in which domain and range it was measured.

SAR fidelity is not one number: PSNR/SSIM in dB over a stated range show the picture, the linear mean ratio
shows radiometric bias, the ENL ratio how much speckle the codec smoothed away, EPI how well edges survived.
Pure numpy (rasterio only in `evaluate_files`, matplotlib only in `render_side_by_side`) so the QGIS side and
the CLI can use it without torch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from .errors import CancelledError, InputError, NoValidPixels, refuse_sarz
from .preprocessing import (
    IDENTITY,
    MAX_SAMPLE,
    MIN_SPAN_DB,
    NOISE_FLOOR,
    Scaling,
    band_scaling,
    db_zero_fill,
    detect_kind,
    native_min_span,
    read_masked,
    read_with_mask,
    robust_range,
    sample_stride,
    scaled,
    strided_strips,
    undeclared_fill,
    valid_mask,
    zero_is_fill,
)

DEFAULT_PERCENTILES = (0.5, 99.5)
KINDS = ("intensity", "amplitude", "db", "complex", "native", "uint8")
NATIVE_KINDS = ("native", "uint8")
"""Values measured as they are: "uint8" over its full scale 0..255, "native" over the original's percentiles."""
METRIC_KEYS = (
    "psnr_db",
    "multilook_psnr_db",
    "ssim",
    "ms_ssim",
    "db_rmse",
    "mean_ratio",
    "enl_ratio",
    "epi",
    "clipped_fraction",
)
"""The figures every evaluation returns, each with its domain under result["domain"]."""
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03  # Wang et al. 2004
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli, Bovik 2003
ENL_WINDOW = 15
ENL_FRACTION = 0.10
MAX_FULL_PIXELS = 4096 * 4096  # above this, evaluate_files accumulates strip by strip (bounded memory)
DEFAULT_LOOKS = 5
"""Side of the boxcar window of the multilooked PSNR (issue 17: L = 5, settable)."""
MAX_CROP = 4096  # ...and measures the neighbourhood metrics on a central crop of at most this size
SUBSAMPLE_PIXELS = 4_000_000  # pixels used for the range percentiles of a large file
STRIP_ROWS = 512

# (vmin, vmax) or an object with .vmin/.vmax (preprocessing.Range)
RangeLike = Union[tuple, Any]


def as_range(rng: RangeLike) -> tuple[float, float]:
    """(vmin, vmax) from a tuple or a preprocessing.Range, checked to be a non-empty interval."""
    vmin, vmax = (rng.vmin, rng.vmax) if hasattr(rng, "vmin") else rng
    vmin, vmax = float(vmin), float(vmax)
    if not (math.isfinite(vmin) and math.isfinite(vmax) and vmax > vmin):
        raise InputError(f"metric range must be finite with vmax > vmin, got [{vmin}, {vmax}]")
    return vmin, vmax


def to_domains(arr: np.ndarray, kind: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(dB, linear intensity) as float64; for native and uint8 display products (native values, None).

    Intensity -> 10 log10(I) with the codec's noise floor; amplitude and complex -> |a|^2 first;
    dB -> 10**(dB/10).
    Non-finite inputs stay non-finite (they are masked out, not floored).
    """
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind in NATIVE_KINDS:
        return arr.astype(np.float64), None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if kind == "db":
            db = arr.astype(np.float64)
            return db, np.power(10.0, db / 10.0)
        lin = np.abs(arr).astype(np.float64) ** 2 if kind in ("amplitude", "complex") else arr.astype(np.float64)
        db = 10.0 * np.log10(np.maximum(lin, NOISE_FLOOR))
        return np.where(np.isfinite(lin), db, np.nan), lin


def metric_range(
    orig: np.ndarray, kind: str = "intensity", nodata: Optional[float] = None, pct=DEFAULT_PERCENTILES
) -> tuple[float, float]:
    """The default evaluation range: percentiles of the ORIGINAL's valid dB values (0..255 for uint8)."""
    if kind == "uint8":
        return 0.0, 255.0
    db, lin = to_domains(orig, kind)
    return _percentile_range(_range_values(db, lin, _valid(orig, nodata, kind) & np.isfinite(db), kind), pct, kind)


def _range_values(db: np.ndarray, lin: Optional[np.ndarray], keep: np.ndarray, kind: str) -> np.ndarray:
    """The original's values (dB, or native) a default range is taken over: those `keep` says and, for intensity,
    only positive ones (noise-subtracted negative values lie below the range, as the codec codes them)."""
    if kind == "intensity" and lin is not None:
        keep = keep & (lin > 0)
    return db[keep]


def _valid(orig: np.ndarray, nodata: Optional[float], kind: str) -> np.ndarray:
    """The original's pixels that carry signal: not nodata, finite and, where the codec treats exact zeros as
    no-signal fill (preprocessing.zero_is_fill), not zero: fill counted as perfectly kept pixels would score a
    damaged reconstruction higher than a good one."""
    native = "native" if kind == "uint8" else kind
    valid = valid_mask(orig, nodata, zero_is_fill(native, orig.dtype))
    if orig.ndim != 2:  # the fill is runs and blobs of an image (metric_range takes any values)
        return valid
    return valid & ~db_zero_fill(orig, kind, nodata)  # a float dB band's zero-filled footprint, as the codec finds it


def _percentile_range(values: np.ndarray, pct, kind: str) -> tuple[float, float]:
    """Percentiles of the original's values, widened to a minimal span: 1 dB, or for native values what the codec
    takes (preprocessing.native_min_span)."""
    if values.size == 0:
        raise NoValidPixels("the original has no valid pixels (all nodata or non-finite)")
    min_span = native_min_span(values) if kind in NATIVE_KINDS else MIN_SPAN_DB
    return as_range(robust_range(values, pct[0], pct[1], min_span=min_span))


# --- pointwise sums ---
@dataclass
class _Sums:
    """Running sums over valid pixels, so a raster can be measured strip by strip."""

    n: int = 0
    sse_scaled: float = 0.0
    sse_native: float = 0.0
    n_native: int = 0
    """Pixels in sse_native: those whose original has a dB (noise-subtracted intensity's negative values have none)."""
    sum_orig_lin: float = 0.0
    sum_recon_lin: float = 0.0
    n_clipped: int = 0
    n_lost: int = 0
    """Pixels valid in the original and not in the reconstruction: left out of every figure (and said)."""
    n_coded_zeros: int = 0
    """The original's fill zeros the reconstruction holds as values (_Pair.coded_zeros)..."""
    coded_zeros_top: float = 0.0
    """...and the largest value it holds there."""

    def add(self, p: _Pair, rng: tuple[float, float]) -> None:
        vmin, vmax = rng
        ov, rv = p.o[p.mask], p.r[p.mask]
        self.n += int(ov.size)
        scale = vmax - vmin
        self.sse_scaled += float(np.sum(((np.clip(rv, vmin, vmax) - np.clip(ov, vmin, vmax)) / scale) ** 2))
        has_db = p.o_lin[p.mask] > 0 if p.o_lin is not None else np.ones(ov.size, dtype=bool)
        self.sse_native += float(np.sum((rv - ov)[has_db] ** 2))
        self.n_native += int(np.count_nonzero(has_db))
        self.n_clipped += int(np.count_nonzero((ov < vmin) | (ov > vmax)))
        self.n_lost += int(np.count_nonzero(p.o_valid & ~p.mask))
        self.n_coded_zeros += p.coded_zeros
        if p.coded_zeros:
            self.coded_zeros_top = max(self.coded_zeros_top, p.coded_top)
        if p.o_lin is not None:
            self.sum_orig_lin += float(np.sum(p.o_lin[p.mask]))
            self.sum_recon_lin += float(np.sum(p.r_lin[p.mask]))


# --- SSIM family ---
def gaussian_kernel(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """SSIM's 1-D gaussian window (11 taps, sigma 1.5), normalised: the metric and the encoder's weights share it."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    k = np.exp(-(x**2) / (2.0 * sigma**2))
    return k / k.sum()


Cancel = Optional[Callable[[], bool]]
_CANCEL: ContextVar[Cancel] = ContextVar("metrics_cancel", default=None)
"""The cancel check of the evaluation running in this thread (evaluate_files' `cancel`), asked between strips and
metrics: the Compress algorithm's metrics could not be cancelled (8 s to act on a 3000x3000 scene)."""


@contextmanager
def _cancellable(cancel: Cancel) -> Iterator[None]:
    token = _CANCEL.set(cancel)
    try:
        yield
    finally:
        _CANCEL.reset(token)


def _check_cancel() -> None:
    cancel = _CANCEL.get()
    if cancel is not None and cancel():
        raise CancelledError("cancelled by the user")


Progress = Optional[Callable[[int, int], None]]
PROGRESS_STEPS = 1000
"""The `total` of the progress(done, total) an evaluation reports."""
_PROGRESS: ContextVar[Optional[tuple[Callable[[int, int], None], float, float]]] = ContextVar(
    "metrics_progress", default=None
)
"""The progress callback of the evaluation running in this thread and the share of its bar the current step fills
(from, to): each step reports within its own share, so the bar only moves forward. Without it the Compress
algorithm's bar stood at 90 % through two thirds of a run (11 s of metrics on a 4096x4096 scene) and Evaluate's at
0 % until the end (a sweep)."""


@contextmanager
def _progressing(progress: Progress) -> Iterator[None]:
    token = _PROGRESS.set(None if progress is None else (progress, 0.0, 1.0))
    try:
        yield
        _report(1.0)
    finally:
        _PROGRESS.reset(token)


@contextmanager
def _part(lo: float, hi: float) -> Iterator[None]:
    """A step filling [lo, hi] of the current step's share of the bar (reported full when it ends)."""
    current = _PROGRESS.get()
    if current is None:
        yield
        return
    progress, a, b = current
    token = _PROGRESS.set((progress, a + lo * (b - a), a + hi * (b - a)))
    try:
        yield
        _report(1.0)
    finally:
        _PROGRESS.reset(token)


def _report(fraction: float) -> None:
    """`fraction` of the current step done."""
    current = _PROGRESS.get()
    if current is not None:
        progress, a, b = current
        progress(round(PROGRESS_STEPS * (a + min(max(fraction, 0.0), 1.0) * (b - a))), PROGRESS_STEPS)


def _filter_valid(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation with the 1-D kernel k along both axes (output shrinks by len(k)-1). In place,
    and without multiplying by a box kernel's ones: the same sums in the same order (bit for bit), 1.5 times (2.2
    for a box) faster on 522x3000 strips than a new array per term, where SSIM took half of the dock's metrics."""
    n = len(k)
    h, w = img.shape[0] - n + 1, img.shape[1] - n + 1
    box = bool(np.all(k == 1.0))
    rows = img[0:h, :] * k[0]
    _accumulate(rows, [img[i : i + h, :] for i in range(1, n)], k[1:], box)
    out = rows[:, 0:w] * k[0]
    _accumulate(out, [rows[:, i : i + w] for i in range(1, n)], k[1:], box)
    return out


def _accumulate(total: np.ndarray, terms: list[np.ndarray], weights: np.ndarray, box: bool) -> None:
    """total += weight * term for each, in order, in place (a box kernel's weights are all 1: added as they are)."""
    scratch = None if box else np.empty_like(total)
    for term, weight in zip(terms, weights):
        if box:
            total += term
        else:
            np.multiply(term, weight, out=scratch)
            total += scratch


def _ssim_sums(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[float, float, int]:
    """Sums of the SSIM and contrast-structure maps over windows lying fully on valid pixels, and their count.

    Images are in [0, 1] (data range 1); works on row strips (with an 10-row halo) to bound memory.
    """
    k = gaussian_kernel()
    ones = np.ones(SSIM_WINDOW)
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    halo = SSIM_WINDOW - 1
    total_ssim = total_cs = 0.0
    count = 0
    out_rows = x.shape[0] - halo if x.shape[1] > halo else 0  # no window fits a raster narrower than one
    for r0 in range(0, max(out_rows, 0), STRIP_ROWS):
        _check_cancel()
        _report(r0 / out_rows)
        r1 = min(r0 + STRIP_ROWS, out_rows) + halo
        xs, ys, ms = x[r0:r1], y[r0:r1], mask[r0:r1].astype(np.float64)
        full = _filter_valid(ms, ones) > SSIM_WINDOW * SSIM_WINDOW - 0.5
        if not full.any():
            continue
        mu_x, mu_y = _filter_valid(xs, k), _filter_valid(ys, k)
        sxx = _filter_valid(xs * xs, k) - mu_x * mu_x
        syy = _filter_valid(ys * ys, k) - mu_y * mu_y
        sxy = _filter_valid(xs * ys, k) - mu_x * mu_y
        cs = (2.0 * sxy + c2) / (sxx + syy + c2)
        lum = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
        total_ssim += float(np.sum((lum * cs)[full]))
        total_cs += float(np.sum(cs[full]))
        count += int(np.count_nonzero(full))
    return total_ssim, total_cs, count


def ssim(x: np.ndarray, y: np.ndarray, mask: Optional[np.ndarray] = None) -> Optional[float]:
    """Mean SSIM (gaussian 11x11, sigma 1.5, data range 1) of images in [0, 1]; None if no window fits."""
    x, y, mask = _prepare_pair(x, y, mask)
    total, _, count = _ssim_sums(x, y, mask)
    return total / count if count else None


def ms_ssim(x: np.ndarray, y: np.ndarray, mask: Optional[np.ndarray] = None) -> Optional[float]:
    """5-scale MS-SSIM (2x2 mean downsampling); None if the smallest scale is below one 11x11 window.

    Negative contrast-structure means are clipped to 0 before the weighted product (as pytorch-msssim's relu).
    """
    x, y, mask = _prepare_pair(x, y, mask)
    n_scales = len(MS_SSIM_WEIGHTS)
    if min(x.shape) < SSIM_WINDOW * 2 ** (n_scales - 1):
        return None
    result = 1.0
    costs = np.cumsum([0.0] + [4.0**-j for j in range(n_scales)])  # each scale a quarter of the one before
    for j, weight in enumerate(MS_SSIM_WEIGHTS):
        with _part(costs[j] / costs[-1], costs[j + 1] / costs[-1]):
            total_ssim, total_cs, count = _ssim_sums(x, y, mask)
        if not count:
            return None
        value = (total_ssim if j == n_scales - 1 else total_cs) / count
        result *= max(value, 0.0) ** weight
        if j < n_scales - 1:
            x, y, mask = _down2(x), _down2(y), _down2_mask(mask)
    return result


def _prepare_pair(x, y, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise InputError(f"images must be 2-D with the same shape, got {x.shape} and {y.shape}")
    mask = np.isfinite(x) & np.isfinite(y) if mask is None else mask & np.isfinite(x) & np.isfinite(y)
    return np.where(mask, x, 0.0), np.where(mask, y, 0.0), mask


def _down2(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    a = a[:h, :w]
    return 0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2])


def _down2_mask(m: np.ndarray) -> np.ndarray:
    h, w = m.shape[0] // 2 * 2, m.shape[1] // 2 * 2
    m = m[:h, :w]
    return m[0::2, 0::2] & m[1::2, 0::2] & m[0::2, 1::2] & m[1::2, 1::2]


# --- EPI and ENL ---
def _laplacian(a: np.ndarray) -> np.ndarray:
    return a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:] - 4.0 * a[1:-1, 1:-1]


def _cross_valid(m: np.ndarray) -> np.ndarray:
    return m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:] & m[1:-1, 1:-1]


def epi(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> Optional[float]:
    """Edge preservation index: correlation of the 3x3 Laplacians of original x and reconstruction y.

    None if the original has no Laplacian variance (no edges to preserve) or is smaller than 3x3.
    """
    if min(x.shape) < 3:
        return None
    keep = _cross_valid(mask)
    lx, ly = _laplacian(x)[keep], _laplacian(y)[keep]
    if lx.size < 2:
        return None
    lx, ly = lx - lx.mean(), ly - ly.mean()
    sxx, syy = float(np.sum(lx * lx)), float(np.sum(ly * ly))
    if sxx == 0.0:
        return None
    return float(np.sum(lx * ly)) / math.sqrt(sxx * syy) if syy > 0 else 0.0


def enl_ratio(o_lin: np.ndarray, r_lin: np.ndarray, mask: np.ndarray) -> Optional[float]:
    """ENL(reconstruction) / ENL(original) on the most homogeneous windows of the original.

    Windows: non-overlapping 15x15 blocks fully on valid pixels; the 10% with the lowest coefficient of
    variation in the original (zero-variance blocks skipped) are kept; ENL = mean^2 / var per window, median
    over windows.
    > 1 means the reconstruction is smoother (despeckled). None if no usable window; inf if those windows are
    flat in the reconstruction.
    """
    w = ENL_WINDOW
    h, wd = o_lin.shape[0] // w * w, o_lin.shape[1] // w * w
    if h == 0 or wd == 0:
        return None

    def blocks(a: np.ndarray) -> np.ndarray:
        return a[:h, :wd].reshape(h // w, w, wd // w, w).swapaxes(1, 2).reshape(-1, w * w)

    ob, rb, mb = blocks(o_lin), blocks(r_lin), blocks(mask)
    full = mb.all(axis=1)
    ob, rb = ob[full], rb[full]
    o_mean, o_var = ob.mean(axis=1), ob.var(axis=1)
    usable = (o_mean > 0) & (o_var > 0)
    if not usable.any():
        return None
    ob, rb, o_mean, o_var = ob[usable], rb[usable], o_mean[usable], o_var[usable]
    cv = np.sqrt(o_var) / o_mean
    n_keep = max(1, int(math.ceil(ENL_FRACTION * cv.size)))
    idx = np.argsort(cv, kind="stable")[:n_keep]
    enl_o = float(np.median(o_mean[idx] ** 2 / o_var[idx]))
    r_mean, r_var = rb[idx].mean(axis=1), rb[idx].var(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        enl_r_windows = np.where(r_var > 0, r_mean**2 / r_var, np.inf)
    return float(np.median(enl_r_windows)) / enl_o


# --- multilooked fidelity ---
def check_looks(looks: Any) -> None:
    """InputError unless the multilook window is a whole number >= 1."""
    if isinstance(looks, bool) or not isinstance(looks, (int, np.integer)) or looks < 1:
        raise InputError(f"looks must be a whole number >= 1, got {looks!r}")


def _box_sums(a: np.ndarray, looks: int) -> np.ndarray:
    """Sums over every looks x looks window lying inside `a` (float64 summed-area table)."""
    c = np.pad(np.cumsum(np.cumsum(a, axis=0, dtype=np.float64), axis=1), ((1, 0), (1, 0)))
    return c[looks:, looks:] - c[:-looks, looks:] - c[looks:, :-looks] + c[:-looks, :-looks]


def multilook_psnr(
    o_lin: np.ndarray,
    r_lin: np.ndarray,
    mask: np.ndarray,
    rng: tuple[float, float],
    looks: int = DEFAULT_LOOKS,
    linear: bool = True,
) -> Optional[float]:
    """PSNR of the looks x looks boxcar-averaged images: what an analyst who multilooks first sees.

    o_lin, r_lin: linear intensity, averaged over the valid pixels of each window that lies inside the image and
    whose centre pixel is valid (nodata and non-finite pixels never enter a sum), then to dB (the codec's noise
    floor) and clipped to the dB range `rng`, peak = its width. linear=False (uint8 display products): native
    values averaged and compared as they are. None when no window fits; looks = 1 is plain PSNR.
    """
    check_looks(looks)
    if min(mask.shape) < looks:
        return None
    half = looks // 2
    count = _box_sums(mask.astype(np.float64), looks)
    use = mask[half : half + count.shape[0], half : half + count.shape[1]]
    if not use.any():
        return None
    n = count[use]
    o = _box_sums(np.where(mask, o_lin, 0.0), looks)[use] / n
    r = _box_sums(np.where(mask, r_lin, 0.0), looks)[use] / n
    if linear:
        o, r = 10.0 * np.log10(np.maximum(o, NOISE_FLOOR)), 10.0 * np.log10(np.maximum(r, NOISE_FLOOR))
    return _clipped_psnr(o, r, *rng)


def _clipped_psnr(o: np.ndarray, r: np.ndarray, vmin: float, vmax: float) -> float:
    mse = float(np.mean(((np.clip(r, vmin, vmax) - np.clip(o, vmin, vmax)) / (vmax - vmin)) ** 2))
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


# --- evaluation ---
@dataclass
class _Pair:
    """Original and reconstruction in the metric domains, with the pixels valid in both."""

    o: np.ndarray  # dB (native values for uint8)
    r: np.ndarray
    o_lin: Optional[np.ndarray]  # linear intensity (None for uint8)
    r_lin: Optional[np.ndarray]
    mask: np.ndarray
    o_valid: np.ndarray
    """The original's own valid pixels: the default range's (a reconstruction's invalid pixels moved it), and
    those the reconstruction lost (`lost_pixels`)."""
    coded_zeros: int = 0
    """The original's fill zeros that the reconstruction holds as values (`_coded_zeros`)..."""
    coded_top: float = 0.0
    """...and the largest of those values (as read, in the reconstruction's units)."""


def _check_kind_fits(kind: str, complex_original: bool, dtype: str = "") -> None:
    """Refuse a kind the original's pixels contradict: a real kind on complex pixels measured their real part (PSNR
    4.0 dB, a ComplexWarning), 'complex' on real ones squared them (mean ratio 0.006). Compression's own refusal is
    input_checks.check_kind_fits, which the metrics (the foundation) do not import."""
    if complex_original and kind not in ("auto", "complex"):
        raise InputError(f"kind {kind!r} does not fit the original's complex pixels: choose 'complex' (or auto)")
    if not complex_original and kind == "complex":
        raise InputError(f"kind 'complex' needs a complex original (CInt16, CFloat32...); this one is {dtype}")


def reconstruction_kind(kind: str, recon: np.ndarray) -> str:
    """The codec decompresses complex SLC to real intensity: only a complex array is read as complex."""
    if kind == "complex" and not np.iscomplexobj(recon):
        return "intensity"
    return kind


def _pair(
    orig: np.ndarray,
    recon: np.ndarray,
    kind: str,
    nodata_o,
    nodata_r,
    scalings: tuple[Scaling, Scaling] = (IDENTITY, IDENTITY),
    masked: Optional[np.ndarray] = None,
) -> _Pair:
    """The pair in the metric domains: valid pixels from the raw values, the domains from the values in their own
    units (each raster's GDAL scale and offset, `scalings`, applied: a dB x 100 product is measured in dB)."""
    if np.iscomplexobj(orig):  # arrays' kinds are given (evaluate_files checks a file's before reading it)
        _check_kind_fits(kind, complex_original=True)
    o, o_lin = to_domains(scaled(orig, scalings[0]), kind)
    r, r_lin = to_domains(scaled(recon, scalings[1]), reconstruction_kind(kind, recon))
    o_valid = _valid(orig, nodata_o, kind) & np.isfinite(o)
    r_valid = valid_mask(recon, nodata_r) & np.isfinite(r)
    mask = o_valid & r_valid
    zeros = _coded_zeros(orig, recon, nodata_o, o_valid) & r_valid
    if masked is not None:  # the original's own GDAL mask, read as 0: not a zero of its data
        zeros &= ~masked
    if kind in NATIVE_KINDS:
        mask |= zeros
    count = int(np.count_nonzero(zeros))
    top = float(np.max(np.abs(recon[zeros]))) if count else 0.0
    return _Pair(o, r, o_lin, r_lin, mask, o_valid, count, top)


def _coded_zeros(orig: np.ndarray, recon: np.ndarray, nodata_o, o_valid: np.ndarray) -> np.ndarray:
    """The original's exact zeros that `_valid` takes for fill (`o_valid` False; not a nodata value of 0) and the
    reconstruction holds as other values: the codec coded them as data (preprocessing.scattered_no_signal), or the
    reconstruction is not this codec's (a float dB band's zero-filled footprint, restored as 0). In native values
    they are scored (a uint8 raster's 5 % scattered zeros decoded near 149, 171 DN off at most, and evaluate measured
    52.7 dB where every pixel scored gives 17.7: a sweep); otherwise they are counted and said."""
    if nodata_o == 0:
        return np.zeros(orig.shape, dtype=bool)
    return (orig == 0) & ~o_valid & (recon != 0)


def evaluate_arrays(
    orig: np.ndarray,
    recon: np.ndarray,
    kind: str = "intensity",
    rng: Optional[RangeLike] = None,
    nodata: Optional[float] = None,
    rng_label: str = "given",
    looks: int = DEFAULT_LOOKS,
) -> dict:
    """All metrics for an original and its reconstruction (same shape, same kind); nodata applies to both.

    kind: "intensity" | "amplitude" | "complex" (linear), "db", "native" (values as they are) or "uint8"
    (display product: native values, data range 255); no-signal zeros of the original are excluded (_valid).
    rng: the dB range (default: the original's 0.5-99.5 percentiles of valid dB values);
    rng_label says where a given rng comes from, for the domain texts; looks: the multilooked PSNR's window.
    """
    check_looks(looks)
    orig, recon = np.asarray(orig), np.asarray(recon)
    _check_shapes(orig.shape, recon.shape)
    if orig.ndim != 2:
        raise InputError(f"expected 2-D rasters, got shape {orig.shape}")
    return _evaluate_pair(_pair(orig, recon, kind, nodata, nodata), kind, rng, rng_label, looks)


def _check_shapes(a: tuple, b: tuple) -> None:
    if tuple(a) != tuple(b):
        raise InputError(f"original {tuple(a)} and reconstruction {tuple(b)} differ in shape")


def _evaluate_pair(p: _Pair, kind: str, rng: Optional[RangeLike], rng_label: str, looks: int) -> dict:
    if not p.mask.any():
        raise NoValidPixels("no pixel is valid in both the original and the reconstruction")
    rng_t, source = _resolve_range(rng, kind, lambda: _range_values(p.o, p.o_lin, p.o_valid, kind), "", rng_label)
    sums = _Sums()
    with _part(0.0, 0.12):
        sums.add(p, rng_t)
    with _part(0.12, 0.78):
        spatial = _spatial(p, rng_t)
    result = _assemble(kind, rng_t, source, sums, spatial, crop_note="", pixels=p.mask.size)
    result["outside_range"] = _outside(p, rng_t)
    return _with_multilook(result, p, rng_t, looks, crop_note="")


def _outside(p: _Pair, rng: tuple[float, float]) -> float:
    """The share of the reconstruction's valid pixels outside the range: most of them where it holds another unit
    (a JPEG 2000 decode left in DN against dB gave a mean ratio of inf and a dB RMSE of 24857, with no word)."""
    r = p.r[p.mask]
    return float(np.mean((r < rng[0] - 0.5 * (rng[1] - rng[0])) | (r > rng[1] + 0.5 * (rng[1] - rng[0]))))


OUTSIDE_WARNING = 0.5
"""A reconstruction with more of its valid pixels this far outside the range (half its width beyond either end) is
in another unit, likely: evaluate says so."""


def _unit_warning(result: dict) -> list[str]:
    """What evaluate says of a reconstruction in another unit than the original (`_outside`)."""
    share = result.get("outside_range")
    if share is None or share <= OUTSIDE_WARNING:
        return []
    rng = result["range"]
    return [
        f"{100 * share:.0f} % of the reconstruction's pixels lie far outside the original's range [{rng['vmin']:.4g}, "
        f"{rng['vmax']:.4g}] {rng['unit']}: is it in another unit (dB against linear, DN against scaled values)? "
        "The figures compare unlike values"
    ]


def _with_multilook(result: dict, p: _Pair, rng: tuple[float, float], looks: int, crop_note: str) -> dict:
    """The multilooked PSNR and its domain text added to an assembled result."""
    linear = p.o_lin is not None
    o, r = (p.o_lin, p.r_lin) if linear else (p.o, p.r)
    result["multilook_psnr_db"] = multilook_psnr(o, r, p.mask, rng, looks, linear=linear)
    result["looks"] = int(looks)
    what = "linear intensity, then dB" if linear else "native values"
    result["domain"]["multilook_psnr_db"] = (
        f"{looks}x{looks} boxcar means of {what} over valid pixels (windows inside the image, centre valid), "
        f"both clipped to the PSNR's range; peak = range width{crop_note}"
    )
    return result


def _resolve_range(rng, kind: str, values, note: str, label: str) -> tuple[tuple[float, float], str]:
    """The given range, or the default one (values() gives the original's valid dB values)."""
    if rng is not None:
        return as_range(rng), label
    if kind == "uint8":
        return (0.0, 255.0), "uint8 full scale"
    if kind == "native":
        return _percentile_range(values(), DEFAULT_PERCENTILES, kind), "original 0.5-99.5 pct, native values" + note
    return _percentile_range(values(), DEFAULT_PERCENTILES, kind), "original 0.5-99.5 pct" + note


def _spatial(p: _Pair, rng) -> dict:
    """Neighbourhood metrics (SSIM, MS-SSIM, EPI, ENL ratio) on one contiguous array."""
    vmin, vmax = rng
    x = np.where(p.mask, (np.clip(p.o, vmin, vmax) - vmin) / (vmax - vmin), 0.0)
    y = np.where(p.mask, (np.clip(p.r, vmin, vmax) - vmin) / (vmax - vmin), 0.0)
    result = {}
    with _part(0.0, 0.4):  # shares of the bar: each step's time on a 4096x4096 scene (9.7 s in all, profiled)
        result["ssim"] = ssim(x, y, p.mask)
    with _part(0.4, 0.8):
        result["ms_ssim"] = ms_ssim(x, y, p.mask)
    _check_cancel()
    with _part(0.8, 0.95):
        result["epi"] = epi(x, y, p.mask)
    _check_cancel()
    result["enl_ratio"] = None if p.o_lin is None else enl_ratio(p.o_lin, p.r_lin, p.mask)
    return result


def _assemble(kind, rng, source, sums: _Sums, spatial: dict, crop_note: str, pixels: int) -> dict:
    vmin, vmax = rng
    mse = sums.sse_scaled / sums.n
    linear = kind not in NATIVE_KINDS
    unit = "uint8" if kind == "uint8" else "native"
    na = f"n/a for {unit} values"
    if linear:
        rtxt = f"range [{vmin:.2f}, {vmax:.2f}] dB ({source})"
        scaled = f"dB clipped to {rtxt}, scaled to [0, 1]"
    else:
        rtxt = f"range [{vmin:.6g}, {vmax:.6g}] ({source})"
        scaled = f"{unit} values, {rtxt}, scaled to [0, 1]"
    ssim_txt = f"{scaled}; gaussian 11x11, sigma 1.5, data range 1{crop_note}"
    return {
        "kind": kind,
        "psnr_db": math.inf if mse == 0 else -10.0 * math.log10(mse),
        "ssim": spatial["ssim"],
        "ms_ssim": spatial["ms_ssim"],
        "db_rmse": math.sqrt(sums.sse_native / max(sums.n_native, 1)) if linear else None,
        "mean_ratio": sums.sum_recon_lin / sums.sum_orig_lin if linear and sums.sum_orig_lin > 0 else None,
        "enl_ratio": spatial["enl_ratio"],
        "epi": spatial["epi"],
        "clipped_fraction": sums.n_clipped / sums.n if linear else None,
        "valid_pixels": sums.n,
        "lost_pixels": sums.n_lost,
        "coded_zeros": sums.n_coded_zeros,
        "coded_zeros_top": sums.coded_zeros_top,
        "pixels": int(pixels),
        "range": {"vmin": vmin, "vmax": vmax, "unit": "dB" if linear else unit, "source": source},
        "domain": {
            "psnr_db": f"{'dB' if linear else unit + ' values'}, both clipped to {rtxt}; peak = range width "
            "(inf when identical)",
            "ssim": ssim_txt,
            "ms_ssim": f"{ssim_txt}; 5 scales, Wang et al. weights (None below 176 px)",
            "db_rmse": "dB, unclipped, all valid pixels of positive intensity" if linear else na,
            "mean_ratio": "linear intensity, mean(reconstruction) / mean(original) over valid pixels" if linear else na,
            "enl_ratio": "linear intensity, median ENL (mean^2/var) over the 10% of 15x15 windows with the "
            f"lowest coefficient of variation in the original; > 1 = smoother than the original{crop_note}"
            if linear
            else na,
            "epi": f"{scaled}; correlation of 3x3 Laplacians{crop_note}",
            "clipped_fraction": f"original pixels outside {rtxt}" if linear else na,
        },
    }


def evaluate_files(
    original: Union[str, Path],
    reconstruction: Union[str, Path],
    band: int = 1,
    kind: str = "auto",
    rng: Optional[RangeLike] = None,
    reconstruction_band: Optional[int] = None,
    rng_label: str = "given",
    looks: int = DEFAULT_LOOKS,
    cancel: Cancel = None,
    progress: Progress = None,
) -> dict:
    """Metrics of one band of two rasters (each file's own nodata excluded); `cancel()` asked between strips and
    metrics (CancelledError), `progress(done, total)` told as they go.

    reconstruction_band: the reconstruction's band when it differs from `band`; by default `band`, or 1 when
    the reconstruction has a single band (a decompressed band 3 of a multi-band original is band 1).

    kind "auto": uint8 -> display product (native values); otherwise the codec's detection on the original
    (preprocessing.detect_kind), applied to both files. Rasters above 4096x4096 are accumulated strip by strip
    (range percentiles from a decimated read) and the neighbourhood metrics are measured on a central crop of
    at most 4096x4096; the domain texts say so.
    """
    check_looks(looks)
    with _no_georef_warning(), _cancellable(cancel), _progressing(progress):
        return _evaluate_files(original, reconstruction, band, kind, rng, reconstruction_band, rng_label, looks)


@contextmanager
def _no_georef_warning() -> Iterator[None]:
    """rasterio's NotGeoreferencedWarning silenced: metrics need no georeferencing (the CLI printed it, two lines
    with rasterio's source line, on every evaluation of an AIRSAR crop)."""
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def _evaluate_files(original, reconstruction, band, kind, rng, reconstruction_band, rng_label, looks) -> dict:
    import rasterio

    refuse_sarz(original)
    refuse_sarz(reconstruction)
    with rasterio.open(original) as so, rasterio.open(reconstruction) as sr:
        rband = reconstruction_band or (1 if sr.count == 1 else band)
        for src, name, b in ((so, "original", band), (sr, "reconstruction", rband)):
            if not 1 <= b <= src.count:
                raise InputError(f"band {b} does not exist in the {name} ({src.count} band(s)): {src.name}")
        _check_shapes((so.height, so.width), (sr.height, sr.width))
        _check_kind_fits(kind, so.dtypes[band - 1].startswith("complex"), so.dtypes[band - 1])
        sample = _strided(so, band, MAX_SAMPLE) if kind == "auto" or _nodata(so, band) is None else None
        nodata = original_nodata(so, band, sample, None if kind == "auto" else kind)
        if kind == "auto":
            kind = detect_file_kind(so, band, nodata, sample)
        pair = (so, sr, band, rband, nodata)
        other = other_domain(kind, so.dtypes[band - 1])
        first = 1.0 if other is None else 0.5
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # unlike units: figures say inf or nan
            with _part(0.0, first):
                result = _evaluate_open(pair, kind, rng, rng_label, looks)
            with _part(first, 1.0):
                alt = None if other is None else _evaluate_open(pair, other, None, rng_label, looks)
        if alt is not None:
            result["other_domain"] = {key: alt[key] for key in ("kind", "psnr_db", "ssim", "range")}
        result["warnings"] = grid_warnings(so, sr) + _lost_warning(result) + _zeros_warning(result)
        result["warnings"] += _unit_warning(result)
    result["band"] = band
    return result


def _lost_warning(result: dict) -> list[str]:
    """Pixels valid in the original that the reconstruction has as nodata, NaN or fill: left out of every figure,
    so a reconstruction scored higher by dropping its hard pixels (20 % of them as NaN: PSNR 32.4 dB, as zeros 10.1)."""
    lost = result.get("lost_pixels", 0)
    if not lost:
        return []
    share = 100.0 * lost / (lost + result["valid_pixels"])
    return [f"{lost} pixels ({share:.2f} %) valid in the original are invalid in the reconstruction: left out"]


def _zeros_warning(result: dict) -> list[str]:
    """The original's fill zeros the reconstruction holds as values (`_coded_zeros`), scored or not."""
    zeros = result.get("coded_zeros", 0)
    if not zeros:
        return []
    share = 100.0 * zeros / result["pixels"]
    if result["kind"] in NATIVE_KINDS:
        how = (
            "compression coded them as data within its range, whose bottom is the smallest other value; scored, "
            "clipped to the metrics' range as every pixel is (a range that starts above 0 hides their error)"
        )
    elif result["kind"] == "db":
        how = (
            "they are the original's zero-filled footprint, which compression restores as 0 (a reconstruction from "
            "another codec or an older version?); not scored"
        )
    else:
        how = (
            "compression took them for no-signal pixels scattered in the signal and coded them at the signal around "
            "them; not scored (0 has no dB)"
        )
    top = result.get("coded_zeros_top", 0.0)
    return [f"{zeros} exact zeros of the original ({share:.2f} %) decode as other values, up to {top:.6g}: {how}"]


def grid_warnings(so, sr) -> list[str]:
    """What makes a comparison of two open rasters of one size doubtful: another CRS or another geotransform
    (another scene, or a resampled one, compared pixel by pixel). A decompressed raster keeps both."""
    out = []
    if so.crs != sr.crs:
        out.append(f"the reconstruction's CRS ({_crs_text(sr.crs)}) is not the original's ({_crs_text(so.crs)})")
    if not so.transform.almost_equals(sr.transform):
        out.append("the reconstruction's geotransform is not the original's: is it the same scene, on the same grid?")
    return out


def _crs_text(crs) -> str:
    if crs is None:
        return "none"
    return crs.to_string() if crs.to_epsg() is None else f"EPSG:{crs.to_epsg()}"


def other_domain(kind: str, dtype: object) -> Optional[str]:
    """The second domain an unsigned-integer product is reported in: dB (as amplitude) when measured in its own
    values, its own values when measured in dB; None for other rasters (one domain says it all)."""
    if str(dtype) not in ("uint8", "uint16"):
        return None
    if kind in NATIVE_KINDS:
        return "amplitude"
    return "native" if kind in ("amplitude", "intensity") else None


def _evaluate_open(pair: _OpenPair, kind: str, rng, rng_label: str, looks: int) -> dict:
    """Metrics of two open rasters in one domain (strip by strip above MAX_FULL_PIXELS)."""
    so = pair[0]
    if so.height * so.width <= MAX_FULL_PIXELS:
        with _part(0.0, 0.06):
            p = _file_pair(pair, kind)
        with _part(0.06, 1.0):
            return _evaluate_pair(p, kind, rng, rng_label, looks)
    return _evaluate_large(pair, kind, rng, rng_label, looks)


def evaluate_bands(
    original: Union[str, Path],
    reconstruction: Union[str, Path],
    bands: Optional[list[int]] = None,
    looks: int = DEFAULT_LOOKS,
    cancel: Cancel = None,
    kind: str = "auto",
    progress: Progress = None,
) -> dict:
    """Metrics of several bands (default: every band of the original; the reconstruction's band i is the i-th
    of them, or its band of the same number when it has as many as the original), each with its own kind (`kind`
    for every band, unless "auto") and range, and `overall`: PSNR from the bands' mean squared error each scaled
    to its own range (every band weighs the same), the other figures averaged over the bands."""
    import rasterio

    refuse_sarz(original)
    refuse_sarz(reconstruction)
    with _no_georef_warning(), rasterio.open(original) as so, rasterio.open(reconstruction) as sr:
        count_o, count_r = so.count, sr.count
    bands = list(range(1, count_o + 1)) if bands is None else bands
    rbands = bands if count_r == count_o else list(range(1, len(bands) + 1))
    if len(rbands) > count_r:
        raise InputError(
            f"the reconstruction has {count_r} band(s), {len(bands)} asked for (choose one with --band): "
            f"{reconstruction}"
        )
    per_band, notes = [], []
    for i, (b, r) in enumerate(zip(bands, rbands)):
        share = None if progress is None else _band_share(progress, i, len(bands))
        try:
            per_band.append(
                evaluate_files(
                    original, reconstruction, b, kind, reconstruction_band=r, looks=looks, cancel=cancel, progress=share
                )
            )
        except NoValidPixels as exc:  # an empty band (an HV channel left at zero): said, the others measured
            per_band.append(_unmeasured(b, str(exc)))
            notes.append(f"band {b}: {exc}")
    measured = [band for band in per_band if band["valid_pixels"]]
    if not measured:
        raise NoValidPixels(f"no band has a pixel valid in both rasters ({'; '.join(notes)})")
    notes = _band_warnings(measured) + notes
    if count_r > count_o:
        compared = "band 1" if len(rbands) == 1 else f"bands 1-{len(rbands)}"
        notes.append(f"the reconstruction has {count_r} bands, the original {count_o}: only its {compared} compared")
    return {"bands": per_band, "overall": _overall(measured), "warnings": notes}


def _band_warnings(measured: list[dict]) -> list[str]:
    """The bands' warnings: once where every band has it (the grid's), else each named after its band (the lost
    pixels, the zeros coded as data, another unit: only band 1's were said)."""
    if len(measured) == 1:
        return list(measured[0]["warnings"])
    common = [w for w in measured[0]["warnings"] if all(w in b["warnings"] for b in measured[1:])]
    own = [f"band {b['band']}: {w}" for b in measured for w in b["warnings"] if w not in common]
    return common + own


def _band_share(progress: Callable[[int, int], None], i: int, n: int) -> Callable[[int, int], None]:
    """Band i of n's progress within the whole bar."""
    return lambda done, total: progress(i * total + done, n * total)


def _unmeasured(band: int, reason: str) -> dict:
    """A band's entry where it has nothing to measure: every figure None, the reason as each one's domain."""
    return {
        "band": band,
        "kind": "none",
        **{key: None for key in METRIC_KEYS},
        "valid_pixels": 0,
        "lost_pixels": 0,
        "coded_zeros": 0,
        "coded_zeros_top": 0.0,
        "pixels": None,
        "range": None,
        "looks": None,
        "outside_range": None,
        "domain": {key: reason for key in METRIC_KEYS},
        "warnings": [],
    }


POOLED_KEYS = ("psnr_db", "multilook_psnr_db")
"""Figures in dB of a squared error scaled to each band's range: pooled over the bands' errors, not averaged (a band
at inf, identical, made the multilooked figure inf; 30 and 50 dB averaged to 40 where the errors pool to 33)."""


def _pooled_psnr(values: list[float]) -> float:
    mean_mse = sum(10.0 ** (-v / 10.0) for v in values) / len(values)
    return math.inf if mean_mse == 0 else -10.0 * math.log10(mean_mse)


def _overall(per_band: list[dict]) -> dict:
    """The bands' figures pooled: the PSNRs over the mean of their scaled MSEs, the rest averaged."""
    overall: dict[str, Any] = {}
    for key in METRIC_KEYS:
        values = [b[key] for b in per_band if b.get(key) is not None]
        if not values:
            overall[key] = None
        else:
            overall[key] = _pooled_psnr(values) if key in POOLED_KEYS else sum(values) / len(values)
    overall["domain"] = {
        key: "mean over the bands of the squared error scaled to each band's range"
        if key in POOLED_KEYS
        else "mean over the bands"
        for key in METRIC_KEYS
    }
    return overall


_OpenPair = tuple[Any, Any, int, int, Optional[float]]
"""(original, reconstruction, band, reconstruction band, the original's nodata value: original_nodata)."""


def _file_pair(pair: _OpenPair, kind: str, **window) -> _Pair:
    """Band `band` of the original and `rband` of the reconstruction (open rasterio datasets, whole or a `window`),
    each read as the codec reads it (preprocessing.read_masked), the original with its nodata value or the fill the
    codec finds, the reconstruction with its own."""
    so, sr, band, rband, nodata = pair
    (orig, masked), recon = read_with_mask(so, band, **window), read_masked(sr, rband, **window)
    scalings = _scaling(so, band, kind), _scaling(sr, rband, kind)  # a complex original's intensity: neither
    return _pair(orig, recon, kind, nodata, _nodata(sr, rband), scalings, masked)


def _scaling(src, band: int, kind: Optional[str] = None) -> Scaling:
    """A band's GDAL scale and offset as the codec applies them (preprocessing.band_scaling); none for a display
    (uint8) product measured in its 0-255 values."""
    if kind == "uint8":
        return IDENTITY
    return band_scaling(src.scales[band - 1], src.offsets[band - 1], kind)


def _nodata(src, band: int) -> Optional[float]:
    """A band's own nodata value (a VRT stack's or an ENVI file's bands may differ; `src.nodata` is band 1's)."""
    return src.nodatavals[band - 1]


def original_nodata(src, band: int, sample: Optional[np.ndarray] = None, kind: Optional[str] = None) -> Optional[float]:
    """A band's nodata value or, where it declares none, the fill the codec finds and declares (its rule,
    preprocessing.undeclared_fill, on `sample`: the band's strided sample at full resolution, read when not given;
    the rest's `kind` as given, else detected: with the codec's `--kind native` a fill 10 dB under the data was coded
    as data, and evaluate must score it so): scored as data, a -9999 fill stretched the range, and a multi-band
    GeoTIFF's reconstruction cannot declare it for its other bands."""
    own = _nodata(src, band)
    if own is not None:
        return own
    sample = _strided(src, band, MAX_SAMPLE) if sample is None else sample

    def kind_of(rest: np.ndarray) -> tuple[str, Scaling]:
        chosen = kind or _detected_kind(src, band, rest)
        return chosen, _scaling(src, band, chosen)

    return undeclared_fill(sample, kind_of)


def _strided(src, band: int, max_values: int) -> np.ndarray:
    """Every k-th row and column of a band (about `max_values` at most), read at full resolution strip by strip as
    the codec samples it (a decimated read is served from a file's overviews, whose averaged pixels have another
    histogram: a uint16 amplitude product with overviews was judged display-scaled, the codec coded it as
    amplitude, and evaluate measured native values)."""

    def read(r0: int, r1: int) -> np.ndarray:
        return read_masked(src, band, window=((r0, r1), (0, src.width)))

    return np.concatenate([grid for *_, grid in strided_strips(read, src.height, src.width, STRIP_ROWS, max_values)])


def detect_file_kind(src, band: int = 1, nodata: Optional[float] = None, sample: Optional[np.ndarray] = None) -> str:
    """Kind of an open rasterio dataset's band: the codec's detection (on the values in their own units, with the
    band's unit, description and tags, sampled over the whole raster as the codec samples it: a central window
    missed a fill at the edges), and "uint8" where it takes an unscaled uint8 band for a display product (measured
    in its 0-255 values). `nodata`: the band's own where None; `sample`: its strided sample, read when not given."""
    sample = _strided(src, band, MAX_SAMPLE) if sample is None else sample
    kind = _detected_kind(src, band, sample[valid_mask(sample, _nodata(src, band) if nodata is None else nodata)])
    dtype = src.dtypes[band - 1]
    return "uint8" if dtype == "uint8" and kind == "native" and _scaling(src, band) == IDENTITY else kind


def _detected_kind(src, band: int, values: np.ndarray) -> str:
    """preprocessing.detect_kind on a band's valid `values` (raw), with its unit, description and tags."""
    dtype = src.dtypes[band - 1]  # a name: GDAL's complex_int16 (CInt16) has no numpy dtype
    scaling = _scaling(src, band)
    tags = {**src.tags(), **src.tags(band)}
    unit = src.units[band - 1]
    return detect_kind(dtype, scaled(values, scaling), src.descriptions[band - 1], tags, unit, scaling != IDENTITY)


def _evaluate_large(pair: _OpenPair, kind: str, rng, rng_label: str, looks: int) -> dict:
    from rasterio.windows import Window

    so, _, band, _, nodata = pair
    height, width = so.height, so.width
    step = sample_stride(height, width, SUBSAMPLE_PIXELS)

    def sample_values() -> np.ndarray:
        sample = _strided(so, band, SUBSAMPLE_PIXELS)
        db, lin = to_domains(scaled(sample, _scaling(so, band, kind)), kind)
        return _range_values(db, lin, _valid(sample, nodata, kind) & np.isfinite(db), kind)

    note = ", from every row and column" if step == 1 else f", from one row and column in {step}"
    rng_t, source = _resolve_range(rng, kind, sample_values, note, rng_label)
    sums = _Sums()
    with _part(0.0, 0.45):
        for r0 in range(0, height, STRIP_ROWS):
            _check_cancel()
            _report(r0 / height)
            win = Window(0, r0, width, min(STRIP_ROWS, height - r0))
            sums.add(_file_pair(pair, kind, window=win), rng_t)
    if sums.n == 0:
        raise NoValidPixels("no pixel is valid in both the original and the reconstruction")
    ch, cw = min(height, MAX_CROP), min(width, MAX_CROP)
    row0, col0 = (height - ch) // 2, (width - cw) // 2
    win = Window(col0, row0, cw, ch)
    with _part(0.45, 0.5):
        crop = _file_pair(pair, kind, window=win)
    note = f" (central {ch}x{cw} crop at row {row0}, col {col0} of {height}x{width})"
    with _part(0.5, 0.85):
        spatial = _spatial(crop, rng_t)
    result = _assemble(kind, rng_t, source, sums, spatial, crop_note=note, pixels=height * width)
    result["outside_range"] = _outside(crop, rng_t) if crop.mask.any() else 0.0
    return _with_multilook(result, crop, rng_t, looks, crop_note=note)


# --- picture ---
def render_side_by_side(
    orig_db: np.ndarray, recon_db: np.ndarray, path: Union[str, Path], rng: RangeLike, title: str = ""
) -> Path:
    """PNG of original | reconstruction | |error| (dB, grey over rng; error on 0..range/4) for reports.

    Drawn on its own Agg canvas, without pyplot: no global backend switch inside QGIS, nothing to close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    vmin, vmax = as_range(rng)
    err = np.abs(np.asarray(recon_db, dtype=np.float64) - np.asarray(orig_db, dtype=np.float64))
    fig = Figure(figsize=(13, 4.6), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    panels = (
        ("original (dB)", orig_db, "gray", vmin, vmax),
        ("reconstruction (dB)", recon_db, "gray", vmin, vmax),
        ("|error| (dB)", err, "magma", 0.0, (vmax - vmin) / 4.0),
    )
    for ax, (name, img, cmap, lo, hi) in zip(axes, panels):
        im = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
