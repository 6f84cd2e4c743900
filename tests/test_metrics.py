"""Metrics on hand-made cases whose answers are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio

from sar_compressor.engine import InputError
from sar_compressor.engine import metrics as m
from sar_compressor.engine.simulate import simulate_scene


def _speckle(shape=(256, 256), looks=1, seed=0) -> np.ndarray:
    """Gamma speckle on a two-level reflectivity (linear intensity)."""
    rng = np.random.default_rng(seed)
    refl = np.where(np.arange(shape[1])[None, :] < shape[1] // 2, 1.0, 4.0) * np.ones(shape)
    return refl * rng.gamma(looks, 1.0 / looks, shape)


def _box(a: np.ndarray, k: int) -> np.ndarray:
    pad = np.pad(a, k // 2, mode="reflect")
    c = np.cumsum(np.cumsum(np.pad(pad, ((1, 0), (1, 0))), 0), 1)
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def _ssim_brute(x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Direct Wang et al. SSIM: explicit 2-D gaussian window at every valid position."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            if mask is not None and not mask[i : i + 11, j : j + 11].all():
                continue
            a, b = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * a).sum(), (w * b).sum()
            vx, vy = (w * a * a).sum() - mx * mx, (w * b * b).sum() - my * my
            cxy = (w * a * b).sum() - mx * my
            vals.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_identical_images_are_perfect():
    x = _speckle()
    r = m.evaluate_arrays(x, x.copy())
    assert r["psnr_db"] == math.inf
    assert r["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert r["ms_ssim"] == pytest.approx(1.0, abs=1e-12)
    assert r["mean_ratio"] == pytest.approx(1.0, abs=1e-12)
    assert r["epi"] == pytest.approx(1.0, abs=1e-12)
    assert r["enl_ratio"] == pytest.approx(1.0, abs=1e-12)
    assert r["db_rmse"] == 0.0
    assert r["clipped_fraction"] == pytest.approx(0.01, abs=0.002)  # 0.5 % below + 0.5 % above the range
    assert r["valid_pixels"] == x.size


def test_constant_db_offset_gives_known_rmse_and_psnr():
    rng = np.random.default_rng(1)
    orig_db = rng.uniform(-10.0, 0.0, (64, 64))
    r = m.evaluate_arrays(orig_db, orig_db + 1.5, kind="db", rng=(-20.0, 10.0))
    assert r["db_rmse"] == pytest.approx(1.5, rel=1e-9)
    assert r["psnr_db"] == pytest.approx(20 * math.log10(30.0 / 1.5), rel=1e-9)
    assert r["mean_ratio"] == pytest.approx(10**0.15, rel=1e-9)
    assert r["clipped_fraction"] == 0.0
    assert "[-20.00, 10.00] dB (given)" in r["domain"]["psnr_db"]


def test_offset_in_intensity_matches_db_offset():
    x = _speckle(seed=2)
    r = m.evaluate_arrays(x, x * 10 ** (2.0 / 10))
    assert r["db_rmse"] == pytest.approx(2.0, rel=1e-9)
    assert r["mean_ratio"] == pytest.approx(10**0.2, rel=1e-9)


def test_half_linear_intensity_halves_mean_ratio():
    x = _speckle(seed=3)
    r = m.evaluate_arrays(x, 0.5 * x)
    assert r["mean_ratio"] == pytest.approx(0.5, rel=1e-12)
    assert r["db_rmse"] == pytest.approx(10 * math.log10(2), rel=1e-9)
    assert r["enl_ratio"] == pytest.approx(1.0, rel=1e-9)  # ENL is scale invariant


def test_amplitude_and_db_kinds_use_linear_intensity_for_the_mean():
    x = _speckle(seed=4)
    amp = np.sqrt(x)
    assert m.evaluate_arrays(amp, amp * math.sqrt(0.5), kind="amplitude")["mean_ratio"] == pytest.approx(0.5)
    db = 10 * np.log10(x)
    assert m.evaluate_arrays(db, db - 10 * math.log10(2), kind="db")["mean_ratio"] == pytest.approx(0.5)


def test_smoothed_speckle_raises_enl_ratio():
    x = _speckle(seed=5)
    r = m.evaluate_arrays(x, _box(x, 5))
    assert r["enl_ratio"] > 5.0  # a 5x5 mean of 1-look speckle has ENL near 25 in flat areas
    assert r["epi"] < 0.5


def test_ssim_matches_direct_computation():
    rng = np.random.default_rng(6)
    x = rng.uniform(0, 1, (23, 19))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    assert m.ssim(x, y) == pytest.approx(_ssim_brute(x, y), rel=1e-10)
    mask = np.ones(x.shape, bool)
    mask[3, 4] = False
    mask[20, 15] = False
    y_bad = y.copy()
    y_bad[3, 4] = y_bad[20, 15] = 99.0  # excluded windows: the value must not matter
    assert m.ssim(x, y_bad, mask) == pytest.approx(_ssim_brute(x, y, mask), rel=1e-10)


def test_ssim_of_constant_windows_is_luminance_term():
    a, b = 0.3, 0.6
    expected = (2 * a * b + 0.01**2) / (a * a + b * b + 0.01**2)
    assert m.ssim(np.full((11, 11), a), np.full((11, 11), b)) == pytest.approx(expected, rel=1e-12)
    assert m.ssim(np.zeros((10, 10)), np.zeros((10, 10))) is None


def test_ms_ssim_needs_176_pixels():
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1, (200, 180))
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)
    value = m.ms_ssim(x, y)
    assert 0.5 < value < 1.0
    assert m.ms_ssim(x[:175], y[:175]) is None
    assert m.evaluate_arrays(_speckle((100, 100)), _speckle((100, 100), seed=1))["ms_ssim"] is None


def test_nodata_and_nan_are_excluded():
    x = _speckle(seed=8)
    y = x * 0.8
    x_nd, y_nd = x.copy(), y.copy()
    x_nd[:40] = -9999.0
    y_nd[:40] = 123.0
    y_nd[100, 100] = np.nan
    r = m.evaluate_arrays(x_nd, y_nd, nodata=-9999.0)
    assert r["valid_pixels"] == x.size - 40 * 256 - 1
    assert r["mean_ratio"] == pytest.approx(0.8, rel=1e-12)
    assert r["db_rmse"] == pytest.approx(10 * math.log10(1 / 0.8), rel=1e-9)
    with pytest.raises(InputError, match="no pixel is valid"):
        m.evaluate_arrays(np.full((8, 8), np.nan), np.ones((8, 8)))


def test_uint8_display_products_use_native_values():
    rng = np.random.default_rng(9)
    x = rng.integers(0, 250, (64, 64)).astype(np.uint8)
    r = m.evaluate_arrays(x, x + np.uint8(1), kind="uint8")
    assert r["psnr_db"] == pytest.approx(20 * math.log10(255.0), rel=1e-12)
    assert 0.9 < r["ssim"] <= 1.0
    assert r["db_rmse"] is None and r["mean_ratio"] is None and r["enl_ratio"] is None
    assert r["range"] == {"vmin": 0.0, "vmax": 255.0, "unit": "uint8", "source": "uint8 full scale"}


def test_every_metric_states_its_domain():
    r = m.evaluate_arrays(_speckle(), _speckle(seed=1))
    for key in m.METRIC_KEYS:
        assert key in r and r["domain"][key]
    vmin = r["range"]["vmin"]
    assert f"{vmin:.2f}" in r["domain"]["ssim"] and "0.5-99.5 pct" in r["domain"]["ssim"]


def test_shape_mismatch_and_bad_range_raise():
    with pytest.raises(InputError, match="differ in shape"):
        m.evaluate_arrays(np.ones((4, 4)), np.ones((4, 5)))
    with pytest.raises(InputError, match="vmax > vmin"):
        m.evaluate_arrays(np.ones((4, 4)), np.ones((4, 4)), rng=(1.0, 1.0))
    with pytest.raises(InputError, match="unknown kind"):
        m.evaluate_arrays(np.ones((4, 4)), np.ones((4, 4)), kind="sigma")


def _write(path, arr, nodata=None):
    profile = {"driver": "GTiff", "width": arr.shape[1], "height": arr.shape[0], "count": 1}
    profile.update(dtype=str(arr.dtype), nodata=nodata, tiled=True, blockxsize=128, blockysize=128)
    profile.update(crs="EPSG:32631", transform=rasterio.transform.from_origin(500000, 4000000, 10, 10))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr, 1)
    return path


def test_evaluate_files_matches_arrays_and_checks_sizes(tmp_path):
    x = _speckle((300, 260), seed=10).astype(np.float32)
    y = (x * 0.9).astype(np.float32)
    x[:10] = -1.0
    a, b = _write(tmp_path / "a.tif", x, nodata=-1.0), _write(tmp_path / "b.tif", y)
    from_files = m.evaluate_files(a, b)
    from_arrays = m.evaluate_arrays(np.where(x == -1.0, np.nan, x), y)
    assert from_files["kind"] == "intensity" and from_files["band"] == 1
    for key in ("psnr_db", "ssim", "ms_ssim", "db_rmse", "mean_ratio", "enl_ratio", "epi"):
        assert from_files[key] == pytest.approx(from_arrays[key], rel=1e-9)
    c = _write(tmp_path / "c.tif", y[:200])
    with pytest.raises(InputError, match="differ in shape"):
        m.evaluate_files(a, c)
    with pytest.raises(InputError, match="band 2 does not exist"):
        m.evaluate_files(a, b, band=2)


def test_an_evaluation_can_be_cancelled_between_its_strips(tmp_path):
    """The Compress algorithm's metrics ran to their end after a cancel (8 s on a 3000x3000 scene)."""
    from sar_compressor.engine.errors import CancelledError

    x = _speckle((300, 260), seed=11).astype(np.float32)
    a, b = _write(tmp_path / "a.tif", x), _write(tmp_path / "b.tif", (x * 0.9).astype(np.float32))
    asked: list[int] = []

    def cancel() -> bool:
        asked.append(1)
        return len(asked) > 1  # not at once: during the metrics

    with pytest.raises(CancelledError):
        m.evaluate_files(a, b, cancel=cancel)
    with pytest.raises(CancelledError):
        m.evaluate_bands(a, b, cancel=lambda: True)
    assert m.evaluate_files(a, b)["ssim"] is not None  # the check is gone with the evaluation that set it


@pytest.mark.parametrize("large", [False, True])
def test_an_evaluation_reports_its_progress_forward(tmp_path, monkeypatch, large):
    """Compress's bar stood still through its metrics (two thirds of a run on a 4096x4096 scene) and Evaluate's at
    0 % until the end: every step reports within its own share, so the bar only moves forward, to its end."""
    if large:  # strip by strip, the neighbourhood metrics on a central crop
        monkeypatch.setattr(m, "MAX_FULL_PIXELS", 100 * 100)
        monkeypatch.setattr(m, "STRIP_ROWS", 64)
    x = _speckle((1100, 260), seed=12).astype(np.float32)
    a, b = _write(tmp_path / "a.tif", x), _write(tmp_path / "b.tif", (x * 0.9).astype(np.float32))
    seen: list[tuple[int, int]] = []
    m.evaluate_files(a, b, progress=lambda done, total: seen.append((done, total)))
    done = [d for d, _ in seen]
    assert {t for _, t in seen} == {m.PROGRESS_STEPS} and done == sorted(done) and done[-1] == m.PROGRESS_STEPS
    assert len(set(done)) >= 8 and done[len(done) // 2] < m.PROGRESS_STEPS  # many steps, not one jump at the end
    two = tmp_path / "two.tif"
    with rasterio.open(a) as src, rasterio.open(two, "w", **dict(src.profile, count=2)) as dst:
        dst.write(np.stack([x, x * 2]))
    seen.clear()
    m.evaluate_bands(two, two, progress=lambda done, total: seen.append((done, total)))
    fractions = [d / t for d, t in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and any(0.4 < f < 0.6 for f in fractions)


def test_zeros_coded_as_data_are_counted_per_band_and_a_gdal_mask_is_not_one(tmp_path):
    """An original's fill zeros that the reconstruction holds as values are counted, with their largest value, and
    said band by band (evaluate_bands said band 1's warnings only); the pixels of the original's own GDAL mask,
    read as 0, are not such zeros (a masked 8x8 patch compared with its unmasked pixels scored 28.6 dB, not inf)."""
    rng = np.random.default_rng(1)
    a = rng.integers(100, 200, (128, 128)).astype(np.uint8)
    profile = {"driver": "GTiff", "width": 128, "height": 128, "count": 1, "dtype": "uint8"}
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(tmp_path / "masked.tif", "w", **profile) as dst:
        dst.write(a, 1)
        mask = np.full(a.shape, 255, np.uint8)
        mask[40:48, 40:48] = 0
        dst.write_mask(mask)
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", **profile) as dst:
        dst.write(a, 1)
    result = m.evaluate_files(tmp_path / "masked.tif", plain)
    assert result["coded_zeros"] == 0 and result["psnr_db"] == math.inf and not result["warnings"]
    zeroed = a.copy()
    zeroed[::7, ::5] = 0
    with rasterio.open(tmp_path / "two.tif", "w", **dict(profile, count=2)) as dst:
        dst.write(np.stack([a, zeroed]))
    with rasterio.open(tmp_path / "back.tif", "w", **dict(profile, count=2)) as dst:
        dst.write(np.stack([a, a]))
    both = m.evaluate_bands(tmp_path / "two.tif", tmp_path / "back.tif")
    assert [b["coded_zeros"] for b in both["bands"]] == [0, (zeroed == 0).sum()]
    assert both["bands"][1]["coded_zeros_top"] == a[zeroed == 0].max()
    said = [w for w in both["warnings"] if "exact zeros of the original" in w]
    assert len(said) == 1 and said[0].startswith("band 2: ") and f"up to {a[zeroed == 0].max()}" in said[0]


def test_evaluation_warns_of_another_grid_or_more_bands(tmp_path, capsys):
    """Pixels of the same size but on another CRS or geotransform, or a reconstruction with bands the original
    lacks, were compared silently: the figures come with a warning (CLI: on stderr)."""
    from sar_compressor.engine.cli import main

    x = _speckle((64, 80), seed=22).astype(np.float32)
    a = _write(tmp_path / "a.tif", x)
    assert m.evaluate_files(a, _write(tmp_path / "same.tif", x * 0.9))["warnings"] == []
    profile = {"driver": "GTiff", "width": 80, "height": 64, "count": 2, "dtype": "float32", "crs": "EPSG:4326"}
    profile["transform"] = rasterio.transform.from_origin(3.0, 43.0, 1e-4, 1e-4)
    with rasterio.open(tmp_path / "other.tif", "w", **profile) as dst:
        dst.write(np.stack([x, x]))
    warnings = m.evaluate_bands(a, tmp_path / "other.tif")["warnings"]
    assert "CRS (EPSG:4326) is not the original's (EPSG:32631)" in warnings[0]
    assert "geotransform is not the original's" in warnings[1]
    assert warnings[2] == "the reconstruction has 2 bands, the original 1: only its band 1 compared"
    assert main(["evaluate", str(a), str(tmp_path / "other.tif")]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: ") == 3 and "CRS (EPSG:4326)" in err


def test_reconstruction_band_of_a_multiband_original(tmp_path):
    x = np.stack([_speckle((64, 80), seed=s).astype(np.float32) for s in (20, 21)])
    profile = {"driver": "GTiff", "width": 80, "height": 64, "count": 2, "dtype": "float32"}
    profile.update(crs="EPSG:32631", transform=rasterio.transform.from_origin(500000, 4000000, 10, 10))
    with rasterio.open(tmp_path / "two.tif", "w", **profile) as dst:
        dst.write(x)
    recon = _write(tmp_path / "one.tif", (x[1] * 0.5).astype(np.float32))
    r = m.evaluate_files(tmp_path / "two.tif", recon, band=2, reconstruction_band=1)
    assert r["mean_ratio"] == pytest.approx(0.5, rel=1e-6) and r["band"] == 2
    # a single-band reconstruction is band 1 by default; a multi-band one is read at the original's band
    assert m.evaluate_files(tmp_path / "two.tif", recon, band=2)["mean_ratio"] == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(InputError, match="band 2 does not exist in the reconstruction"):
        m.evaluate_files(tmp_path / "two.tif", recon, band=2, reconstruction_band=2)


def test_complex_original_against_its_intensity_reconstruction():
    rng = np.random.default_rng(3)
    z = (rng.normal(size=(64, 64)) + 1j * rng.normal(size=(64, 64))).astype(np.complex64)
    r = m.evaluate_arrays(z, (np.abs(z) ** 2).astype(np.float32), kind="complex")
    assert r["mean_ratio"] == pytest.approx(1.0, rel=1e-6) and r["ssim"] == pytest.approx(1.0)


def test_large_files_are_accumulated_in_strips_with_a_crop(tmp_path, monkeypatch):
    x = _speckle((300, 260), seed=11).astype(np.float32)
    y = (x * 0.7).astype(np.float32)
    a, b = _write(tmp_path / "a.tif", x), _write(tmp_path / "b.tif", y)
    whole = m.evaluate_files(a, b, rng=(-20.0, 10.0))
    monkeypatch.setattr(m, "MAX_FULL_PIXELS", 1000)
    monkeypatch.setattr(m, "STRIP_ROWS", 64)
    monkeypatch.setattr(m, "MAX_CROP", 200)
    strips = m.evaluate_files(a, b, rng=(-20.0, 10.0))
    for key in ("psnr_db", "db_rmse", "mean_ratio", "clipped_fraction"):
        assert strips[key] == pytest.approx(whole[key], rel=1e-6)
    assert "central 200x200 crop" in strips["domain"]["ssim"]
    assert strips["ms_ssim"] is not None and strips["valid_pixels"] == x.size
    auto = m.evaluate_files(a, b)
    assert "from every" in auto["range"]["source"]


def test_uint8_files_are_detected_as_display_products(tmp_path):
    x = np.random.default_rng(12).integers(0, 200, (64, 64)).astype(np.uint8)
    a, b = _write(tmp_path / "a.tif", x), _write(tmp_path / "b.tif", x + np.uint8(2))
    r = m.evaluate_files(a, b)
    assert r["kind"] == "uint8"
    assert r["psnr_db"] == pytest.approx(20 * math.log10(255 / 2), rel=1e-12)


def test_render_side_by_side_writes_png(tmp_path):
    """...without pyplot or switching matplotlib's backend (it runs inside QGIS)."""
    import matplotlib

    backend = dict.__getitem__(matplotlib.rcParams, "backend")  # the raw value: reading it normally resolves it
    x = 10 * np.log10(_speckle((64, 64)))
    out = m.render_side_by_side(x, x + 1.0, tmp_path / "sub" / "cmp.png", (-20.0, 10.0), title="test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert dict.__getitem__(matplotlib.rcParams, "backend") is backend


# --- multilooked PSNR ---
WIDE = (-100.0, 100.0)  # a range nothing here is clipped to


def test_multilook_psnr_of_a_gain_is_the_gain_in_db():
    x = _speckle((64, 64), seed=30)
    result = m.evaluate_arrays(x, 1.25 * x, rng=WIDE)
    expected = 20.0 * math.log10(200.0 / (10.0 * math.log10(1.25)))
    assert result["multilook_psnr_db"] == pytest.approx(expected, rel=1e-9)
    assert result["looks"] == 5 and "5x5 boxcar" in result["domain"]["multilook_psnr_db"]


def test_multilook_psnr_averages_a_checkerboard_in_linear_intensity():
    """Flat original, reconstruction alternating 0.5 / 1.5: every 5x5 mean is 0.98 or 1.02, half each."""
    x = np.ones((64, 64))
    y = np.where(np.add.outer(np.arange(64), np.arange(64)) % 2 == 0, 0.5, 1.5)
    result = m.evaluate_arrays(x, y, rng=WIDE)
    mse = 0.5 * ((10 * math.log10(0.98)) ** 2 + (10 * math.log10(1.02)) ** 2) / 200.0**2
    assert result["multilook_psnr_db"] == pytest.approx(-10 * math.log10(mse), rel=1e-9)
    assert result["multilook_psnr_db"] > result["psnr_db"] + 20
    three = m.evaluate_arrays(x, y, rng=WIDE, looks=3)  # 3x3 means: 5/9 of one level, 4/9 of the other
    mse3 = 0.5 * ((10 * math.log10((5 * 0.5 + 4 * 1.5) / 9)) ** 2 + (10 * math.log10((5 * 1.5 + 4 * 0.5) / 9)) ** 2)
    assert three["multilook_psnr_db"] == pytest.approx(-10 * math.log10(mse3 / 200.0**2), rel=1e-9)


def test_multilook_psnr_with_one_look_is_plain_psnr():
    x = _speckle((48, 40), seed=31)
    y = x * _speckle((48, 40), seed=32)
    result = m.evaluate_arrays(x, y, looks=1)
    assert result["multilook_psnr_db"] == pytest.approx(result["psnr_db"], rel=1e-12)


def test_multilook_psnr_leaves_nodata_and_nan_out_of_the_averages():
    x = _speckle((40, 40), seed=33)
    y = x.copy()
    x[5:9, 5:30] = -1.0  # nodata in the original: the reconstruction holds garbage there
    y[5:9, 5:30] = 1e6
    y[20, 20] = np.nan
    result = m.evaluate_arrays(x, y, nodata=-1.0)
    assert result["multilook_psnr_db"] == math.inf  # every window's valid pixels agree exactly
    assert m.multilook_psnr(x, y, np.zeros(x.shape, bool), (0.0, 1.0)) is None
    assert m.multilook_psnr(x[:4], y[:4], np.ones((4, 40), bool), (0.0, 1.0)) is None  # no 5x5 window fits


def test_multilook_psnr_of_uint8_display_products_averages_native_values():
    x = np.full((20, 20), 100, np.uint8)
    y = np.where(np.add.outer(np.arange(20), np.arange(20)) % 2 == 0, 90, 110).astype(np.uint8)
    result = m.evaluate_arrays(x, y, kind="uint8")
    expected = -10 * math.log10((0.4**2) / 255.0**2)  # every 5x5 mean is 99.6 or 100.4
    assert result["multilook_psnr_db"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("looks", [0, -3, 2.5, True, "5"])
def test_bad_looks_are_refused_before_any_work(looks, tmp_path):
    x = _speckle((16, 16), seed=34)
    with pytest.raises(InputError, match="looks must be a whole number"):
        m.evaluate_arrays(x, x, looks=looks)
    with pytest.raises(InputError, match="looks must be a whole number"):
        m.evaluate_files(tmp_path / "missing.tif", tmp_path / "missing.tif", looks=looks)


def test_evaluate_files_and_cli_take_the_looks(tmp_path, capsys):
    import json

    from sar_compressor.engine.cli import main

    x = _speckle((64, 72), seed=35).astype(np.float32)
    y = (x * _speckle((64, 72), looks=4, seed=36)).astype(np.float32)
    a, b = _write(tmp_path / "a.tif", x), _write(tmp_path / "b.tif", y)
    for looks in (3, 7):
        from_files = m.evaluate_files(a, b, looks=looks)
        from_arrays = m.evaluate_arrays(x, y, looks=looks)
        assert from_files["multilook_psnr_db"] == pytest.approx(from_arrays["multilook_psnr_db"])
    assert main(["evaluate", str(a), str(b), "--looks", "7", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["looks"] == 7
    assert printed["multilook_psnr_db"] == pytest.approx(from_files["multilook_psnr_db"])
    assert main(["evaluate", str(a), str(b)]) == 0
    assert "multilook_psnr_db" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_an_empty_band_is_said_and_the_others_measured(tmp_path):
    """An HH / HV / VV stack whose HV band is all zero (no-signal fill): evaluate stopped on it with 'no pixel is
    valid in both the original and the reconstruction' and gave no figure for HH or VV."""
    rng = np.random.default_rng(4)
    stack = rng.gamma(4.0, 0.25, size=(3, 64, 80)).astype(np.float32)
    stack[1] = 0.0
    recon = (stack * rng.uniform(0.9, 1.1, size=stack.shape)).astype(np.float32)
    paths = []
    for name, arr in (("orig.tif", stack), ("recon.tif", recon)):
        paths.append(tmp_path / name)
        with rasterio.open(paths[-1], "w", driver="GTiff", width=80, height=64, count=3, dtype="float32") as ds:
            ds.write(arr)
    result = m.evaluate_bands(*paths)
    empty = result["bands"][1]
    assert empty["valid_pixels"] == 0 and empty["psnr_db"] is None and "no pixel is valid" in empty["domain"]["ssim"]
    assert set(empty) >= set(result["bands"][0]) - {"other_domain"}  # a consumer reads every band alike
    assert all(result["bands"][i]["psnr_db"] > 10 for i in (0, 2))
    assert any(w.startswith("band 2: ") for w in result["warnings"]) and result["overall"]["psnr_db"] > 10
    stack[:] = 0.0
    with rasterio.open(paths[0], "r+") as ds:
        ds.write(stack)
    with pytest.raises(InputError, match="no band has a pixel valid"):
        m.evaluate_bands(*paths)


def test_a_real_kind_on_a_complex_original_is_refused(tmp_path):
    """evaluate --kind intensity on an SLC measured the real part: PSNR 4.5 dB, mean ratio 336, a ComplexWarning
    (compression refuses that kind on complex pixels)."""
    slc = (np.ones((32, 40)) + 1j * np.ones((32, 40))).astype(np.complex64)
    path = tmp_path / "slc.tif"
    with rasterio.open(path, "w", driver="GTiff", width=40, height=32, count=1, dtype="complex64") as ds:
        ds.write(slc, 1)
    with pytest.raises(InputError, match="does not fit the original's complex pixels"):
        m.evaluate_files(path, path, kind="intensity")


def test_the_complex_kind_on_a_real_original_is_refused(tmp_path):
    """evaluate --kind complex on a real raster squared its values as |z|**2: mean ratio 0.006, PSNR 16.0 dB where
    auto said 23.2, a doubled dB range, exit 0 (compression refuses that kind on real pixels)."""
    path = tmp_path / "real.tif"
    with rasterio.open(path, "w", driver="GTiff", width=40, height=32, count=1, dtype="float32") as ds:
        ds.write(np.ones((32, 40), np.float32), 1)
    with pytest.raises(InputError, match="kind 'complex' needs a complex original"):
        m.evaluate_files(path, path, kind="complex")


def test_a_native_range_narrower_than_one_unit_is_its_own(tmp_path):
    """Noise-subtracted sigma0 within 0.11, detected native: its range was widened to 1 unit (the dB minimum), so
    PSNR read 38.9 dB and SSIM 0.915 where its own range gives 20.0 and 0.603."""
    rng = np.random.default_rng(4)
    orig = (rng.gamma(4, 0.25, (96, 96)) * 0.01 - 0.002).astype(np.float32)
    recon = orig + rng.normal(0, 0.01, orig.shape).astype(np.float32)
    result = m.evaluate_arrays(orig, recon, kind="native")
    lo, hi = np.percentile(orig, [0.5, 99.5])
    assert (result["range"]["vmin"], result["range"]["vmax"]) == pytest.approx((lo, hi), rel=1e-4)
    clipped = np.clip(recon, lo, hi) - np.clip(orig, lo, hi)
    assert result["psnr_db"] == pytest.approx(-10 * np.log10(np.mean((clipped / (hi - lo)) ** 2)), abs=1e-3)


def test_several_bands_pool_their_multilooked_errors_and_lost_pixels_are_said(tmp_path):
    """Multi-band evaluate averaged each band's multilooked PSNR (a band identical, inf, made the overall inf); a
    reconstruction's NaN where the original is valid was left out silently (20 % of pixels as NaN: PSNR 32.4 dB,
    as zeros 10.1), and moved the default range."""
    scene = simulate_scene(64, 80, looks=4, seed=2)[0].astype(np.float32)
    noisy = scene * np.random.default_rng(1).gamma(8, 1 / 8, scene.shape).astype(np.float32)
    paths = [tmp_path / "o.tif", tmp_path / "r.tif"]
    for path, second in zip(paths, (scene, noisy)):
        with rasterio.open(path, "w", driver="GTiff", width=80, height=64, count=2, dtype="float32") as ds:
            ds.write(np.stack([scene, second]))
    result = m.evaluate_bands(*paths, kind="intensity")
    bands = [b["multilook_psnr_db"] for b in result["bands"]]
    assert bands[0] == np.inf and np.isfinite(bands[1])
    assert result["overall"]["multilook_psnr_db"] == pytest.approx(bands[1] + 10 * np.log10(2), abs=1e-6)
    holed = noisy.copy()
    holed[:, :16] = np.nan
    with rasterio.open(paths[1], "w", driver="GTiff", width=80, height=64, count=1, dtype="float32") as ds:
        ds.write(holed, 1)
    measured = m.evaluate_files(paths[0], paths[1], band=2, kind="intensity", reconstruction_band=1)
    assert measured["lost_pixels"] == 64 * 16
    assert any(
        "1024 pixels (20.00 %) valid in the original are invalid in the reconstruction" in w
        for w in (measured["warnings"])
    )
    whole = m.evaluate_files(paths[0], paths[0], band=2, kind="intensity", reconstruction_band=2)
    assert measured["range"] == whole["range"]  # the original's range, whatever the reconstruction lost


def test_a_reconstruction_in_another_unit_is_named_and_its_figures_printed_readably(tmp_path, capsys):
    """A linear reconstruction scored against a dB original printed a mean ratio of 153 digits, a JPEG 2000 decode
    left in DN one of inf with numpy's RuntimeWarnings, and nothing said the units differ."""
    import warnings

    from sar_compressor.engine.cli import _fmt, main

    intensity, _ = simulate_scene(128, 128, looks=4, seed=2)
    db = (10 * np.log10(intensity)).astype(np.float32)
    orig, linear = _write(tmp_path / "db.tif", db), _write(tmp_path / "lin.tif", intensity.astype(np.float32) * 1e3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = m.evaluate_files(orig, linear, kind="db")
    assert any("is it in another unit" in w for w in result["warnings"])
    assert not m.evaluate_files(orig, orig, kind="db")["warnings"]
    assert main(["evaluate", str(orig), str(linear), "--kind", "db"]) == 0
    assert "is it in another unit" in capsys.readouterr().err
    assert (_fmt(2.0630125e152, 4), _fmt(0.99871, 4), _fmt(math.inf, 4)) == ("2.0630e+152", "0.9987", "inf")
