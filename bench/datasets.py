"""What the benchmark measures: the real SAR crops in ../shared/sar-data (if present) and simulated scenes."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..engine.metrics import detect_file_kind, metric_range, to_domains, valid_mask

SHARED_SAR = Path(__file__).resolve().parents[2] / "shared" / "sar-data"
BAND = 1  # band 1 of multi-band files
RANGE_LABEL = "original 0.5-99.5 pct, the same for every codec"


@dataclass
class Dataset:
    """One raster band to benchmark, with its metric range (the original's 0.5-99.5 pct dB) and dB values."""

    name: str
    path: Path
    source: str  # "shared" or "simulated"
    kind: str
    height: int
    width: int
    count: int
    rng: tuple[float, float]
    db: np.ndarray = field(repr=False)  # dB of band 1, NaN where invalid

    @property
    def pixels(self) -> int:
        return self.height * self.width

    def describe(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "source": self.source,
            "kind": self.kind,
            "band": BAND,
            "bands_in_file": self.count,
            "height": self.height,
            "width": self.width,
            "range_db": list(self.rng),
        }


def load(path: Path, source: str, name: Optional[str] = None) -> Dataset:
    """Read band 1 of a raster and fix its kind and metric range once, for every codec alike."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        src = rasterio.open(path)
    with src:
        kind = detect_file_kind(src, BAND)
        raw = src.read(BAND)
        nodata = src.nodata
        count = src.count
    db, _ = to_domains(raw, kind)
    db = np.where(valid_mask(raw, nodata), db, np.nan)
    rng = metric_range(raw, kind, nodata)
    return Dataset(name or path.stem, Path(path), source, kind, raw.shape[0], raw.shape[1], count, rng, db)


def shared_datasets(folder: Optional[Path] = None) -> tuple[list[Dataset], Optional[str]]:
    """The real crops (sorted by name), or [] and the reason they were skipped."""
    folder = Path(folder) if folder is not None else SHARED_SAR
    files = sorted(folder.glob("*.tif")) if folder.is_dir() else []
    if not files:
        return [], f"real SAR data skipped: no *.tif in {folder}"
    return [load(p, "shared") for p in files], None


def simulated_datasets(workdir: Path, size: int, looks: tuple[int, ...] = (1, 4)) -> list[Dataset]:
    """Simulated intensity scenes (float32, georeferenced) of size x size at each number of looks."""
    from ..engine.simulate import write_scene

    out = []
    for i, n_looks in enumerate(looks):
        name = f"simulated_{size}_L{n_looks}"
        path = write_scene(Path(workdir) / f"{name}.tif", size, size, looks=n_looks, seed=100 + i)
        out.append(load(path, "simulated", name))
    return out
