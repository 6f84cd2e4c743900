"""Training and validation patches: normalised [0, 1] dB images, prepared like the codec prepares a raster.

Sources (everything but the simulator is optional):
- the SAR scene simulator (unlimited, seeded), looks 1..5, correlated or independent speckle;
- optical reflectivity (an .npz with `images` (N, H, W) uint8 [+ `classes`], or a folder of png/tif/jpg),
  mapped to a plausible backscatter range with a random gain and contrast, times synthetic speckle;
- real SAR GeoTIFF crops (validation only).

Every patch is cropped from its source (random window), speckled, converted to dB and normalised with its own
robust range (percentiles 0.5 / 99.9), the same per-raster normalisation the codec applies at inference, then
augmented (flips, 90-degree rotations). Speckle (correlated through the sensor PSF, or independent) comes from
engine.simulate. Sample i of a dataset is a pure function of (seed, i), so a resumed run sees the same stream.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from ..engine.codec.passes.survey import RANGE_PERCENTILES
from ..engine.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
RASTER_SUFFIXES = (".tif", ".tiff")


# ---------------------------------------------------------------- normalisation and augmentation


def normalize_db(db: np.ndarray) -> np.ndarray:
    """dB image -> [0, 1] float32 with its own robust range, as the codec does per raster."""
    from ..engine.preprocessing import normalize, robust_range

    valid = db[np.isfinite(db)]
    rng = robust_range(valid, *RANGE_PERCENTILES)
    return normalize(db, rng).astype(np.float32)


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A size x size window at a random position (the image must be at least that large)."""
    h, w = img.shape
    if h < size or w < size:
        raise InputError(f"image of {h}x{w} pixels is smaller than the {size}x{size} training patch")
    r = int(rng.integers(0, h - size + 1))
    c = int(rng.integers(0, w - size + 1))
    return img[r : r + size, c : c + size]


def augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flip and 90-degree rotation: the 8 symmetries of the square (SAR has no 'up')."""
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(np.rot90(img, int(rng.integers(0, 4))))


# ---------------------------------------------------------------- sources


class PatchSource(Protocol):
    """Draws one patch in dB, or normalised to [0, 1] (H, W) float32, from a seeded generator."""

    def draw_db(self, rng: np.random.Generator) -> np.ndarray: ...

    def sample(self, rng: np.random.Generator) -> np.ndarray: ...


@dataclass
class SpeckleConfig:
    """Which speckle to draw: looks uniformly in [min_looks, max_looks], correlated with some probability."""

    min_looks: int = 1
    max_looks: int = 5
    correlated_fraction: float = 0.5

    def draw(self, rng: np.random.Generator) -> tuple[int, bool]:
        looks = int(rng.integers(self.min_looks, self.max_looks + 1))
        return looks, bool(rng.random() < self.correlated_fraction)


class SimulatorSource:
    """Procedural SAR scenes (engine.simulate): random window, feature scale, look count and speckle type."""

    def __init__(self, patch: int, speckle_cfg: SpeckleConfig | None = None):
        self.patch = patch
        self.speckle_cfg = speckle_cfg or SpeckleConfig()

    def draw_db(self, rng: np.random.Generator) -> np.ndarray:
        """One speckled patch in dB (before normalisation)."""
        from ..engine.preprocessing import to_db
        from ..engine.simulate import training_patch

        looks, correlated = self.speckle_cfg.draw(rng)
        speckled, _ = training_patch(self.patch, int(rng.integers(0, 2**31 - 1)), looks, correlated)
        return to_db(speckled, "intensity")

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return augment(normalize_db(self.draw_db(rng)), rng)


@dataclass
class ReflectivityMapping:
    """Grey level -> backscatter: dB = floor + span * grey / 255 + gain, each drawn per image."""

    floor_db: tuple[float, float] = (-28.0, -20.0)
    span_db: tuple[float, float] = (20.0, 35.0)
    gain_db: tuple[float, float] = (-5.0, 5.0)

    def to_intensity(self, grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        floor = rng.uniform(*self.floor_db) + rng.uniform(*self.gain_db)
        span = rng.uniform(*self.span_db)
        db = floor + span * (grey.astype(np.float32) / 255.0)
        return np.power(10.0, db / 10.0).astype(np.float32)


class OpticalSource:
    """Optical images as reflectivity (random gain and contrast) times synthetic speckle."""

    def __init__(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        patch: int,
        speckle_cfg: SpeckleConfig | None = None,
        mapping: ReflectivityMapping | None = None,
    ):
        if len(images) == 0:
            raise InputError("the optical training set holds no images")
        self.images = images
        self.patch = patch
        self.speckle_cfg = speckle_cfg or SpeckleConfig()
        self.mapping = mapping or ReflectivityMapping()

    def draw_db(self, rng: np.random.Generator) -> np.ndarray:
        """A random crop of a random image as speckled backscatter in dB (before normalisation)."""
        from ..engine.preprocessing import to_db
        from ..engine.simulate import simulate_speckle

        grey = random_crop(np.asarray(self.images[int(rng.integers(0, len(self.images)))]), self.patch, rng)
        looks, correlated = self.speckle_cfg.draw(rng)
        reflectivity = self.mapping.to_intensity(grey, rng)
        speckled = simulate_speckle(reflectivity, looks, int(rng.integers(0, 2**31 - 1)), correlated)
        return to_db(speckled, "intensity")

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return augment(normalize_db(self.draw_db(rng)), rng)


class MixedPatches(Dataset):
    """Endless map-style dataset: item i draws a source by weight, then a patch, all from (seed, i)."""

    def __init__(self, sources: Sequence[PatchSource], weights: Sequence[float], seed: int, length: int = 2**62):
        if len(sources) != len(weights) or not sources:
            raise InputError("MixedPatches needs one weight per source and at least one source")
        w = np.asarray(weights, dtype=np.float64)
        self.sources = list(sources)
        self.p = w / w.sum()
        self.seed = int(seed)
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, int(i)])
        src = self.sources[int(rng.choice(len(self.sources), p=self.p))]
        return torch.from_numpy(src.sample(rng)[None].copy())


# ---------------------------------------------------------------- optical images on disk


def _to_grey_uint8(img: np.ndarray) -> np.ndarray:
    """Any image array (grey, RGB(A), band-first, float or int) -> (H, W) uint8 luminance."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[-1] not in (3, 4):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3:
        a = (
            a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            if a.shape[-1] >= 3
            else a[..., 0]
        )
    a = a.astype(np.float32)
    if a.max() <= 1.0 and a.dtype.kind == "f":
        a = a * 255.0
    elif a.max() > 255.0:
        a = a * (255.0 / a.max())
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _read_image(path: Path) -> np.ndarray:
    if path.suffix.lower() in RASTER_SUFFIXES:
        import rasterio

        with rasterio.open(path) as ds:
            return ds.read()
    import matplotlib.image as mpimg

    return mpimg.imread(path)


def load_images(path: str | Path) -> tuple[list[np.ndarray] | np.ndarray, np.ndarray]:
    """Grey uint8 images and their class labels from an .npz (`images`, optional `classes`) or a folder.

    In a folder, an image's class is the name of its parent folder (so class-per-subfolder data sets split
    per class for validation).
    """
    p = Path(path)
    if p.is_file() and p.suffix == ".npz":
        with np.load(p) as d:
            if "images" not in d.files:
                raise InputError(f"{p} has no 'images' array (found {', '.join(d.files)})")
            images = d["images"]
            classes = d["classes"] if "classes" in d.files else np.zeros(len(images), dtype="<U1")
        if images.ndim != 3:
            raise InputError(f"{p}: 'images' must be (N, H, W) grey images, got shape {images.shape}")
        return images, np.asarray(classes)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"no png/jpg/tif images found under {p}")
        images = [_to_grey_uint8(_read_image(f)) for f in files]
        return images, np.array([f.parent.name for f in files])
    raise InputError(f"optical training data not found: {p} (give an .npz or a folder of images)")


def split_per_class(classes: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): `per_class` images of every class held out for validation."""
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        take = min(per_class, max(len(idx) - 1, 0))
        val.extend(rng.choice(idx, size=take, replace=False).tolist())
    val_idx = np.array(sorted(val), dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(classes)), val_idx)
    return train_idx, val_idx


def subset(images: np.ndarray | Sequence[np.ndarray], idx: np.ndarray) -> np.ndarray | list[np.ndarray]:
    """Images at `idx` (array indexing for an npz stack, a list otherwise)."""
    if isinstance(images, np.ndarray):
        return images[idx]
    return [images[i] for i in idx]


# ---------------------------------------------------------------- real SAR crops (validation)


def _band_to_unit(band: np.ndarray, dtype, description: str | None) -> np.ndarray:
    from ..engine.preprocessing import detect_kind, to_db

    kind = detect_kind(dtype, band, description or "")
    return normalize_db(to_db(band, kind))


def load_sar_crops(folder: str | Path, patch: int, per_band: int = 2) -> list[tuple[str, np.ndarray]]:
    """(name, [0, 1] crop) pairs from every band of every GeoTIFF in `folder`, normalised per raster band.

    Crops are deterministic: up to `per_band` windows spread along the diagonal of each band; bands smaller
    than the patch are skipped.
    """
    import rasterio

    crops: list[tuple[str, np.ndarray]] = []
    for f in sorted(Path(folder).glob("*.tif")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            ds = rasterio.open(f)
        with ds:
            for b in range(1, ds.count + 1):
                band = ds.read(b)
                if min(band.shape) < patch:
                    continue
                unit = _band_to_unit(band, band.dtype, ds.descriptions[b - 1])
                for k, (r, c) in enumerate(_diagonal_windows(band.shape, patch, per_band)):
                    crops.append((f"{f.stem}_b{b}_{k}", unit[r : r + patch, c : c + patch].copy()))
    return crops


def _diagonal_windows(shape: tuple[int, int], patch: int, n: int) -> list[tuple[int, int]]:
    h, w = shape
    if n <= 1 or (h == patch and w == patch):
        return [((h - patch) // 2, (w - patch) // 2)]
    fr = np.linspace(0.0, 1.0, n)
    return sorted({(int(round(t * (h - patch))), int(round(t * (w - patch)))) for t in fr})


# ---------------------------------------------------------------- fixed validation sets


def fixed_batch(source: PatchSource, n: int, seed: int) -> torch.Tensor:
    """n patches from a source with fixed seeds: the same validation set on every run and resume."""
    arrays = [source.sample(np.random.default_rng([seed, i])) for i in range(n)]
    return torch.from_numpy(np.stack(arrays)[:, None])


def typical_range(sources: Sequence[PatchSource], n: int, seed: int) -> tuple[float, float]:
    """Median per-image robust range (dB) over n images of each source: a fixed range for a model that sees
    many images (the codec itself uses each raster's own range)."""
    from ..engine.preprocessing import robust_range

    ranges = [
        robust_range(src.draw_db(np.random.default_rng([seed, k, i])), *RANGE_PERCENTILES)
        for k, src in enumerate(sources)
        for i in range(n)
    ]
    return float(np.median([r.vmin for r in ranges])), float(np.median([r.vmax for r in ranges]))
