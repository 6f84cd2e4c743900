"""SAR scene simulator: determinism, windows equal to the whole, speckle statistics, products and GeoTIFF output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from sar_compressor.engine import simulate
from sar_compressor.engine.errors import CancelledError, InputError
from sar_compressor.engine.io.raster_io import open_info
from sar_compressor.engine.preprocessing import detect_kind
from sar_compressor.engine.simulate import (
    DN_SCALE,
    _reflectivity_window,
    _speckle_window,
    simulate_reflectivity,
    simulate_scene,
    simulate_speckle,
    training_patch,
    write_scene,
)


def _neighbour_correlation(a: np.ndarray) -> float:
    a = a - a.mean()
    return float((a[:, 1:] * a[:, :-1]).mean() / a.var())


def test_reflectivity_is_deterministic_and_seeded():
    a = simulate_reflectivity(200, 300, seed=4)
    assert a.shape == (200, 300) and a.dtype == np.float32
    np.testing.assert_array_equal(a, simulate_reflectivity(200, 300, seed=4))
    assert not np.array_equal(a, simulate_reflectivity(200, 300, seed=5))
    assert np.all(np.isfinite(a)) and a.min() > 0


def test_any_window_equals_the_same_window_of_the_whole_scene():
    whole = simulate_reflectivity(300, 260, seed=2)
    window = _reflectivity_window(2, 40, 170, 33, 250, 300, 260)
    np.testing.assert_array_equal(window, whole[40:170, 33:250])
    speckle = _speckle_window(2, 0, 300, 0, 260, looks=2)
    np.testing.assert_allclose(_speckle_window(2, 40, 170, 33, 250, looks=2), speckle[40:170, 33:250], rtol=1e-5)


def test_scene_has_water_land_and_bright_targets():
    refl = simulate_reflectivity(1024, 1024, seed=0)
    db = 10 * np.log10(refl)
    assert db.max() - np.median(db) > 30  # ships, point targets, double bounce far above the rest
    assert np.percentile(db, 1) < -20  # calm water near the noise floor
    assert 1e-3 < np.median(refl) < 1.0
    assert np.mean(db > 5) < 0.05  # bright pixels are few


@pytest.mark.parametrize("looks", [1, 3, 5])
@pytest.mark.parametrize("correlated", [True, False])
def test_speckle_statistics(looks, correlated):
    speckle = _speckle_window(11, 0, 512, 0, 512, looks, correlated)
    assert speckle.dtype == np.float32 and speckle.min() > 0
    assert speckle.mean() == pytest.approx(1.0, abs=0.02)
    enl = speckle.mean() ** 2 / speckle.var()
    assert enl == pytest.approx(looks, rel=0.08)
    corr = _neighbour_correlation(speckle)
    if correlated:
        assert 0.08 < corr < 0.3
    else:
        assert abs(corr) < 0.02


def test_simulate_speckle_multiplies_reflectivity():
    refl = np.full((256, 256), 0.2, np.float32)
    out = simulate_speckle(refl, looks=4, seed=1)
    assert out.shape == refl.shape and out.dtype == np.float32
    assert out.mean() == pytest.approx(0.2, rel=0.03)
    np.testing.assert_array_equal(out, simulate_speckle(refl, looks=4, seed=1))
    with pytest.raises(InputError):
        simulate_speckle(np.ones(5), looks=1)
    for bad in (0, -1, 1.5):
        with pytest.raises(InputError, match="looks"):
            simulate_speckle(refl, looks=bad)


def test_scene_kinds_and_dtypes():
    intensity, refl = simulate_scene(64, 96, looks=2, seed=3)
    assert intensity.shape == refl.shape == (64, 96) and intensity.dtype == np.float32
    amplitude, _ = simulate_scene(64, 96, looks=2, seed=3, kind="amplitude")
    np.testing.assert_allclose(amplitude**2, intensity, rtol=1e-5)
    db, _ = simulate_scene(64, 96, looks=2, seed=3, kind="db")
    np.testing.assert_allclose(db, 10 * np.log10(intensity), atol=1e-4)
    dn, _ = simulate_scene(64, 96, looks=2, seed=3, kind="amplitude", dtype="uint16")
    assert dn.dtype == np.uint16 and dn.min() >= 1
    np.testing.assert_allclose(dn, np.clip(np.rint(amplitude * DN_SCALE), 1, 65535), atol=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "complex"}, "kind"),
        ({"dtype": "int32"}, "dtype"),
        ({"kind": "intensity", "dtype": "uint16"}, "amplitude"),
        ({"kind": "db", "dtype": "uint16"}, "amplitude"),
    ],
)
def test_scene_rejects_bad_products(kwargs, match):
    with pytest.raises(InputError, match=match):
        simulate_scene(16, 16, **kwargs)


def test_scene_size_validation():
    with pytest.raises(InputError, match="size"):
        simulate_scene(0, 10)
    with pytest.raises(InputError, match="looks must be an integer from 1 to 1024"):
        simulate_scene(8, 8, looks=100_000)  # drawn one by one: it ran for hours


def test_a_written_scene_can_be_cancelled_and_a_wide_one_is_written_in_short_strips(tmp_path, monkeypatch):
    """simulate ignored Ctrl-C (it wrote the scene, over an existing one with --overwrite, and exited 0); a
    1,000,000-pixel-wide scene's 256-row strips took 25 GB. Strips hold at most STRIP_PIXELS, the same pixels."""
    with pytest.raises(CancelledError):
        write_scene(tmp_path / "c.tif", 300, 200, cancel=lambda: True)
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(simulate, "STRIP_PIXELS", 200 * 7)
    strips = []
    written = write_scene(tmp_path / "w.tif", 30, 200, seed=3, cancel=lambda: strips.append(1) and False)
    assert len(strips) == 5  # 7 rows a strip
    with rasterio.open(written) as ds:
        np.testing.assert_allclose(ds.read(1), simulate_scene(30, 200, seed=3)[0], rtol=1e-6)


def test_training_patch():
    speckled, clean = training_patch(128, seed=7, looks=2)
    assert speckled.shape == clean.shape == (128, 128)
    assert speckled.dtype == clean.dtype == np.float32
    assert clean.min() > 0 and np.all(np.isfinite(speckled))
    again = training_patch(128, seed=7, looks=2)
    np.testing.assert_array_equal(speckled, again[0])
    assert not np.array_equal(clean, training_patch(128, seed=8, looks=2)[1])


def test_write_scene_georeferenced_equals_simulate_scene(tmp_path):
    path = write_scene(tmp_path / "scene.tif", 300, 200, looks=2, seed=6, rows=64)
    info = open_info(path)
    assert info.has_georef and CRS.from_wkt(info.crs_wkt) == CRS.from_epsg(32631)
    assert info.transform[1] == 10.0 and info.transform[5] == -10.0
    assert (info.height, info.width, info.count, info.dtype) == (300, 200, 1, "float32")
    assert "intensity" in info.descriptions[0] and "2 looks" in info.descriptions[0]
    assert info.tags["SEED"] == "6" and info.tags["LOOKS"] == "2"
    assert detect_kind(info.dtype, None, info.descriptions[0]) == "intensity"
    with rasterio.open(path) as ds:
        np.testing.assert_allclose(ds.read(1), simulate_scene(300, 200, looks=2, seed=6)[0], rtol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_write_scene_without_georef(tmp_path):
    info = open_info(write_scene(tmp_path / "plain.tif", 40, 50, georef=False))
    assert not info.has_georef and info.crs_wkt is None and info.transform is None


@pytest.mark.parametrize(("kind", "dtype"), [("amplitude", "uint16"), ("db", "float32"), ("amplitude", "float32")])
def test_written_products_are_recognised(tmp_path, kind, dtype):
    path = write_scene(tmp_path / "p.tif", 48, 40, kind=kind, dtype=dtype)
    info = open_info(path)
    assert info.dtype == dtype
    with rasterio.open(path) as ds:
        sample = ds.read(1)
    assert detect_kind(info.dtype, sample, info.descriptions[0], info.tags) == kind


@pytest.mark.parametrize(("dtype", "kind"), [("float32", "intensity"), ("uint16", "amplitude")])
def test_write_scene_nodata_fraction(tmp_path, dtype, kind):
    path = write_scene(tmp_path / "nd.tif", 200, 150, kind=kind, dtype=dtype, nodata_fraction=0.25)
    info = open_info(path)
    with rasterio.open(path) as ds:
        data = ds.read(1)
    invalid = np.isnan(data) if dtype == "float32" else data == 0
    assert math.isnan(info.nodata) if dtype == "float32" else info.nodata == 0
    assert invalid.mean() == pytest.approx(0.25, abs=0.02)
    assert not invalid[:, -1].any()
    with pytest.raises(InputError, match="nodata_fraction"):
        write_scene(tmp_path / "bad.tif", 10, 10, nodata_fraction=1.0)


def test_write_scene_cog(tmp_path):
    path = write_scene(tmp_path / "cog.tif", 300, 300, cog=True)
    with rasterio.open(path) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
