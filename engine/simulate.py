"""Procedural SAR scenes: reflectivity maps with what real scenes have, plus spatially correlated speckle.

Every value is a pure function of (seed, global row, global column): lattice noise and feature placements come
from an integer hash, not from a sequential random stream. So any window of a scene can be generated on its own and
equals the same window of the whole scene: `write_scene` streams huge rasters strip by strip, and
`training_patch` cuts random windows from a large virtual scene without generating the rest. numpy only.

Reflectivity (linear sigma0, about 1e-3..10, bright targets up to ~1e3): agricultural parcels (rotated
Chebyshev-Voronoi fields with per-field level, crop-row texture and hedges), textured forest, urban blocks
with double-bounce walls and point targets, calm and wind-roughened water behind a smooth coastline and lakes,
ships, an incidence-angle gradient across range and mountains with bright fore-slopes, layover and shadow.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from .errors import CancelledError, InputError

DN_SCALE = 1000.0
"""uint16 scenes store amplitude digital numbers: DN = round(sqrt(intensity) * DN_SCALE), clipped to 1..65535
(0 is left free for nodata), like Sentinel-1 GRD amplitude DN."""
NESZ = 10 ** (-2.7)
"""Noise-equivalent sigma0 (-27 dB) added to the reflectivity: calm water sits near the noise floor."""
SPECKLE_RADIUS = 3
OVERSAMPLING = 1.3
"""PSF sampling: a Hamming-tapered sinc sampled 1.3x finer than its main lobe, as SAR products are
oversampled; gives a neighbour intensity correlation of about 0.13, as measured on the single-look AIRSAR
crop (0.13-0.15 there, texture included)."""
PIXEL_SIZE = 10.0
UTM_EPSG = 32631
_ORIGIN = (399960.0, 5000040.0)

_U64 = np.uint64
_MASK64 = (1 << 64) - 1


# ---------------------------------------------------------------------------------------------------- hashing
def _key(seed: int, tag: str) -> int:
    """A 64-bit stream key per (seed, feature): independent features never share random numbers."""
    return _mix_int((int(seed) * 0x9E3779B97F4A7C15 + zlib.crc32(tag.encode())) & _MASK64)


def _mix_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def _as_u64(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=np.int64).astype(np.uint64)


def _hash(key: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """uint64 hash of integer coordinates (broadcast), deterministic on every platform."""
    with np.errstate(over="ignore"):
        h = _mix(_U64(key) ^ (_as_u64(i) * _U64(0xD6E8FEB86659FD93)))
        return _mix(h + _as_u64(j) * _U64(0xA0761D6478BD642F))


def _uniform(key: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) float64 per integer coordinate pair."""
    return (_hash(key, i, j) >> _U64(11)).astype(np.float64) * (1.0 / (1 << 53))


# ------------------------------------------------------------------------------------------------ value noise
def _axis_weights(coords: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    g = coords / spacing
    cell = np.floor(g).astype(np.int64)
    t = g - cell
    return cell, t * t * (3.0 - 2.0 * t), int(cell.min()), int(cell.max()) + 2


def _value_noise(key: int, ys: np.ndarray, xs: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """Smooth lattice noise in [-1, 1] on the grid ys x xs (separable interpolation: cheap on big windows)."""
    cy, wy, y0, y1 = _axis_weights(ys, spacing[0])
    cx, wx, x0, x1 = _axis_weights(xs, spacing[1])
    lattice = _uniform(key, np.arange(y0, y1)[:, None], np.arange(x0, x1)[None, :]).astype(np.float32)
    lattice = lattice * np.float32(2.0) - np.float32(1.0)
    wy, wx = wy.astype(np.float32), wx.astype(np.float32)
    iy = cy - y0
    rows = lattice[iy] * (1.0 - wy)[:, None] + lattice[iy + 1] * wy[:, None]
    ix = cx - x0
    return rows[:, ix] * (1.0 - wx) + rows[:, ix + 1] * wx


def _fbm(key: int, ys: np.ndarray, xs: np.ndarray, spacing: float, octaves: int, aspect: float = 1.0):
    """Fractal sum of value noise, normalised by the total amplitude (std about 0.3)."""
    total = np.zeros((ys.size, xs.size), dtype=np.float32)
    amp_sum = 0.0
    for o in range(octaves):
        s = spacing / 2**o
        amp = 0.5**o
        total += amp * _value_noise((key + o) & _MASK64, ys, xs, (s * aspect, s))
        amp_sum += amp
    return total / np.float32(amp_sum)


# --------------------------------------------------------------------------------------------- scene layers
class _Window:
    """Global pixel coordinates of a window, in feature units (divided by `scale`)."""

    def __init__(self, r0: int, r1: int, c0: int, c1: int, height: int, width: int, scale: float):
        self.rows = np.arange(r0, r1, dtype=np.float64)
        self.cols = np.arange(c0, c1, dtype=np.float64)
        self.y = self.rows / scale
        self.x = self.cols / scale
        self.height, self.width, self.scale = height, width, scale
        self.shape = (r1 - r0, c1 - c0)


def _rotated(w: _Window, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(angle), math.sin(angle)
    x, y = w.x.astype(np.float32), w.y.astype(np.float32)
    u = x[None, :] * np.float32(c) + y[:, None] * np.float32(s)
    v = y[:, None] * np.float32(c) - x[None, :] * np.float32(s)
    return u, v


class _Cells:
    """Per-pixel cell ids of a jittered grid, with per-cell random values gathered from a small table
    (hashing only the cells in the window, not every pixel)."""

    def __init__(self, iu: np.ndarray, iv: np.ndarray, margin: int = 0):
        self.u0, self.v0 = int(iu.min()) - margin, int(iv.min()) - margin
        self.nu = int(iu.max()) + margin + 1 - self.u0
        self.nv = int(iv.max()) + margin + 1 - self.v0
        self.flat = (iu - self.u0) * self.nv + (iv - self.v0)

    def table(self, key: int) -> np.ndarray:
        grid_u = np.arange(self.u0, self.u0 + self.nu)[:, None]
        grid_v = np.arange(self.v0, self.v0 + self.nv)[None, :]
        return _uniform(key, grid_u, grid_v).astype(np.float32).ravel()

    def value(self, key: int, flat: Optional[np.ndarray] = None) -> np.ndarray:
        """Uniform [0, 1) of each pixel's cell (or of the cells `flat`)."""
        return self.table(key)[self.flat if flat is None else flat]


def _parcels(seed: int, w: _Window) -> np.ndarray:
    """Agricultural fields in dB: Chebyshev Voronoi cells on a rotated jittered grid (rectangular-ish
    parcels), a level per field, crop-row texture in some, brighter hedges along field borders, mild texture."""
    angle = math.radians(-25 + 50 * _uniform(_key(seed, "parcel-angle"), 0, 0))
    stretch = 0.6 + 0.8 * float(_uniform(_key(seed, "parcel-stretch"), 0, 0))
    size = np.float32(70.0)
    u, v = _rotated(w, angle)
    u *= np.float32(stretch)
    cells = _Cells(np.floor(u / size).astype(np.int64), np.floor(v / size).astype(np.int64), margin=1)
    ju, jv = cells.table(_key(seed, "parcel-u")), cells.table(_key(seed, "parcel-v"))
    base_u = np.floor(u / size) * size + np.float32(0.15) * size
    base_v = np.floor(v / size) * size + np.float32(0.15) * size
    best = np.full(u.shape, np.inf, dtype=np.float32)
    second = best.copy()
    owner = cells.flat.copy()
    for du in (-1, 0, 1):
        for dv in (-1, 0, 1):
            flat = cells.flat + (du * cells.nv + dv)
            du_px = np.abs(u - (base_u + (du + np.float32(0.7) * ju[flat]) * size))
            d = np.maximum(du_px, np.abs(v - (base_v + (dv + np.float32(0.7) * jv[flat]) * size)))
            np.minimum(second, np.maximum(best, d), out=second)
            owner = np.where(d < best, flat, owner)
            np.minimum(best, d, out=best)
    level = -17.0 + 12.0 * cells.value(_key(seed, "parcel-level"), owner)
    row_pick = cells.value(_key(seed, "parcel-rows"), owner)
    period = 4.0 + 5.0 * cells.value(_key(seed, "parcel-period"), owner)
    along = np.where(row_pick < 0.18, u, v)
    rows = np.where(row_pick < 0.36, 0.9 * np.sin(2 * np.pi * along / period), 0.0)
    db = level + rows + 1.0 * _fbm(_key(seed, "parcel-texture"), w.y, w.x, 6.0, 2)
    hedge = (second - best) < 1.0 / w.scale
    return np.where(hedge, -8.0, db).astype(np.float32)


def _forest(seed: int, w: _Window) -> np.ndarray:
    """Forest in dB: high, fairly uniform volume scattering with correlated crown texture."""
    crowns = _fbm(_key(seed, "forest-texture"), w.y, w.x, 5.0, 3)
    stands = _fbm(_key(seed, "forest-stands"), w.y, w.x, 60.0, 2)
    return -7.5 + 4.0 * crowns + 2.5 * stands


def _urban(seed: int, w: _Window) -> np.ndarray:
    """Urban blocks in dB: dark streets, roofs, double-bounce walls (bright lines) and point targets."""
    angle = math.radians(-30 + 60 * _uniform(_key(seed, "urban-angle"), 0, 0))
    block, street = np.float32(34.0), np.float32(4.0)
    u, v = _rotated(w, angle)
    bu, bv = np.floor(u / block), np.floor(v / block)
    lu, lv = u - bu * block, v - bv * block
    cells = _Cells(bu.astype(np.int64), bv.astype(np.int64))
    bw = 12.0 + 16.0 * cells.value(_key(seed, "urban-w"))
    bh = 12.0 + 16.0 * cells.value(_key(seed, "urban-h"))
    inside = (lu >= street) & (lu < street + bw) & (lv >= street) & (lv < street + bh)
    roof = -6.0 + 5.0 * cells.value(_key(seed, "urban-roof"))
    db = np.where(inside, roof, np.float32(-12.0))
    wall = inside & (lu < street + 1.5 / w.scale)
    db = np.where(wall, 6.0 + 10.0 * cells.value(_key(seed, "urban-wall")), db)
    pu = np.floor(street + bw * cells.value(_key(seed, "urban-pu")))
    pv = np.floor(street + bh * cells.value(_key(seed, "urban-pv")))
    has_point = cells.value(_key(seed, "urban-point")) < 0.5
    point = has_point & (np.floor(lu) == pu) & (np.floor(lv) == pv)
    return np.where(point, 20.0 + 10.0 * cells.value(_key(seed, "urban-pdb")), db).astype(np.float32)


def _water(seed: int, w: _Window) -> np.ndarray:
    """Water in dB: calm (near the noise floor) where the wind field is low, roughened with wind streaks."""
    wind = _fbm(_key(seed, "wind"), w.y, w.x, 150.0, 3)
    rough = np.clip((wind + 0.05) * 3.0, 0.0, 1.0)
    streaks = _fbm(_key(seed, "wind-streaks"), w.y, w.x, 12.0, 2, aspect=5.0)
    return -24.0 + 10.0 * rough + 2.0 * rough * streaks


def _water_mask(seed: int, w: _Window) -> np.ndarray:
    """Sea behind a smooth random coastline entering from one side of the scene, plus a few lakes."""
    side = int(_uniform(_key(seed, "coast-side"), 0, 0) * 4)
    where = 0.12 + 0.25 * float(_uniform(_key(seed, "coast-pos"), 0, 0))
    fx = w.cols / max(w.width - 1, 1)
    fy = w.rows / max(w.height - 1, 1)
    along = [fx[None, :], 1.0 - fx[None, :], fy[:, None], 1.0 - fy[:, None]][side]
    wiggle = _fbm(_key(seed, "coast"), w.y, w.x, 300.0, 4)
    sea = (along - where) * 3.0 + wiggle < 0.0
    lakes = _fbm(_key(seed, "lakes"), w.y, w.x, 110.0, 2) > 0.62
    return sea | lakes


def _terrain_gain(seed: int, w: _Window, incidence_deg: float = 35.0) -> np.ndarray:
    """dB change from topography in mountain areas: bright fore-slopes, layover (+13 dB) and dark shadow.

    Sensor looks from the left (near range = column 0); the slope along range tilts the local incidence angle,
    and sigma0 per slant pixel scales with sin(theta0) / sin(theta_local).
    """
    mountains = np.clip((_fbm(_key(seed, "mountains"), w.y, w.x, 380.0, 2) - 0.22) / 0.1, 0.0, 1.0)
    if not mountains.any():
        return np.zeros(w.shape, dtype=np.float32)
    xs = np.append(w.x, w.x[-1] + 1.0 / w.scale)
    height = 70.0 * _fbm(_key(seed, "terrain"), w.y, xs, 90.0, 4)
    slope = np.diff(height, axis=1) * w.scale * mountains
    theta0 = math.radians(incidence_deg)
    local = theta0 - np.arctan(slope)
    gain = 10.0 * np.log10(math.sin(theta0) / np.clip(np.sin(local), 0.05, None))
    gain = np.where(local <= 0.0, 13.0, np.clip(gain, -10.0, 13.0))
    return np.where(local >= math.pi / 2, -18.0, gain).astype(np.float32)


def _ships(seed: int, w: _Window) -> np.ndarray:
    """Ships in dB (NaN where none): a few bright elongated targets with a very bright core.

    One candidate per 120-pixel cell; each ship is drawn only inside its small bounding box."""
    cell = 120.0
    cy = np.floor(w.y / cell).astype(np.int64)
    cx = np.floor(w.x / cell).astype(np.int64)
    cells = _Cells(*np.meshgrid(np.unique(cy), np.unique(cx), indexing="ij"), margin=1)
    tables = {k: cells.table(_key(seed, f"ship-{k}")) for k in ("on", "y", "x", "phi", "len", "db")}
    db = np.full(w.shape, np.nan, dtype=np.float32)
    row0, col0 = int(w.rows[0]), int(w.cols[0])
    for i in np.flatnonzero(tables["on"] < 0.3):
        centre_y = (cells.u0 + i // cells.nv + 0.2 + 0.6 * tables["y"][i]) * cell * w.scale
        centre_x = (cells.v0 + i % cells.nv + 0.2 + 0.6 * tables["x"][i]) * cell * w.scale
        length = 3.0 + 7.0 * tables["len"][i]
        half = int(length / 2) + 2
        r0, r1 = max(int(centre_y) - half - row0, 0), min(int(centre_y) + half + 1 - row0, w.shape[0])
        c0, c1 = max(int(centre_x) - half - col0, 0), min(int(centre_x) + half + 1 - col0, w.shape[1])
        if r0 >= r1 or c0 >= c1:
            continue
        dy = (w.rows[r0:r1] - centre_y)[:, None]
        dx = (w.cols[c0:c1] - centre_x)[None, :]
        phi = np.pi * tables["phi"][i]
        a = dy * np.cos(phi) + dx * np.sin(phi)
        b = dx * np.cos(phi) - dy * np.sin(phi)
        box = db[r0:r1, c0:c1]
        box[(np.abs(a) < length / 2) & (np.abs(b) < 1.0)] = 15.0 + 8.0 * tables["db"][i]
        box[(np.abs(a) < 0.7) & (np.abs(b) < 0.7)] = 30.0
    return db


def _reflectivity_window(
    seed: int, r0: int, r1: int, c0: int, c1: int, height: int, width: int, scale: float = 1.0
) -> np.ndarray:
    """Linear reflectivity of rows [r0, r1) x cols [c0, c1) of a height x width scene (float32)."""
    w = _Window(r0, r1, c0, c1, height, width, scale)
    db = _parcels(seed, w)
    db = np.where(_fbm(_key(seed, "forest"), w.y, w.x, 220.0, 3) > 0.2, _forest(seed, w), db)
    db = db + _terrain_gain(seed, w)
    db = np.where(_fbm(_key(seed, "urban"), w.y, w.x, 260.0, 2) > 0.4, _urban(seed, w), db)
    water = _water_mask(seed, w)
    if water.any():
        db = np.where(water, _water(seed, w), db)
        ships = _ships(seed, w)
        db = np.where(water & np.isfinite(ships), ships, db)
    db = db - 3.0 * (w.cols[None, :] / max(width - 1, 1) - 0.5)
    return (np.power(10.0, db / 10.0) + NESZ).astype(np.float32)


def simulate_reflectivity(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Clean linear reflectivity (sigma0-like) of a height x width scene, float32, deterministic in `seed`."""
    _check_size(height, width)
    return _reflectivity_window(seed, 0, height, 0, width, height, width)


# ------------------------------------------------------------------------------------------------- speckle
def _psf(oversampling: float = OVERSAMPLING, radius: int = SPECKLE_RADIUS) -> np.ndarray:
    """1D taps of a Hamming-tapered sinc with unit energy (so the filtered field keeps unit mean power)."""
    n = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.sinc(n / oversampling) * (0.54 + 0.46 * np.cos(np.pi * n / (radius + 1)))
    return (taps / np.sqrt(np.sum(taps**2))).astype(np.float32)


def _uniform_pair(key: int, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent uniforms in (0, 1) per pixel from one 64-bit hash."""
    h = _hash(key, rows[:, None], cols[None, :])
    scale = 1.0 / 4294967296.0
    u1 = ((h >> _U64(32)).astype(np.float64) + 0.5) * scale
    u2 = ((h & _U64(0xFFFFFFFF)).astype(np.float64) + 0.5) * scale
    return u1, u2


def _complex_gaussian(key: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Circular complex Gaussian with E|z|^2 = 1 (Box-Muller on hashed uniforms)."""
    u1, u2 = _uniform_pair(key, rows, cols)
    radius = np.sqrt(-np.log(u1))
    return (radius * np.exp(2j * np.pi * u2)).astype(np.complex64)


def _filter_separable(z: np.ndarray, taps: np.ndarray) -> np.ndarray:
    k = taps.size
    rows = sum(taps[i] * z[i : z.shape[0] - k + 1 + i] for i in range(k))
    return sum(taps[i] * rows[:, i : rows.shape[1] - k + 1 + i] for i in range(k))


def _speckle_window(seed: int, r0: int, r1: int, c0: int, c1: int, looks: int, correlated: bool = True) -> np.ndarray:
    """Unit-mean speckle of rows [r0, r1) x cols [c0, c1), averaged over `looks` independent looks.

    correlated: |PSF * complex Gaussian|^2 per look (exponential marginal, spatially correlated like real
    data); otherwise independent exponential looks, whose mean is Gamma(L, 1/L). Either way mean 1 and ENL = L.
    """
    looks = _check_looks(looks)
    total = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
    if correlated:
        taps = _psf()
        pad = SPECKLE_RADIUS
        rows, cols = np.arange(r0 - pad, r1 + pad), np.arange(c0 - pad, c1 + pad)
        for look in range(looks):
            z = _filter_separable(_complex_gaussian(_key(seed, f"speckle-{look}"), rows, cols), taps)
            total += z.real**2 + z.imag**2
    else:
        rows, cols = np.arange(r0, r1), np.arange(c0, c1)
        for look in range(looks):
            u1, _ = _uniform_pair(_key(seed, f"speckle-{look}"), rows, cols)
            total += (-np.log(u1)).astype(np.float32)
    return total / np.float32(looks)


def simulate_speckle(reflectivity: np.ndarray, looks: int = 1, seed: int = 0, correlated: bool = True) -> np.ndarray:
    """Speckled intensity = reflectivity x unit-mean speckle with `looks` looks (float32)."""
    refl = np.asarray(reflectivity, dtype=np.float32)
    if refl.ndim != 2:
        raise InputError(f"reflectivity must be a 2D array, got shape {refl.shape}")
    speckle = _speckle_window(seed, 0, refl.shape[0], 0, refl.shape[1], looks, correlated)
    return refl * speckle


# --------------------------------------------------------------------------------------------- scene output
def _check_size(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise InputError(f"scene size must be at least 1x1, got {height}x{width}")


MAX_LOOKS = 1024
"""Looks are drawn one by one (the time grows with them): far beyond any product's equivalent number of looks."""
STRIP_PIXELS = 1 << 20
"""Pixels a strip of a written scene holds at most (about 100 bytes each while it is made, measured: 700 MB for
256 x 25,000): 256 rows of a 1,000,000-pixel-wide scene took 25 GB and got a process OOM-killed."""


def _check_looks(looks: int) -> int:
    if int(looks) != looks or not 1 <= looks <= MAX_LOOKS:
        raise InputError(f"looks must be an integer from 1 to {MAX_LOOKS}, got {looks!r}")
    return int(looks)


def _strip_rows(rows: int, width: int) -> int:
    """Rows per written strip: `rows`, fewer for a wide scene (the pixels do not depend on it: hashed windows)."""
    return max(1, min(rows, STRIP_PIXELS // width))


def _check_output(kind: str, dtype: str) -> None:
    if kind not in ("intensity", "amplitude", "db"):
        raise InputError(f"simulated kind must be intensity, amplitude or db, got {kind!r}")
    if dtype not in ("float32", "uint16"):
        raise InputError(f"simulated dtype must be float32 or uint16, got {dtype!r}")
    if dtype == "uint16" and kind != "amplitude":
        raise InputError(
            "uint16 scenes are amplitude DN products: give kind amplitude with dtype uint16 "
            "(--kind amplitude --dtype uint16)"
        )


def encode_intensity(intensity: np.ndarray, kind: str = "intensity", dtype: str = "float32") -> np.ndarray:
    """Speckled intensity -> the stored product: intensity, amplitude (sqrt) or dB, float32 or uint16 DN."""
    _check_output(kind, dtype)
    intensity = np.asarray(intensity, dtype=np.float32)
    if kind == "db":
        return (10.0 * np.log10(np.maximum(intensity, np.float32(1e-10)))).astype(np.float32)
    if kind == "amplitude":
        amplitude = np.sqrt(intensity)
        if dtype == "uint16":
            return np.clip(np.rint(amplitude * DN_SCALE), 1, 65535).astype(np.uint16)
        return amplitude.astype(np.float32)
    return intensity


def _scene_window(
    seed: int,
    r0: int,
    r1: int,
    height: int,
    width: int,
    looks: int,
    correlated: bool,
) -> tuple[np.ndarray, np.ndarray]:
    refl = _reflectivity_window(seed, r0, r1, 0, width, height, width)
    return refl * _speckle_window(seed, r0, r1, 0, width, looks, correlated), refl


def simulate_scene(
    height: int,
    width: int,
    looks: int = 1,
    seed: int = 0,
    kind: str = "intensity",
    dtype: str = "float32",
    correlated: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(product, reflectivity): a speckled scene stored as `kind`/`dtype`, and its clean linear reflectivity.

    kind "intensity" | "amplitude" | "db"; dtype "float32", or "uint16" for amplitude DN (see DN_SCALE).
    """
    _check_size(height, width)
    _check_output(kind, dtype)
    intensity, refl = _scene_window(seed, 0, height, height, width, looks, correlated)
    return encode_intensity(intensity, kind, dtype), refl


def training_patch(
    size: int = 256, seed: int = 0, looks: int = 1, correlated: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(speckled, clean) float32 linear intensity patches of size x size for training.

    Each seed picks a random window of a large virtual 8192x8192 scene and a random feature scale (0.5x-2x),
    so patches show varied mixes of parcels, forest, town, water and relief; only the window is computed.
    """
    _check_size(size, size)
    rng = np.random.default_rng(seed)
    virtual = 8192
    scale = float(np.exp(rng.uniform(math.log(0.5), math.log(2.0))))
    r0, c0 = (int(v) for v in rng.integers(0, virtual - size, size=2))
    scene_seed = int(rng.integers(0, 2**31 - 1))
    clean = _reflectivity_window(scene_seed, r0, r0 + size, c0, c0 + size, virtual, virtual, scale)
    speckle = _speckle_window(scene_seed, r0, r0 + size, c0, c0 + size, looks, correlated)
    return clean * speckle, clean


def _describe(kind: str, dtype: str, looks: int) -> str:
    what = {
        "intensity": "sigma0 linear intensity",
        "amplitude": f"amplitude DN (x{DN_SCALE:g})" if dtype == "uint16" else "linear amplitude",
        "db": "sigma0 in dB",
    }[kind]
    return f"simulated SAR {what}, {looks} look{'s' if looks > 1 else ''}"


def _nodata_columns(rows: np.ndarray, height: int, width: int, fraction: float) -> np.ndarray:
    """Per row, the number of leading nodata columns: a slanted swath edge covering about `fraction`."""
    if fraction <= 0:
        return np.zeros(rows.size, dtype=np.int64)
    slant = 0.1 * min(fraction, 1 - fraction) / 0.5
    edge = width * (fraction + slant * (1.0 - 2.0 * rows / max(height - 1, 1)))
    return np.clip(np.rint(edge), 0, width).astype(np.int64)


def write_scene(
    path: Union[str, Path],
    height: int,
    width: int,
    looks: int = 1,
    seed: int = 0,
    kind: str = "intensity",
    dtype: str = "float32",
    georef: bool = True,
    nodata: Optional[float] = None,
    nodata_fraction: float = 0.0,
    correlated: bool = True,
    rows: int = 256,
    cog: bool = False,
    cancel: Optional[Callable[[], bool]] = None,
) -> Path:
    """Write a simulated scene as a tiled GeoTIFF, strip by strip (memory independent of the raster size); `cancel`
    is asked between strips (CancelledError, nothing written).

    georef: UTM 31N (EPSG:32631), 10 m pixels; otherwise no CRS and no geotransform. `nodata_fraction` > 0
    blanks a slanted swath edge on the left with `nodata` (default: 0 for uint16, NaN for float32). The band
    description names the kind and looks, so `preprocessing.detect_kind` recognises the product.
    """
    from .io.output_paths import check_geotiff_name
    from .io.raster_io import RasterInfo, StripWriter

    check_geotiff_name(path)
    _check_size(height, width)
    _check_output(kind, dtype)
    looks = _check_looks(looks)
    if not 0.0 <= nodata_fraction < 1.0:
        raise InputError(f"nodata_fraction must be in [0, 1), got {nodata_fraction}")
    if nodata is None and nodata_fraction > 0:
        nodata = 0.0 if dtype == "uint16" else float("nan")
    crs_wkt = transform = None
    if georef:
        from rasterio.crs import CRS

        crs_wkt = CRS.from_epsg(UTM_EPSG).to_wkt()
        transform = (_ORIGIN[0], PIXEL_SIZE, 0.0, _ORIGIN[1], 0.0, -PIXEL_SIZE)
    info = RasterInfo(
        width=width,
        height=height,
        count=1,
        dtype=dtype,
        crs_wkt=crs_wkt,
        transform=transform,
        nodata=nodata,
        descriptions=[_describe(kind, dtype, looks)],
        tags={
            "SIMULATOR": "sar_compressor.engine.simulate",
            "SEED": str(seed),
            "KIND": kind,
            "LOOKS": str(looks),
            "CORRELATED_SPECKLE": str(bool(correlated)),
            **({"DN_SCALE": f"{DN_SCALE:g}"} if dtype == "uint16" else {}),
        },
    )
    path = Path(path)
    rows = _strip_rows(rows, width)
    with StripWriter(path, info, cog=cog) as writer:
        for r0 in range(0, height, rows):
            if cancel is not None and cancel():
                raise CancelledError("cancelled by the user")
            r1 = min(r0 + rows, height)
            intensity, _ = _scene_window(seed, r0, r1, height, width, looks, correlated)
            product = encode_intensity(intensity, kind, dtype)
            if nodata_fraction > 0:
                blank = _nodata_columns(np.arange(r0, r1), height, width, nodata_fraction)
                product[np.arange(width)[None, :] < blank[:, None]] = nodata
            writer.write(r0, product)
    return path


# ------------------------------------------------------------------------------------- products as they come
PRODUCTS = ("grd", "display")
"""Simulated products: "grd" a Sentinel-1 GRD-like uint16 amplitude DN (DN_SCALE), "display" a uint8 amplitude
stretched to 1..255; both map-projected, zero-filled outside a rotated footprint and without a nodata value."""
SCALINGS = ("sqrt", "log")
DISPLAY_DB = (-30.0, 5.0)
"""Amplitude dB mapped to 1..255 by the log stretch (the square-root stretch maps the same amplitude span)."""
FOOTPRINT_ANGLE = 12.0
"""Degrees between the imaged swath and the map grid (a north-up projection of an inclined orbit's swath)."""


def footprint_rows(
    r0: int, r1: int, height: int, width: int, angle: float = FOOTPRINT_ANGLE, margin: float = 0.1
) -> np.ndarray:
    """Rows r0..r1-1 of a rotated rectangle's footprint (True inside): what a map-projected product covers.
    The rectangle is the raster's own, shrunk by `margin` of each side and turned by `angle` degrees."""
    ys = (np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5 - height / 2.0) / height
    xs = (np.arange(width, dtype=np.float64)[None, :] + 0.5 - width / 2.0) / width
    a = math.radians(angle)
    u, v = xs * math.cos(a) + ys * math.sin(a), -xs * math.sin(a) + ys * math.cos(a)
    half = 0.5 - margin
    return (np.abs(u) <= half) & (np.abs(v) <= half)


def display_scale(amplitude: np.ndarray, scaling: str = "sqrt", dtype: str = "uint8") -> np.ndarray:
    """Linear amplitude -> a display product's values 1..max of `dtype` (0 stays free for the fill): "log"
    stretches DISPLAY_DB linearly, "sqrt" stretches the square root of the same amplitude span."""
    if scaling not in SCALINGS:
        raise InputError(f"display scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}")
    top = float(np.iinfo(dtype).max)
    lo_db, hi_db = DISPLAY_DB
    amp = np.maximum(np.asarray(amplitude, dtype=np.float64), 1e-12)
    if scaling == "log":
        t = (20.0 * np.log10(amp) - lo_db) / (hi_db - lo_db)
    else:
        lo, hi = (math.sqrt(10 ** (d / 20.0)) for d in DISPLAY_DB)
        t = (np.sqrt(amp) - lo) / (hi - lo)
    return np.rint(1.0 + np.clip(t, 0.0, 1.0) * (top - 1.0)).astype(dtype)


def _product_rows(seed: int, r0: int, r1: int, height: int, width: int, looks: int, product: str, scaling: str):
    intensity, _ = _scene_window(seed, r0, r1, height, width, looks, True)
    if product == "grd":
        values = encode_intensity(intensity, "amplitude", "uint16")
    else:
        values = display_scale(np.sqrt(intensity), scaling)
    values[~footprint_rows(r0, r1, height, width)] = 0
    return values


def _check_product(product: str) -> None:
    if product not in PRODUCTS:
        raise InputError(f"simulated product must be one of {', '.join(PRODUCTS)}, got {product!r}")


def simulate_product(
    height: int, width: int, product: str = "grd", scaling: str = "sqrt", looks: int = 4, seed: int = 0
) -> np.ndarray:
    """A product as real ones come (see PRODUCTS): integer values, exact zeros outside a rotated footprint."""
    _check_size(height, width)
    _check_product(product)
    return _product_rows(seed, 0, height, height, width, _check_looks(looks), product, scaling)


def write_product(
    path: Union[str, Path],
    height: int,
    width: int,
    product: str = "grd",
    scaling: str = "sqrt",
    looks: int = 4,
    seed: int = 0,
    nodata: Optional[float] = None,
    rows: int = 256,
) -> Path:
    """`simulate_product` as a tiled GeoTIFF with a rotated UTM geotransform (the footprint's angle), no band
    description (products rarely say what they hold) and `nodata` (default: none set, as many products)."""
    from rasterio.crs import CRS

    from .io.output_paths import check_geotiff_name
    from .io.raster_io import RasterInfo, StripWriter

    check_geotiff_name(path)
    _check_size(height, width)
    _check_product(product)
    a = math.radians(FOOTPRINT_ANGLE)
    transform = (
        _ORIGIN[0],
        PIXEL_SIZE * math.cos(a),
        PIXEL_SIZE * math.sin(a),
        _ORIGIN[1],
        PIXEL_SIZE * math.sin(a),
        -PIXEL_SIZE * math.cos(a),
    )
    info = RasterInfo(
        width=width,
        height=height,
        count=1,
        dtype="uint16" if product == "grd" else "uint8",
        crs_wkt=CRS.from_epsg(UTM_EPSG).to_wkt(),
        transform=transform,
        nodata=nodata,
        descriptions=[None],
        tags={"SIMULATOR": "sar_compressor.engine.simulate", "SEED": str(seed), "PRODUCT": product},
    )
    path, rows = Path(path), _strip_rows(rows, width)
    with StripWriter(path, info) as writer:
        for r0 in range(0, height, rows):
            r1 = min(r0 + rows, height)
            writer.write(r0, _product_rows(seed, r0, r1, height, width, _check_looks(looks), product, scaling))
    return path
