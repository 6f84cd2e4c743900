"""Shared fixtures: real SAR crops when ../shared is there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["GDAL_PAM_ENABLED"] = (
    "NO"  # no .aux.xml sidecars: QGIS's statistics would write them beside ../shared's crops
)

REPO = Path(__file__).resolve().parents[1]
SHARED_SAR = REPO.parent / "shared" / "sar-data"
SHARED_TRAIN = REPO.parent / "shared" / "train-data" / "ucmerced_gray_256.npz"


def pytest_sessionstart(session) -> None:
    """Refuse to test another tree: the checkout's root is a package (QGIS imports the plugin by its folder), so
    pytest puts the folder above it first on sys.path, where a `sar_compressor` folder or link would be imported
    instead of this checkout (a fresh clone beside an old copy tested the old copy, and failed its batch tests)."""
    import sar_compressor

    where = Path(sar_compressor.__file__).resolve().parent
    if where != REPO:
        raise pytest.UsageError(f"sar_compressor is imported from {where}, not from this checkout ({REPO})")


@pytest.fixture(scope="module")
def scene(request, tmp_path_factory) -> Path:
    """A scene simulated by the CLI, of the module's SCENE = (rows, columns, seed) (modules with their own `scene`
    fixture use theirs)."""
    from sar_compressor.engine.cli import main

    rows, cols, seed = request.module.SCENE
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]) / "scene.tif"
    assert main(["-q", "simulate", str(path), "--size", str(rows), str(cols), "--seed", str(seed)]) == 0
    return path


@pytest.fixture(scope="module")
def sarz(scene: Path) -> Path:
    """The module's `scene` compressed by the CLI with the defaults."""
    from sar_compressor.engine.cli import main

    out = scene.with_name("scene.sarz")
    assert main(["-q", "compress", str(scene), str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def shared_sar_dir() -> Path:
    """The real SAR crops, or a clean skip on a clone without ../shared."""
    if not SHARED_SAR.is_dir() or not any(SHARED_SAR.glob("*.tif")):
        pytest.skip("../shared/sar-data is absent")
    return SHARED_SAR


@pytest.fixture
def structured_scene(tmp_path):
    """make(height, width): a GeoTIFF of the simulator's clean reflectivity (structure, no speckle: a multilooked
    product's limit), where tiles keep their loop filter at middle qualities."""
    import rasterio

    from sar_compressor.engine.simulate import simulate_scene

    def make(height: int, width: int) -> Path:
        _, reflectivity = simulate_scene(height, width, looks=16, seed=5)
        path = tmp_path / f"structured_{height}x{width}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype="float32") as ds:
            ds.write(reflectivity.astype("float32")[None])
        return path

    return make


def oversampled_db(height: int, width: int, seed: int = 0, factor: int = 2):
    """A 4-look dB scene sampled `factor` times finer than its resolution (ideal interpolation of one at 1/factor
    of the size), as a product resampled onto a finer grid is: little signal in its finest subbands, the rest
    linear in the level above (where inter-scale prediction pays)."""
    import numpy as np

    from sar_compressor.engine.simulate import simulate_reflectivity, simulate_speckle

    h, w = height // factor, width // factor
    small = 10 * np.log10(simulate_speckle(simulate_reflectivity(h, w, seed), 4, seed + 1))
    spectrum = np.zeros((height, width), dtype=complex)
    top, left = (height - h) // 2, (width - w) // 2
    spectrum[top : top + h, left : left + w] = np.fft.fftshift(np.fft.fft2(small))
    return (factor * factor * np.real(np.fft.ifft2(np.fft.ifftshift(spectrum)))).astype(np.float32)


@pytest.fixture
def oversampled():
    """`oversampled_db`."""
    return oversampled_db


@pytest.fixture
def oversampled_scene(tmp_path):
    """make(height, width): a GeoTIFF of `oversampled_db` in linear intensity."""
    import rasterio

    def make(height: int, width: int) -> Path:
        path = tmp_path / f"oversampled_{height}x{width}.tif"
        intensity = 10.0 ** (oversampled_db(height, width) / 10.0)
        with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype="float32") as ds:
            ds.write(intensity.astype("float32")[None])
        return path

    return make


@pytest.fixture
def round_trip_peaks():
    """peaks(src, folder): the peak numpy allocation (tracemalloc, every thread) compressing `src` into
    folder/m.sarz, then decompressing it."""
    import tracemalloc

    from sar_compressor.engine import api

    def peaks(src: Path, folder: Path) -> tuple[int, int]:
        found = []
        for run in (
            lambda: api.compress_file(src, folder / "m.sarz"),
            lambda: api.decompress_file(folder / "m.sarz", folder / "m.tif"),
        ):
            tracemalloc.start()
            try:
                run()
                found.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
        return found[0], found[1]

    return peaks
