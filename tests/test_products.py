"""Products as they come (issue 16): zero-filled footprints without nodata, DN and display products, the
`native` kind and the auto rule, input that is not backscatter, metrics that exclude the fill."""

from __future__ import annotations

import json
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from rasterio.transform import from_origin

from sar_compressor.engine import api
from sar_compressor.engine import preprocessing as pp
from sar_compressor.engine.cli import main
from sar_compressor.engine.codec.entropy.mask_coding import decode_codes, decode_mask, encode_codes, encode_mask
from sar_compressor.engine.errors import ContainerError, InputError, UnreachableTarget
from sar_compressor.engine.inspect import inspect_input
from sar_compressor.engine.metrics import evaluate_arrays, evaluate_files, metric_range
from sar_compressor.engine.simulate import (
    display_scale,
    encode_intensity,
    footprint_rows,
    simulate_product,
    simulate_scene,
    simulate_speckle,
    write_product,
)

SIZE = (512, 640)


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as ds:
        return ds.read(1), ds.profile


@pytest.fixture(scope="module")
def products(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("products")
    h, w = SIZE
    return {
        "grd": write_product(folder / "grd.tif", h, w, "grd", seed=3),
        "grd_nodata": write_product(folder / "grd_nodata.tif", h, w, "grd", seed=3, nodata=0),
        "display": write_product(folder / "display.tif", h, w, "display", seed=3),
    }


def test_zero_filled_grd_codes_its_valid_area_as_its_nodata_twin(products, tmp_path):
    results = {}
    for name in ("grd", "grd_nodata"):
        out, recon = tmp_path / f"{name}.sarz", tmp_path / f"{name}_r.tif"
        stats = api.compress_file(products[name], out, reconstruction=recon)
        api.decompress_file(out, tmp_path / f"{name}_d.tif")
        decoded, profile = _read(tmp_path / f"{name}_d.tif")
        original, source = _read(products[name])
        np.testing.assert_array_equal(decoded, _read(recon)[0])
        np.testing.assert_array_equal(decoded == 0, original == 0)  # fill restored as exact zeros, nothing else
        assert profile["transform"] == source["transform"] and profile["crs"] == source["crs"]  # rotated UTM
        assert profile["nodata"] == source["nodata"]
        metrics = evaluate_files(products[name], recon, kind="amplitude")
        assert metrics["valid_pixels"] == np.count_nonzero(original)
        results[name] = stats, metrics["psnr_db"]
    (filled, psnr_filled), (twin, psnr_twin) = results["grd"], results["grd_nodata"]
    assert filled.kind == "amplitude" and filled.vmin > 0  # the fill is not a -100 dB floor
    assert (filled.vmin, filled.vmax) == (twin.vmin, twin.vmax)
    assert abs(psnr_filled - psnr_twin) <= 0.1
    assert filled.output_bytes <= 1.03 * twin.output_bytes
    assert filled.no_signal_pixels == np.count_nonzero(_read(products["grd"])[0] == 0) and twin.no_signal_pixels == 0


def test_display_product_is_coded_native_and_reported_in_both_domains(products, tmp_path, capsys):
    out, recon = tmp_path / "d.sarz", tmp_path / "d.tif"
    stats = api.compress_file(products["display"], out, reconstruction=recon)
    assert stats.kind == "native" and "uint8" in stats.kind_reason
    header = api.read_header(out)
    band = header["bands"][0]
    assert band["mean_correction"] == "none" and band["stats"]["kind_reason"] == stats.kind_reason
    original, decoded = _read(products["display"])[0], _read(recon)[0]
    np.testing.assert_array_equal(decoded == 0, original == 0)
    metrics = evaluate_files(products["display"], recon)
    assert metrics["kind"] == "uint8" and metrics["range"]["unit"] == "uint8"
    assert metrics["other_domain"]["kind"] == "amplitude" and metrics["other_domain"]["range"]["unit"] == "dB"
    assert main(["info", str(out)]) == 0 and "native (uint8" in capsys.readouterr().out
    assert main(["evaluate", str(products["display"]), str(recon)]) == 0
    assert "also as amplitude" in capsys.readouterr().out


def test_uint16_histogram_rule_tells_display_from_dn():
    intensity, _ = simulate_scene(256, 256, looks=4, seed=1)
    dn = simulate_product(256, 256, "grd", seed=1)
    assert pp.choose_kind("uint16", dn.ravel()).kind == "amplitude"
    for scaling in ("sqrt", "log"):
        stretched = display_scale(np.sqrt(intensity), scaling, "uint16")
        choice = pp.choose_kind("uint16", stretched.ravel())
        assert choice.kind == "native" and "display-scaled" in choice.reason


def test_homogeneous_dn_amplitude_is_not_taken_for_display_scaled():
    """Open sea at 4 looks as uint16 DN: its tail is as short as a stretch's (about 2 times the median), but it sits
    low in the 16 bits where a stretch spreads over them (DISPLAY_REACH); it was coded native, under JPEG 2000."""
    rng = np.random.default_rng(4)
    sea = simulate_speckle(np.full((256, 256), 10 ** (-2.2), np.float32), looks=4, seed=4)
    dn = encode_intensity(sea * rng.uniform(0.8, 1.25), "amplitude", "uint16")
    median, p999 = np.percentile(dn, [50, 99.9])
    assert p999 < pp.DISPLAY_TAIL * median  # a display-like tail
    choice = pp.choose_kind("uint16", dn.ravel())
    assert choice.kind == "amplitude", choice.reason
    assert not pp.value_warnings("amplitude", dn.ravel(), "auto")  # a DN scene low in its range: no hint
    db = 10 * np.log10(simulate_scene(256, 256, looks=4, seed=1)[0])
    twelve_bits = np.rint(1 + 4094 * (db - db.min()) / np.ptp(db)).astype(np.uint16)  # a 12-bit min-max log stretch
    assert pp.choose_kind("uint16", twelve_bits.ravel()).kind == "amplitude"
    (hint,) = pp.value_warnings("amplitude", twelve_bits.ravel(), "auto")
    assert "if it is a display stretch" in hint and "choose kind 'native'" in hint
    assert not pp.value_warnings("amplitude", twelve_bits.ravel(), "amplitude")


def test_quarter_bpp_reachable_on_a_megapixel_display_product():
    arr = simulate_product(1024, 1024, "display", seed=5)
    result = api.compress_array(arr, target_bpp=0.25)
    assert 0.2 < result.stats.bpp <= 0.25


def test_quality_ladder_stays_below_lossless_and_above_the_input_quantization():
    arr = simulate_product(256, 256, "display", seed=2)
    top = api.compress_array(arr, quality=12)
    assert len(top.data) < len(zlib.compress(arr.tobytes(), 9))
    narrow = np.random.default_rng(0).integers(100, 121, size=(200, 200)).astype(np.uint8)  # a 20 DN range
    coded = api.compress_array(narrow, quality=12)
    header = api.read_header(coded.data)
    band = header["bands"][0]
    span = band["range"]["vmax"] - band["range"]["vmin"]
    assert band["refine_step"] * span >= 1.0  # capped at one DN (the ladder's own step is 0.018 * span)


def test_isolated_zeros_are_counted_and_restored():
    arr = simulate_product(256, 256, "display", seed=4)
    inside = np.argwhere(footprint_rows(0, 256, 256, 256, margin=0.2))
    picks = inside[np.random.default_rng(1).choice(len(inside), 40, replace=False)]
    arr[picks[:, 0], picks[:, 1]] = 0
    arr[picks[:, 0], picks[:, 1] + 1] = np.maximum(arr[picks[:, 0], picks[:, 1] + 1], 1)  # keep them isolated
    result = api.compress_array(arr)
    assert result.stats.isolated_zeros == pp.isolated_count(arr == 0) >= 30
    np.testing.assert_array_equal(result.reconstruction == 0, arr == 0)


def test_no_signal_fill_and_scattered_pixels_are_told_apart():
    m = np.zeros((60, 80), bool)
    m[:, :5] = True  # a border
    m[10, 40] = True  # a dead pixel, alone
    m[25, 30:46] = True  # a run of FILL_RUN: fill
    m[26, 31] = True  # beside fill
    m[5:8, 78:] = True  # reaching the edge: fill
    m[40:55:2, 20:35:3] = True  # a dense scatter (a noise-clipped dark area)
    scattered = pp.scattered_no_signal(m)
    assert scattered[40:55:2, 20:35:3].all() and scattered.sum() == m[40:55:2, 20:35:3].sum()
    m[40, 50 : 50 + pp.FILL_RUN - 1] = True  # a run one short of fill, among the scatter's neighbours: scattered
    assert pp.scattered_no_signal(m)[40, 50:65].all() and not pp.scattered_no_signal(m)[:, :5].any()
    m[44:47, 24:27] = m[50:54, 60:66] = True  # masked holes (an RTC product's layover): a 3x3 square fits in them
    m[51:53, 30:32] = True  # a 2x2 one among the scatter does not
    scattered = pp.scattered_no_signal(m)
    assert not scattered[44:47, 24:27].any() and not scattered[50:54, 60:66].any() and scattered[51:53, 30:32].all()


def _noise_clipped(rows: int, cols: int) -> np.ndarray:
    """A cross-polarized-like intensity scene whose thermal noise was subtracted and clipped at zero (as SNAP
    does), zero-filled along its left edge."""
    from sar_compressor.engine.simulate import simulate_reflectivity, simulate_speckle

    nesz = 10 ** (-24 / 10)
    signal = simulate_speckle(0.1 * simulate_reflectivity(rows, cols, seed=7), looks=4, seed=1)
    noise = simulate_speckle(np.full((rows, cols), nesz, np.float32), looks=4, seed=9)
    out = np.maximum(signal + noise - nesz, 0).astype(np.float32)
    out[:, :24] = 0
    return out


def test_dense_scattered_zeros_are_coded_as_data_and_the_fill_kept_exact():
    arr = _noise_clipped(512, 512)
    inside = arr[:, 24:] == 0
    assert inside.mean() > 0.08  # noise-clipped: 10 % of the footprint is zero
    result = api.compress_array(arr, kind="intensity", target_bpp=0.25)  # unreachable while they took the mask
    assert result.stats.bpp <= 0.25 and result.stats.scattered_no_signal > 0.8 * inside.sum()
    assert np.all(result.reconstruction[:, :24] == 0) and result.stats.no_signal_pixels >= 512 * 24
    recon = result.reconstruction[:, 24:]
    assert np.all(recon[~inside] > 0) and np.count_nonzero(recon[inside] > 0) == result.stats.scattered_no_signal
    np.testing.assert_array_equal(api.decompress_array(result.data), result.reconstruction)
    metrics = evaluate_arrays(arr, result.reconstruction, kind="intensity")
    assert abs(metrics["mean_ratio"] - 1) < 0.02


def test_scattered_no_signal_is_coded_at_the_signal_around_it(monkeypatch):
    db = np.full((40, 40), -20.0, np.float32)
    db[:, 20:] = -10.0
    scattered = np.zeros(db.shape, bool)
    scattered[10, 5] = scattered[10, 30] = True
    signal = ~scattered
    signal[25:, :] = False  # no signal within 15x15 of (39, 39)
    scattered[39, 39] = True
    out = pp.fill_scattered(db, scattered, signal, -40.0)
    assert out[10, 5] == -20.0 and out[10, 30] == -10.0 and out[39, 39] == -40.0
    np.testing.assert_array_equal(out[~scattered], db[~scattered])
    arr = _noise_clipped(256, 256)
    around = api.compress_array(arr, kind="intensity", quality=3)
    monkeypatch.setattr(pp, "fill_scattered", lambda db, scattered, signal, floor: np.where(scattered, floor, db))
    dips = api.compress_array(arr, kind="intensity", quality=3)
    psnr = [evaluate_arrays(arr, r.reconstruction, kind="intensity")["psnr_db"] for r in (around, dips)]
    assert len(around.data) < len(dips.data) and psnr[0] > psnr[1] + 0.5  # fewer bits, less error


def test_native_scattered_zeros_are_coded_as_values_and_scored():
    """A uint8 raster without nodata, values 100-199 and 5 % scattered zeros: the zeros were coded at the signal
    around them and decoded near 149 (171 DN off), evaluate leaving them out (52.7 dB where every pixel gives 17.7).
    In native values a zero is coded as one, clipped to the range (its bottom, the smallest other value), and
    evaluate scores it and says so."""
    rng = np.random.default_rng(0)
    arr = rng.integers(100, 200, (256, 256)).astype(np.uint8)
    arr[rng.random(arr.shape) < 0.05] = 0
    result = api.compress_array(arr, quality=12)
    scattered = (arr == 0) & (result.reconstruction != 0)
    assert result.stats.scattered_no_signal == scattered.sum() > 3000
    assert np.abs(result.reconstruction[scattered].astype(float) - 100).max() <= 3  # the range's bottom
    metrics = evaluate_arrays(arr, result.reconstruction, kind="uint8")
    every = 10 * np.log10(255**2 / np.mean((arr.astype(float) - result.reconstruction) ** 2))
    assert metrics["coded_zeros"] == scattered.sum() and metrics["psnr_db"] == pytest.approx(every, abs=0.01)
    noisy = _noise_clipped(256, 256)  # linear: the zeros have no dB, are counted, and left out
    coded = api.compress_array(noisy, kind="intensity", quality=5)
    linear = evaluate_arrays(noisy, coded.reconstruction, kind="intensity")
    assert linear["coded_zeros"] == coded.stats.scattered_no_signal > 0


def test_declared_nodata_keeps_every_zero_and_db_codes_its_scattered_minus_inf():
    arr = _noise_clipped(256, 256)
    kept = api.compress_array(arr, kind="intensity", nodata=0.0)
    assert kept.stats.scattered_no_signal == 0
    np.testing.assert_array_equal(kept.reconstruction == 0, arr == 0)
    with pytest.raises(UnreachableTarget, match="pixels are nodata or no-signal, restored exactly at any step"):
        api.compress_array(arr, kind="intensity", nodata=0.0, target_bpp=0.25)  # says why
    with np.errstate(divide="ignore"):
        db = (10 * np.log10(arr)).astype(np.float32)  # the zeros -inf
    result = api.compress_array(db, kind="db")
    scattered = np.isneginf(db) & (np.arange(256) >= 24)[None, :]
    assert result.stats.scattered_no_signal > 0.8 * scattered.sum()
    assert np.all(np.isneginf(result.reconstruction[:, :24]))  # the fill: exact
    decoded = result.reconstruction[scattered & np.isfinite(result.reconstruction)]
    assert decoded.size == result.stats.scattered_no_signal  # finite: dark data
    assert np.median(decoded) < np.percentile(db[np.isfinite(db)], 30)  # at their (dark) neighbours' level
    dn = np.sqrt(arr * 1e6).round().astype(np.uint16)  # amplitude DN, its zeros decoded as 1 at least: not fill
    coded = api.compress_array(dn, kind="amplitude")
    assert coded.stats.scattered_no_signal > 0 and np.all(coded.reconstruction[dn > 0] >= 1)
    assert np.count_nonzero((dn == 0) & (coded.reconstruction > 0)) == coded.stats.scattered_no_signal
    assert np.all(coded.reconstruction[:, :24] == 0)


def test_a_db_products_zero_fill_is_restored_and_its_scattered_zeros_are_data():
    intensity, _ = simulate_scene(256, 256, seed=3)
    db = (10 * np.log10(intensity)).astype(np.float32)
    outside = ~footprint_rows(0, 256, 256, 256)
    db[outside] = 0  # an export that writes masked pixels as 0, no nodata
    db[100, 100:103] = 0  # 0 dB in the data: data
    result = api.compress_array(db, kind="db", target_bpp=0.5)
    assert np.all(result.reconstruction[outside] == 0)  # decoded between -8.5 and +4.7 dB while coded as data
    assert np.all(result.reconstruction[100, 100:103] != 0) and result.stats.valid_pixels == np.count_nonzero(~outside)
    np.testing.assert_array_equal(api.decompress_array(result.data), result.reconstruction)
    # evaluate leaves the fill out as the codec does (scored as kept pixels it added about 1 dB: a sweep)
    metrics = evaluate_arrays(db, result.reconstruction, kind="db")
    inside = evaluate_arrays(db, np.where(outside, np.nan, result.reconstruction), kind="db")
    assert metrics["valid_pixels"] == np.count_nonzero(~outside) and metrics["psnr_db"] == inside["psnr_db"]
    swapped = evaluate_arrays(db.astype(">f4"), result.reconstruction, kind="db")  # big-endian (netCDF3): alike
    assert swapped["valid_pixels"] == metrics["valid_pixels"]
    other = evaluate_arrays(db, np.where(outside, np.float32(-5), result.reconstruction), kind="db")
    assert other["coded_zeros"] == np.count_nonzero(outside)  # a footprint another codec filled: counted, said
    assert metric_range(np.array([-12, -10, 0, -8, -3, -15, -9], np.float32), "db") is not None  # 1-D values


def test_inspect_counts_a_db_products_zero_fill(tmp_path):
    """inspect said 0 % zeros of a float dB band with a zero-filled footprint and took its range over the fill, where
    compression puts the fill in the mask."""
    from sar_compressor.engine.inspect import inspect_input

    intensity, _ = simulate_scene(256, 256, seed=3)
    db = (10 * np.log10(intensity)).astype(np.float32)
    outside = ~footprint_rows(0, 256, 256, 256)
    db[outside] = 0
    path = tmp_path / "db.tif"
    with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=1, dtype="float32") as dst:
        dst.write(db, 1)
    summary = inspect_input(path, 1, "db")
    assert summary.zero_fraction == pytest.approx(outside.mean(), abs=0.02)
    assert summary.vmax == pytest.approx(float(db[~outside].max()), abs=1e-3)


def test_zeros_come_back_as_zeros_in_float_rasters():
    empty = api.compress_array(np.zeros((64, 64), np.float32))
    assert empty.reconstruction.dtype == np.float32 and np.all(empty.reconstruction == 0)
    assert any("no valid pixels" in w for w in empty.stats.warnings)
    np.testing.assert_array_equal(api.decompress_array(empty.data), empty.reconstruction)
    intensity, _ = simulate_scene(128, 160, seed=2)
    intensity[:, :12] = 0
    result = api.compress_array(intensity, kind="intensity")
    assert np.all(result.reconstruction[:, :12] == 0) and np.all(result.reconstruction[:, 12:] > 0)
    assert result.stats.vmin > -60 and result.stats.no_signal_pixels == 128 * 12


def _dem(shape=(160, 200)) -> np.ndarray:
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (40.0 * np.sin(x / 17.0) + 30.0 * np.cos(y / 23.0) - 10.0).astype(np.float32)


def test_negative_values_are_refused_as_backscatter_and_coded_native_with_a_warning():
    dem = _dem()
    for kind in ("intensity", "amplitude"):
        with pytest.raises(InputError, match=r"negative.*'native'"):
            api.compress_array(dem, kind=kind)
    result = api.compress_array(dem, quality=8)
    assert result.stats.kind == "native" and any("negative" in w for w in result.stats.warnings)
    assert np.mean(np.abs(result.reconstruction - dem)) < 2.0  # negatives kept, not floored
    assert result.stats.no_signal_pixels == 0  # float native: zeros are data


def _noise_subtracted(shape=(256, 320), below: float = 20) -> np.ndarray:
    """A 4-look intensity scene less a noise floor that varies across range, as thermal noise removal leaves it:
    `below` percent of the pixels (the darkest) negative, none deeper than the noise."""
    scene = simulate_scene(*shape, looks=4, seed=3)[0].astype(np.float64)
    noise = np.percentile(scene, below) * np.linspace(0.8, 1.2, shape[1])[None, :]
    return (scene - noise).astype(np.float32)


def _db_psnr(orig: np.ndarray, recon: np.ndarray) -> float:
    """PSNR in dB over the original's positive pixels, both clipped to their 0.5-99.5 % range."""
    positive = orig > 0
    db = lambda a: 10.0 * np.log10(np.maximum(a.astype(np.float64), 1e-30))  # noqa: E731
    lo, hi = np.percentile(db(orig[positive]), [0.5, 99.5])
    err = np.clip(db(recon), lo, hi) - np.clip(db(orig), lo, hi)
    return float(10.0 * np.log10((hi - lo) ** 2 / np.mean(err[positive] ** 2)))


def test_noise_subtracted_intensity_is_coded_in_db_not_refused_nor_native():
    """Thermal noise removal leaves negative intensities in dark areas: named intensity (by the user, or by a
    'sigma0' description) such a product was refused, and detected it was coded as native values: 11.5 dB of dB
    PSNR at 0.065 bpp where dB coding gives 21.6 dB at 0.082 (quality 3); detected, it was still coded native with a
    warning, 7.2-7.7 dB under JPEG 2000 on a Sentinel-1 sigma0 product with 0.5 % such values (a sweep)."""
    arr = _noise_subtracted()
    assert 0.1 < pp.negative_share(arr) < 0.3 and pp.noise_residue(arr)
    assert not pp.noise_residue(_dem())  # a DEM's negative values are as large as its positive ones
    auto = api.compress_array(arr, quality=3)  # a fifth negative: a km DEM or an index could look so; told, not taken
    assert auto.stats.kind == "native" and any("choose kind 'intensity'" in w for w in auto.stats.warnings)
    few = _noise_subtracted(below=0.5)  # as the Sentinel-1 product measured: taken for intensity without a word
    assert 0 < pp.negative_share(few) <= pp.AUTO_RESIDUE_SHARE and pp.choose_kind("float32", few).kind == "intensity"
    assert pp.choose_kind("float32", few, unit="m").kind == "native"  # a unit that is no backscatter's
    coded = api.compress_array(arr, quality=3, kind="intensity")
    assert coded.stats.kind == "intensity" and any("noise-subtracted" in w for w in coded.stats.warnings)
    assert coded.stats.vmin > -60  # the range is the positive values': negative ones lie below it
    recon = api.decompress_array(coded.data)
    assert _db_psnr(arr, recon) > _db_psnr(arr, auto.reconstruction) + 6
    assert np.mean(recon, dtype=np.float64) / np.mean(arr, dtype=np.float64) == pytest.approx(1.0, abs=0.01)
    metrics = evaluate_arrays(arr, recon, kind="intensity")
    assert metrics["range"]["vmin"] > -60 and metrics["db_rmse"] < 10
    assert pp.choose_kind("float32", arr, description="Sigma0_VV").kind == "intensity"
    pp.value_warnings("intensity", arr, "auto")  # named by its description: coded, not refused


def test_noise_subtracted_rules_leave_db_scenes_alone_and_keep_the_mean_under_the_noise():
    """A review: a bright scene in dB with a tenth of its values negative, described 'Sigma0_VV', was coded as
    intensity (refused before, with advice to choose 'db'); the sea in cross-polarisation, its signal under the
    noise, was refused even with --kind intensity; counted as zero in the block means, its negative values left the
    decoded mean 64 % high."""
    scene = simulate_scene(256, 320, looks=4, seed=3)[0].astype(np.float64)
    bright_db = (10.0 * np.log10(scene / np.median(scene)) + 10.0).astype(np.float32)
    assert 0.05 < pp.negative_share(bright_db) < 0.2 and not pp.noise_residue(bright_db)
    with pytest.raises(InputError, match="'db' if they are dB"):
        pp.value_warnings(pp.choose_kind("float32", bright_db, description="Sigma0_VV").kind, bright_db, "auto")
    assert any("choose kind 'db'" in w for w in pp.value_warnings("native", bright_db, "auto"))
    rng = np.random.default_rng(2)
    sea = (1e-3 * scene / scene.mean() + rng.normal(0.0, 2e-3, scene.shape)).astype(np.float32)  # signal < noise
    assert pp.negative_share(sea) > 0.25 and not pp.noise_residue(sea) and pp.noise_residue(sea, declared=True)
    decoded = api.decompress_array(api.compress_array(sea, quality=5, kind="intensity").data)
    assert np.mean(decoded, dtype=np.float64) / np.mean(sea, dtype=np.float64) == pytest.approx(1.0, abs=0.02)  # 1.64


def test_a_native_plateau_above_the_range_stays_one_value():
    """A review: bright pixels sharing a value were rounded to keep their linear intensity in native products too (a
    DEM's 4000 m plateau decoded as 3999.87 and 4000.87): native values have no intensity to keep."""
    dem = _dem((160, 200)) * np.float32(10.0)
    dem[:4, :6] = 4000.0  # 24 pixels: above the range (its 99.9th percentile), bright-target residuals
    decoded = api.decompress_array(api.compress_array(dem, quality=5, kind="native").data)
    assert np.unique(decoded[:4, :6]).size == 1


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_evaluate_measures_in_the_kind_the_file_was_coded_in(tmp_path, capsys):
    """evaluate had no --kind: a noise-subtracted product coded as intensity was judged as native values (no mean
    ratio, no dB)."""
    src = _write(tmp_path / "nesz.tif", _noise_subtracted())
    assert main(["-q", "compress", str(src), str(tmp_path / "n.sarz"), "--kind", "intensity"]) == 0
    assert main(["-q", "decompress", str(tmp_path / "n.sarz"), str(tmp_path / "n.tif")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(src), str(tmp_path / "n.tif"), "--kind", "intensity", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "intensity" and result["mean_ratio"] == pytest.approx(1.0, abs=0.01)
    args = ["compress", str(src), str(tmp_path / "m.sarz"), "--kind", "intensity", "--reconstruction"]
    assert main([*args, str(tmp_path / "m.tif")]) == 0  # its figures in the coded kind, not the detected one
    assert f"PSNR {result['psnr_db']:.2f} dB" in capsys.readouterr().out


def _saturated_dn(shape=(384, 448), share=0.002, seed=5) -> np.ndarray:
    """A RADARSAT-2-like uint16 amplitude DN scene (4 looks, median about 200) whose brightest `share` of pixels is
    saturated at 65535, the others below about 40000."""
    intensity = simulate_scene(*shape, looks=4, seed=seed)[0].astype(np.float64)
    amplitude = np.sqrt(intensity / np.median(intensity)) * 200.0
    dn = np.clip(np.rint(amplitude), 1, 40000)
    dn[amplitude >= np.quantile(amplitude, 1.0 - share)] = 65535
    return dn.astype(np.uint16)


def test_a_saturated_dn_product_is_amplitude_and_keeps_its_saturated_pixels_and_mean():
    """A robustness sweep's RADARSAT-2-like product (0.16 % at 65535, the rest mostly 12-1298) was taken for a
    display stretch (coded native over [1, 65535]: 13.7 dB where JPEG 2000 gave 17.4 at the same size); as
    amplitude its range's top was the saturated value (75 dB instead of 41) and its intensity mean 0.74 of the
    original's; with few saturated pixels they all decoded to 63976, the mean 0.959."""
    dn = _saturated_dn()
    assert pp.choose_kind("uint16", dn[dn > 0]).kind == "amplitude"
    result = api.compress_array(dn, quality=5)
    assert result.stats.kind == "amplitude" and result.stats.vmax < 80.0  # 65535 is 96.3 dB
    decoded = api.decompress_array(result.data)
    assert np.all(decoded[dn == 65535] == 65535)
    intensity = lambda a: np.mean(a.astype(np.float64) ** 2)  # noqa: E731
    assert intensity(decoded) / intensity(dn) == pytest.approx(1.0, abs=0.01)
    floats = dn.astype(np.float32)  # one value shared by many bright pixels, no type ceiling: rounded to keep it
    decoded = api.decompress_array(api.compress_array(floats, quality=5, kind="amplitude").data)
    saturated = dn == 65535
    assert intensity(decoded[saturated]) / intensity(floats[saturated]) == pytest.approx(1.0, abs=0.005)


def _write(path: Path, arr: np.ndarray, **profile) -> Path:
    arr = arr if arr.ndim == 3 else arr[None]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=arr.shape[2],
        height=arr.shape[1],
        count=arr.shape[0],
        dtype=arr.dtype,
        **profile,
    ) as ds:
        ds.write(arr)
    return path


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_cli_refuses_a_dem_as_amplitude_and_warns_about_photos(tmp_path, capsys):
    dem = _write(tmp_path / "dem.tif", _dem())
    out = tmp_path / "dem.sarz"
    assert main(["-q", "compress", str(dem), str(out), "--kind", "amplitude"]) == 2
    assert "negative" in capsys.readouterr().err and not out.exists()
    assert main(["-q", "compress", str(dem), str(out)]) == 0
    assert "warning:" in capsys.readouterr().err
    photo = np.random.default_rng(0).integers(1, 255, size=(3, 64, 64)).astype(np.uint8)
    rgb = _write(tmp_path / "rgb.tif", photo, photometric="RGB")
    assert main(["-q", "compress", str(rgb), str(tmp_path / "rgb.sarz"), "--band", "2"]) == 0
    assert "not SAR" in capsys.readouterr().err
    assert main(["inspect", str(dem), "--kind", "intensity"]) == 2
    assert "refused" in capsys.readouterr().out


def test_inspect_input_summarises_the_band_as_compression_sees_it(products):
    grd = inspect_input(products["grd"])
    original = _read(products["grd"])[0]
    assert grd.kind == "amplitude" and grd.dtype == "uint16" and grd.refusal is None and grd.warnings == []
    assert abs(grd.zero_fraction - np.mean(original == 0)) < 0.01 and grd.vmin > 0
    twin = inspect_input(products["grd_nodata"])
    assert twin.zero_fraction == 0 and abs(twin.nodata_fraction - np.mean(original == 0)) < 0.01
    assert inspect_input(products["display"]).kind == "native"


def test_evaluate_excludes_no_signal_fill():
    arr = simulate_product(256, 256, "grd", seed=6).astype(np.float32)
    noisy = np.where(arr > 0, arr * np.float32(1.3), 0).astype(np.float32)
    filled = evaluate_arrays(arr, noisy, kind="amplitude")
    twin = evaluate_arrays(arr, noisy, kind="amplitude", nodata=0)
    assert filled["valid_pixels"] == np.count_nonzero(arr) == twin["valid_pixels"]
    assert filled["psnr_db"] == pytest.approx(twin["psnr_db"])
    db = np.where(arr > 0, np.float32(-12.0), np.float32(0.0))  # a float dB band's zero-filled footprint: fill,
    assert evaluate_arrays(db, db + 1, kind="db")["valid_pixels"] == np.count_nonzero(arr)  # as the codec finds it
    db[100, 100:103] = 0.0  # 0 dB in the data: data
    assert evaluate_arrays(db, db + 1, kind="db")["valid_pixels"] == np.count_nonzero(arr)


@settings(max_examples=60, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 40))))
def test_mask_coding_round_trips(mask):
    np.testing.assert_array_equal(decode_mask(encode_mask(mask), mask.shape, "mask"), mask)
    codes = (np.arange(int(mask.sum())) % 5).astype(np.uint8)
    np.testing.assert_array_equal(decode_codes(encode_codes(codes), codes.size, "codes"), codes)


def test_mask_coding_refuses_what_does_not_fit_and_is_cheap_on_a_footprint():
    mask = ~footprint_rows(0, 1024, 1024, 1024)
    data = encode_mask(mask)
    assert 8 * len(data) / mask.size < 0.002  # measured 188 bytes: 0.0014 bpp
    assert len(encode_codes(np.full(int(mask.sum()), 4, np.uint8))) == 1
    with pytest.raises(ContainerError):
        decode_mask(data, (1024, 100), "mask")
    with pytest.raises(ContainerError):
        decode_mask(zlib.compress(b"\x02\x05"), (1, 10), "mask")  # one change: a run that never ends


def test_bench_products_rows_run(tmp_path):
    from sar_compressor.bench import jpeg2000, products

    if not jpeg2000.available():
        pytest.skip("GDAL has no JP2OpenJPEG driver")
    result = products.run(tmp_path, 256, log=lambda line: None, targets=(0.5,))
    for rows in result["rows"].values():
        assert [r["codec"] for r in rows] == ["ours", "JPEG 2000"]
        assert all(abs(r["bpp"] - 0.5) < 0.05 and r["psnr_db"] > 15 for r in rows)
    assert result["domains"]["display"].startswith("uint8") and result["domains"]["grd"].startswith("dB")


# --------------------------------------------------------------------------- GDAL masks and colour interpretation


def _masked(path: Path, values: np.ndarray, valid: np.ndarray, **profile) -> Path:
    """A raster with an internal per-dataset mask (GDAL_TIFF_INTERNAL_MASK) and no nodata value."""
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        _write(path, values, **profile)
        with rasterio.open(path, "r+") as ds:
            ds.write_mask(valid.astype(np.uint8) * 255)
    return path


def _chunks(path: Path) -> list[bytes]:
    from sar_compressor.engine.codec.format.container import ContainerReader

    with ContainerReader(path) as reader:
        return [reader.read_chunk(i) for i in range(len(reader.chunk_lengths))]


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_gdal_mask_is_read_as_invalid_pixels_like_nan(tmp_path):
    """Masked pixels (garbage under an internal mask, no nodata) are coded and measured as NaN nodata pixels would
    be: the same chunks as the raster with NaN there and a NaN nodata value, NaN decoded there and flagged as
    nodata (QGIS's statistics skip them), the same figures."""
    intensity, _ = simulate_scene(*SIZE, looks=2, seed=4)
    valid = np.ones(SIZE, bool)
    valid[:, :150] = False
    valid[300:, 400:] = False
    garbage = np.where(valid, intensity, 0.5).astype(np.float32)
    masked = _masked(tmp_path / "masked.tif", garbage, valid, tiled=True, blockxsize=256, blockysize=256)
    twin = _write(tmp_path / "nan.tif", np.where(valid, intensity, np.nan).astype(np.float32), nodata=np.nan)
    figures = {}
    for name, src in (("masked", masked), ("nan", twin)):
        out, recon = tmp_path / f"{name}.sarz", tmp_path / f"{name}_r.tif"
        api.compress_file(src, out, reconstruction=recon)
        api.decompress_file(out, tmp_path / f"{name}_d.tif")
        decoded, profile = _read(tmp_path / f"{name}_d.tif")
        np.testing.assert_array_equal(np.isnan(decoded), ~valid)
        assert np.isnan(profile["nodata"])
        figures[name] = evaluate_files(src, recon)
    assert _chunks(tmp_path / "masked.sarz") == _chunks(tmp_path / "nan.sarz")
    assert figures["masked"]["valid_pixels"] == np.count_nonzero(valid)
    assert figures["masked"]["psnr_db"] == figures["nan"]["psnr_db"]
    assert inspect_input(masked).nodata_fraction == pytest.approx(1 - valid.mean(), abs=0.02)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_an_alpha_band_masks_its_product_and_stays_an_alpha_band(tmp_path):
    from rasterio.enums import ColorInterp

    grd = simulate_product(*SIZE, "grd", seed=5)
    gray = np.clip(grd // 64, 0, 255).astype(np.uint8)
    alpha = np.where(grd > 0, 255, 0).astype(np.uint8)
    gray[alpha == 0] = 77  # what an alpha band hides
    src = _write(tmp_path / "quicklook.tif", np.stack([gray, alpha]), photometric="MINISBLACK", alpha="UNSPECIFIED")
    with rasterio.open(src, "r+") as ds:
        ds.colorinterp = [ColorInterp.gray, ColorInterp.alpha]
    out, recon, warnings = tmp_path / "q.sarz", tmp_path / "q_r.tif", []
    api.compress_file(src, out, reconstruction=recon, warn=warnings.append)
    assert warnings == []  # the alpha band is coded, but it is no SAR data: no "constant raster" about it
    api.decompress_file(out, tmp_path / "q_d.tif")
    for path in (recon, tmp_path / "q_d.tif"):
        with rasterio.open(path) as ds:
            assert [ci.name for ci in ds.colorinterp] == ["gray", "alpha"]
            decoded = ds.read()
        np.testing.assert_array_equal(decoded[1], alpha)
        assert np.all(decoded[0][alpha == 0] == 0)  # hidden pixels come back as no-signal fill, not coded


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_mask_no_value_can_carry_is_coded_with_a_warning(tmp_path, capsys):
    dem = _dem()
    valid = np.ones(dem.shape, bool)
    valid[:40] = False
    src = _masked(tmp_path / "dem.tif", dem.astype(np.int16), valid)
    assert main(["compress", str(src), str(tmp_path / "dem.sarz")]) == 0
    assert "band 1: a GDAL mask" in capsys.readouterr().err
    plain = _write(tmp_path / "plain.tif", np.full((8, 8), 3.0, np.float32))
    api.compress_file(plain, tmp_path / "plain.sarz")
    assert "color_interp" not in json.dumps(api.read_header(tmp_path / "plain.sarz"))  # plain rasters: as before


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_masks_on_cint16_and_on_an_integer_band_with_a_nodata_value(tmp_path):
    """A Sentinel-1 SLC (CInt16) with a mask failed to open ('complex_int16' is no numpy type); an int16 band with a
    nodata value and a mask had its masked pixels coded as data (its nodata value marks them)."""
    rng = np.random.default_rng(3)
    valid = np.ones((64, 80), bool)
    valid[:, :16] = False
    slc = tmp_path / "slc.tif"
    z = rng.integers(-900, 900, (64, 80)) + 1j * rng.integers(-900, 900, (64, 80))
    profile = {"driver": "GTiff", "width": 80, "height": 64, "count": 1, "dtype": "complex_int16"}
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(slc, "w", **profile) as ds:
        ds.write(z.astype("complex64"), 1)
        ds.write_mask(valid.astype(np.uint8) * 255)
    api.compress_file(slc, tmp_path / "slc.sarz")
    api.decompress_file(tmp_path / "slc.sarz", tmp_path / "slc_d.tif")
    np.testing.assert_array_equal(np.isnan(_read(tmp_path / "slc_d.tif")[0]), ~valid)
    dem = np.where(valid, _dem((64, 80)), 1234).astype(np.int16)
    src = _masked(tmp_path / "dem.tif", dem, valid, nodata=-32768)
    warnings: list[str] = []
    api.compress_file(src, tmp_path / "dem.sarz", warn=warnings.append)
    api.decompress_file(tmp_path / "dem.sarz", tmp_path / "dem_d.tif")
    assert not any("GDAL mask" in w for w in warnings)
    assert np.all(_read(tmp_path / "dem_d.tif")[0][:, :16] == -32768)
    assert evaluate_files(src, src)["valid_pixels"] == np.count_nonzero(valid)  # measured as coded, both sides


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_metadata_that_cannot_be_carried_is_left_out_not_fatal(tmp_path):
    """An incomplete RPC domain (rasterio cannot parse it) and a json: domain (it would split into nonsense items)
    are left out; the raster still compresses, as it did before they were carried."""
    from sar_compressor.engine.io.raster_io import open_info

    src = _write(tmp_path / "odd.tif", np.ones((32, 40), np.float32))
    with rasterio.open(src, "r+") as ds:
        ds.update_tags(ns="RPC", LINE_OFF="10", SAMP_OFF="12")  # the rest of the coefficients missing
        ds.update_tags(ns="json:META", **{'{"a"': "1}"})
    info = open_info(src)
    assert info.rpcs is None and "json:META" not in info.domains
    api.compress_file(src, tmp_path / "odd.sarz")


def _db_scene(shape=(256, 320), seed=5) -> np.ndarray:
    """A simulated 4-look scene in dB."""
    intensity, _ = simulate_scene(*shape, looks=4, seed=seed)
    return (10.0 * np.log10(np.maximum(intensity, 1e-6))).astype(np.float32)


def _scaled_product(path: Path, db: np.ndarray, **band) -> Path:
    """`db` stored as an int16 dB x 100 product (nodata -32768 over the first 40 columns), with GDAL band
    metadata (`scale`, `offset`, `unit`, `description`)."""
    raw = np.round(db * 100.0).astype(np.int16)
    raw[:, :40] = -32768
    _write(path, raw, nodata=-32768)
    with rasterio.open(path, "r+") as ds:
        if "scale" in band:
            ds.scales, ds.offsets = (band["scale"],), (band.get("offset", 0.0),)
        if "unit" in band:
            ds.units = (band["unit"],)
        if "description" in band:
            ds.set_band_description(1, band["description"])
    return path


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_db_x_100_integer_product_with_its_scale_is_coded_in_db_and_written_back_raw(tmp_path):
    """GDAL's scale and offset say what the pixels mean: an int16 dB x 100 product (scale 0.01) is coded as the
    dB it holds, as its float32 twin is, and decodes to int16 dB x 100 with its nodata, scale and unit. Its raw
    hundreds were coded as dB before (format 12): refused as negative backscatter with a 'Sigma0' description,
    coded 'native' without one (mean backscatter off by 3-11 %), and crashed the survey with kind 'db'."""
    from sar_compressor.engine.codec.format.container import FORMAT_VERSION, read_header

    db = _db_scene()
    src = _scaled_product(tmp_path / "db100.tif", db, scale=0.01, unit="dB", description="Sigma0_VV")
    twin = _write(tmp_path / "db.tif", np.where(np.arange(db.shape[1]) < 40, np.nan, db).astype(np.float32))
    stats = api.compress_file(src, tmp_path / "db100.sarz", quality=6)
    api.compress_file(twin, tmp_path / "db.sarz", quality=6)
    assert stats.kind == "db"
    header = read_header(tmp_path / "db100.sarz")
    assert header["format_version"] == FORMAT_VERSION == 13 and header["bands"][0]["scale"] == 0.01
    assert read_header(tmp_path / "db.sarz")["format_version"] == 12  # no scale: the format 0.6 reads
    api.decompress_file(tmp_path / "db100.sarz", tmp_path / "db100_d.tif")
    api.decompress_file(tmp_path / "db.sarz", tmp_path / "db_d.tif")
    decoded, profile = _read(tmp_path / "db100_d.tif")
    with rasterio.open(tmp_path / "db100_d.tif") as ds:
        assert ds.dtypes[0] == "int16" and ds.scales == (0.01,) and ds.units == ("dB",) and ds.nodata == -32768
    np.testing.assert_array_equal(decoded[:, :40], -32768)
    twin_decoded = _read(tmp_path / "db_d.tif")[0]
    error, twin_error = (np.mean(np.abs(d[:, 40:] - db[:, 40:])) for d in (decoded / 100.0, twin_decoded))
    assert abs(error - twin_error) < 0.03 * twin_error  # dB errors as the float32 twin's
    result = evaluate_files(src, tmp_path / "db100_d.tif")
    assert result["kind"] == "db" and abs(result["mean_ratio"] - 1.0) < 0.01
    assert abs(result["psnr_db"] - evaluate_files(twin, tmp_path / "db_d.tif")["psnr_db"]) < 0.05


def test_a_file_of_format_12_decodes_its_raw_values_whatever_its_scale_says():
    """Format 12 and below coded a scaled band's raw values: their layouts apply no scaling."""
    from sar_compressor.engine.codec.format.container import read_header
    from sar_compressor.engine.codec.format.sarz_header import layouts_from_header

    header = read_header(api.compress_array(np.ones((16, 16), np.float32)).data)
    header["bands"][0].update(scale=0.01, offset=-50.0)
    for version, scaling in ((12, pp.IDENTITY), (13, (0.01, -50.0))):
        header["format_version"] = version
        assert layouts_from_header(header)[0][0].scaling == scaling


@pytest.mark.parametrize(
    ("band", "tags", "kind"),
    [
        ({"unit": "dB", "description": "Gamma0_VV"}, {}, "db"),  # the unit names the values' unit
        ({"description": "Sigma0_VV"}, {}, "db"),  # a quantity, not a unit: the values say dB
        ({"unit": "linear"}, {"SOURCE_UNIT": "converted from dB"}, "intensity"),
        ({}, {"CALIBRATION_CONSTANT_DB": "-83.0"}, "amplitude"),  # a constant in dB says nothing of the pixels
        ({"unit": "amplitude"}, {}, "amplitude"),
    ],
)
def test_the_band_unit_comes_first_and_words_are_checked_against_the_values(band, tags, kind):
    db = _db_scene((64, 80))
    values = db if kind == "db" else (10.0 ** (db / 20.0) * (300.0 if tags else 1.0))
    dtype = "uint16" if "CALIBRATION_CONSTANT_DB" in tags else "float32"
    choice = pp.choose_kind(dtype, values.astype(dtype).ravel(), band.get("description"), tags, band.get("unit"))
    assert choice.kind == kind, choice.reason


def test_values_no_db_can_be_are_refused_before_any_work(tmp_path, capsys):
    """10**(dB/10) overflows float32 beyond 385 dB: a dB x 100 product without its scale (or an undeclared 9999
    fill) crashed the survey with a traceback after 'db' was chosen; it is refused, naming the fix."""
    raw = np.round((_db_scene((64, 80)) + 10.0) * 100.0).astype(np.int16)  # up to 12 dB: 1200
    with pytest.raises(InputError, match=r"cannot be dB.*scale"):
        api.compress_array(raw, kind="db")
    src = _write(tmp_path / "db100.tif", raw)
    with rasterio.open(src, "r+") as ds:
        ds.set_band_description(1, "sigma0 in dB")
    assert main(["-q", "compress", str(src), str(tmp_path / "o.sarz"), "--kind", "db"]) == 2
    assert "cannot be dB" in capsys.readouterr().err and not (tmp_path / "o.sarz").exists()
    assert api.compress_array(raw).stats.kind == "native"  # the words are not taken for values no dB can be


def test_the_quality_ladder_stops_at_one_step_of_a_scaled_integer_band():
    """A dB x 100 band holds 0.01 dB: no quality codes finer than that (as one DN for a native band)."""
    from sar_compressor.engine.codec.passes.quality import step_floor

    db, rng = np.array([-20.0, -10.0, 0.0]), pp.Range(-30.0, 10.0)
    assert step_floor("db", "int16", db, rng, scale=0.01) == pytest.approx(0.01 / 40.0)
    assert step_floor("db", "float32", db, rng, scale=0.01) == 0.0
    assert step_floor("native", "int16", db, rng, scale=0.5) == pytest.approx(0.5 / 40.0)


def test_a_dark_population_apart_from_the_rest_is_named_with_what_it_costs():
    """Fill at a tiny value (1e-10 times the scene, no nodata declared) splits the range in two: quality steps are
    fractions of it, so the scene itself is coded coarsely; the warning says so and how to avoid it."""
    scene, _ = simulate_scene(256, 256, looks=1, seed=4)
    dark = scene.copy()
    dark[:, :128] *= 1e-10
    plain, split = api.compress_array(scene), api.compress_array(dark)
    assert not any("under the rest" in w for w in plain.stats.warnings)
    (warning,) = [w for w in split.stats.warnings if "under the rest" in w]
    assert "50.0 % of the valid pixels" in warning and "nodata" in warning


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_the_previews_read_masks_and_scales_as_the_codec(tmp_path):
    """The dock's comparison and Evaluate's report read through previews: a GDAL mask showed as data on the
    original's side only, and a dB x 100 band's raw hundreds would be shown as dB."""
    from sar_compressor.algorithms.preview import read_preview

    values = np.full((48, 64), 0.5, np.float32)
    valid = np.ones(values.shape, bool)
    valid[:, :16] = False
    preview = read_preview(str(_masked(tmp_path / "masked.tif", values, valid)), 1)
    np.testing.assert_array_equal(np.isnan(preview.data), ~valid)
    db = _db_scene((48, 64))
    preview = read_preview(str(_scaled_product(tmp_path / "db100.tif", db, scale=0.01)), 1)
    np.testing.assert_allclose(preview.data[:, 40:], db[:, 40:], atol=0.006)
    assert np.isnan(preview.data[:, :40]).all()


def test_a_constant_integer_band_is_not_said_to_have_a_long_tail():
    choice = pp.choose_kind("int16", np.full(100, 1234, np.int16))
    assert choice.kind == "amplitude" and "one value" in choice.reason and "tail" not in choice.reason


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_scaled_bands_read_alike_everywhere(tmp_path):
    """A review of the scaled bands: inspect (and the dock's summary) judged the raw values, a complex band's
    scale went onto its decoded intensity (evaluate off by the scale), a scaled uint8 was measured in 0-255, a NaN
    scale crashed the header after the whole coding, and the VRT had no int32."""
    from sar_compressor.engine.codec.format.container import read_header
    from sar_compressor.engine.gdal_vrt import write_vrt

    db = _db_scene((64, 80))
    src = _scaled_product(tmp_path / "db100.tif", db, scale=0.01, unit="dB")
    summary = inspect_input(src)
    assert summary.kind == "db" and summary.refusal is None and not summary.warnings
    assert inspect_input(src, kind="db").refusal is None
    z = (np.sqrt(10.0 ** (db / 10.0)) * np.exp(1j * 0.3)).astype(np.complex64)
    slc = _write(tmp_path / "slc.tif", z)
    with rasterio.open(slc, "r+") as ds:
        ds.scales = (2.0,)
    api.compress_file(slc, tmp_path / "slc.sarz")
    api.decompress_file(tmp_path / "slc.sarz", tmp_path / "slc_d.tif")
    with rasterio.open(tmp_path / "slc_d.tif") as ds:
        assert ds.scales == (1.0,)  # intensity, not the SLC's scaled values
    assert abs(evaluate_files(slc, tmp_path / "slc_d.tif")["mean_ratio"] - 1.0) < 0.02
    u8 = _write(tmp_path / "u8.tif", np.clip(np.round((db + 30.0) / 0.2), 1, 255).astype(np.uint8))
    with rasterio.open(u8, "r+") as ds:
        ds.scales, ds.offsets, ds.units = (0.2,), (-30.0,), ("dB",)
    api.compress_file(u8, tmp_path / "u8.sarz")
    api.decompress_file(tmp_path / "u8.sarz", tmp_path / "u8_d.tif")
    assert evaluate_files(u8, tmp_path / "u8_d.tif")["kind"] == "db"  # as coded, not the 0-255 display rule
    nan_scale = _write(tmp_path / "nan.tif", (10.0 ** (db / 10.0)).astype(np.float32))
    with rasterio.open(nan_scale, "r+") as ds:
        ds.scales = (float("nan"),)
    api.compress_file(nan_scale, tmp_path / "nan.sarz")
    assert read_header((tmp_path / "nan.sarz").read_bytes())["bands"][0]["scale"] is None
    i32 = _write(tmp_path / "i32.tif", np.round(db * 1000).astype(np.int32))
    with rasterio.open(i32, "r+") as ds:
        ds.scales, ds.units = (0.001,), ("dB",)
    api.compress_file(i32, tmp_path / "i32.sarz")
    (vrt,) = write_vrt(tmp_path / "i32.sarz")[:1]
    assert 'dataType="Int32"' in vrt.read_text()


def test_a_db_band_with_an_undeclared_fill_far_below_zero_stays_db():
    """-9999 is only a very dark dB pixel (10**(dB/10) goes to 0): it made a dB band native (71 dB RMSE) and
    --kind db refused; only values above 385 dB overflow."""
    db = _db_scene((64, 80))
    db[:2] = -9999.0
    assert pp.choose_kind("float32", db.ravel(), "VV backscatter in dB").kind == "db"
    assert api.compress_array(db, kind="db").stats.kind == "db"


def test_the_gap_warning_names_the_smaller_population():
    """Bright outliers far above the scene are the population apart, not the scene below them."""
    scene, _ = simulate_scene(256, 256, looks=1, seed=4)
    scene.flat[::100] = 1e8 * np.random.default_rng(1).uniform(1, 2, scene.flat[::100].size)  # not one value: no fill
    (warning,) = [w for w in api.compress_array(scene).stats.warnings if "the rest" in w]
    assert warning.startswith("1.0 % of the valid pixels lie at") and "dB over the rest" in warning


def _nodata_0_product(path: Path, db: np.ndarray, border: int) -> tuple[Path, np.ndarray]:
    """`db` stored as int16 dB x 100 (scale 0.01, unit dB) with nodata 0 over the first `border` columns, valid
    pixels off 0; the path and the raw values."""
    raw = np.round(db * 100.0).astype(np.int16)
    raw[raw == 0] = 1
    raw[:, :border] = 0
    src = _write(path, raw, nodata=0)
    with rasterio.open(src, "r+") as ds:
        ds.scales, ds.units = (0.01,), ("dB",)
    return src, raw


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_no_valid_pixel_decodes_to_the_value_that_marks_nodata(tmp_path):
    """A dB x 100 band with nodata 0: 0 dB is raw 0, and valid pixels decoded onto it read back as nodata."""
    src, raw = _nodata_0_product(tmp_path / "nd0.tif", _db_scene((128, 160)) + 12.0, border=16)  # around 0 dB
    api.compress_file(src, tmp_path / "nd0.sarz", quality=3)
    api.decompress_file(tmp_path / "nd0.sarz", tmp_path / "nd0_d.tif")
    decoded = _read(tmp_path / "nd0_d.tif")[0]
    np.testing.assert_array_equal(decoded == 0, raw == 0)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_scaled_integers_and_an_undeclared_dark_fill_are_read_as_db(tmp_path):
    """A scaled uint8 is no display product (its scale says what it holds), and a dB x 100 product with 15 % of
    undeclared -99.99 dB fill is dB (it was coded native, evaluate measured it in dB: mean 12 % off), the fill
    found and restored exactly; evaluate detects the kind over the whole raster as the codec does, not on a
    central window."""
    db = _db_scene((128, 160))
    u8 = np.clip(np.round((db + 40.0) / 0.2), 1, 255).astype(np.uint8)
    assert pp.choose_kind("uint8", (u8 * 0.2 - 40.0).ravel(), scaled=True).kind == "db"
    raw = np.round(db * 100.0).astype(np.int16)
    raw[:, :24] = -9999  # the edges: outside a central window
    src = _write(tmp_path / "fill.tif", raw)
    with rasterio.open(src, "r+") as ds:
        ds.scales = (0.01,)
    warnings: list[str] = []
    stats = api.compress_file(src, tmp_path / "fill.sarz", warn=warnings.append)
    assert stats.kind == "db" and any("hold -9999, far from the rest: taken for a fill" in w for w in warnings)
    api.decompress_file(tmp_path / "fill.sarz", tmp_path / "fill_d.tif")
    assert (_read(tmp_path / "fill_d.tif")[0][:, :24] == -9999).all()
    with rasterio.open(src) as ds:
        from sar_compressor.engine.metrics import detect_file_kind

        assert detect_file_kind(ds) == "db"


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_paletted_band_is_refused_before_any_work(tmp_path, capsys):
    """A colour table makes a band's values classes (a flood map): lossy coding would turn them into other classes."""
    classes = np.repeat(np.arange(4, dtype=np.uint8), 16 * 64).reshape(64, 64)
    src = _write(tmp_path / "flood.tif", classes)
    with rasterio.open(src, "r+") as ds:
        ds.write_colormap(1, {0: (0, 0, 0, 255), 1: (0, 0, 255, 255), 2: (0, 255, 0, 255), 3: (255, 0, 0, 255)})
    with pytest.raises(InputError, match="colour table"):
        api.compress_file(src, tmp_path / "flood.sarz")
    assert inspect_input(src).refusal.startswith("band 1 has a colour table")
    assert main(["-q", "compress", str(src), str(tmp_path / "f.sarz")]) == 2 and not list(tmp_path.glob("*.sarz"))


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_evaluate_judges_a_raster_with_overviews_as_the_codec_does(tmp_path):
    """A decimated read is served from a file's overviews (averaged pixels, a shorter upper tail): a uint16
    amplitude product with overviews was judged display-scaled by evaluate while the codec coded it as amplitude."""
    from rasterio.enums import Resampling

    from sar_compressor.engine.metrics import detect_file_kind

    rng, n = np.random.default_rng(5), 1536  # over a million pixels: a sample needs every other one
    texture = rng.gamma(2.0, 0.5, (n // 8, n // 8)).repeat(8, 0).repeat(8, 1)
    amplitude = np.sqrt(rng.gamma(1.0, 1.0, (n, n)) * texture) * 120.0  # 99.9th percentile 5x the median
    src = _write(tmp_path / "dn.tif", np.clip(np.round(amplitude), 1, 65535).astype(np.uint16), tiled=True)
    with rasterio.open(src, "r+") as ds:
        ds.build_overviews([2, 4, 8], Resampling.average)  # 3.2x in the first: "display-scaled"
    with rasterio.open(src) as ds:
        assert detect_file_kind(ds) == inspect_input(src).kind == "amplitude"


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_overviews_keep_valid_cells_off_the_nodata_value_and_a_scaled_uint8_is_inspected_as_coded(tmp_path):
    """The overview path moves decoded values off the nodata value as the full decode does; inspect passes the
    scale to the kind rule (a scaled uint8 is no display product)."""
    from sar_compressor.engine.codec.passes.window_decode import SarzWindowReader

    db = _db_scene((256, 320)) + 12.0  # around 0 dB, raw 0
    src, _ = _nodata_0_product(tmp_path / "nd0.tif", db, border=32)
    api.compress_file(src, tmp_path / "nd0.sarz", quality=2)
    with SarzWindowReader(tmp_path / "nd0.sarz") as reader:
        for level in (1, 2, 3):
            rows, cols = reader.level_shape(level)
            cells = reader.read((0, 0, cols, rows), level)
            f = 1 << level
            covered = np.zeros((rows, cols), bool)
            covered[:, (32 + f - 1) // f :] = True  # cells with valid pixels only
            assert not np.any(cells[covered] == 0), level
    u8 = _write(tmp_path / "u8.tif", np.clip(np.round((db - 12.0 + 40.0) / 0.2), 1, 255).astype(np.uint8))
    with rasterio.open(u8, "r+") as ds:
        ds.scales, ds.offsets = (0.2,), (-40.0,)
    assert inspect_input(u8).kind == "db"


def test_keep_off_markers_finds_a_free_value_between_side_by_side_markers():
    from types import SimpleNamespace

    from sar_compressor.engine.codec.radiometry import keep_off_markers

    out = np.array([0, 1, 2, 255], np.uint16)
    keep_off_markers(SimpleNamespace(kind="amplitude", dtype="uint16", nodata=1.0), out)  # fill 0 beside nodata 1
    np.testing.assert_array_equal(out, [2, 2, 2, 255])


def test_warnings_name_the_kind_a_mistaken_one_hides():
    """A bright scene in dB (a third of its values negative) was coded native with 'choose another kind if that
    is wrong' (its mean 0.884 of the original's, where kind db keeps it); linear intensity given as --kind db coded
    to noise (PSNR 4.1 dB) without a word."""
    bright_db = (10.0 * np.log10(simulate_scene(96, 128, looks=4, seed=6)[0].astype(np.float64)) + 16.0).astype(
        np.float32
    )
    assert 0.2 < pp.negative_share(bright_db) < 0.5
    assert any("choose kind 'db'" in w for w in pp.value_warnings("native", bright_db, "auto"))
    linear = simulate_scene(96, 128, looks=4, seed=6)[0].astype(np.float32) * np.float32(1e-4)
    assert any("if they are linear intensity" in w for w in pp.value_warnings("db", linear, "db"))
    assert not any("linear intensity" in w for w in pp.value_warnings("db", bright_db, "db"))
    assert not any("linear intensity" in w for w in pp.value_warnings("db", np.zeros(64, np.float32), "db"))


def test_esri_float32_minimum_nodata_in_an_envi_header_masks_its_fill(tmp_path):
    """An ENVI header's `data ignore value = -3.40282346639e+38` (ESRI's float32 minimum, a double just past it)
    matched none of the float32 fill pixels: the fill was coded as data (the band taken for native values) and the
    valid region decoded with a mean of -inf. The value is read as the band's type holds it."""
    import re

    from rasterio.transform import from_origin

    arr = np.random.default_rng(0).gamma(4, 0.05 / 4, (128, 128)).astype(np.float32)
    arr[:, :40] = np.float32(-3.40282346639e38)
    src = tmp_path / "in.img"
    profile = dict(driver="ENVI", width=128, height=128, count=1, dtype="float32", nodata=-1.0)
    with rasterio.open(src, "w", crs="EPSG:32633", transform=from_origin(5e5, 5e6, 10, 10), **profile) as ds:
        ds.write(arr, 1)
    header = (tmp_path / "in.hdr").read_text()
    (tmp_path / "in.hdr").write_text(
        re.sub(r"data ignore value = .*", "data ignore value = -3.40282346639e+38", header)
    )
    (tmp_path / "in.img.aux.xml").unlink(missing_ok=True)
    stats = api.compress_file(src, tmp_path / "o.sarz", quality=8)
    assert stats.kind == "intensity"
    api.decompress_file(tmp_path / "o.sarz", tmp_path / "o.tif")
    with rasterio.open(tmp_path / "o.tif") as ds:
        out = ds.read(1)
        assert ds.nodata == float(np.float32(-3.40282346639e38))
    assert np.all(out[:, :40] == np.float32(ds.nodata))
    assert np.mean(out[:, 40:], dtype=np.float64) == pytest.approx(np.mean(arr[:, 40:], dtype=np.float64), rel=0.02)


def _footprint_scene(tmp_path: Path, name: str, fill: float, kind: str = "db", nodata=None) -> tuple[Path, np.ndarray]:
    """A 4-look 256x320 scene in `kind` (dB or linear intensity) whose footprint's outside holds `fill`."""
    intensity, _ = simulate_scene(256, 320, looks=4, seed=6)
    values = (10 * np.log10(intensity) if kind == "db" else intensity).astype(np.float32)
    values[~footprint_rows(0, 256, 256, 320)] = fill
    path = tmp_path / f"{name}.tif"
    profile = dict(driver="GTiff", height=256, width=320, count=1, dtype="float32", nodata=nodata, crs="EPSG:32631")
    with rasterio.open(path, "w", transform=from_origin(500000, 4500000, 10, 10), **profile) as ds:
        ds.write(values, 1)
    return path, values


@pytest.mark.parametrize(
    "fill, kind",
    [
        (-9999.0, "db"),
        (float(np.finfo(np.float32).min), "db"),
        (-100.0, "db"),
        (1e-10, "intensity"),
        (-9999.0, "intensity"),
    ],
)
def test_an_undeclared_fill_is_declared_and_restored_exactly(tmp_path, fill, kind):
    """A footprint filled with a sentinel and no nodata value: coded as data it stretched the range (a dB scene
    with -9999: 16.7 dB at 0.5 bpp where a NaN fill gave 26.5; its fill decoded at the range's bottom); float32's
    lowest value failed in pass 1. It is found, restored exactly and declared as the decoded file's nodata."""
    src, values = _footprint_scene(tmp_path, "filled", fill, kind)
    twin, _ = _footprint_scene(tmp_path, "twin", np.nan, kind, nodata=float("nan"))
    said: list[str] = []
    stats = api.compress_file(src, tmp_path / "f.sarz", quality=6, reconstruction=tmp_path / "f.tif", warn=said.append)
    api.compress_file(twin, tmp_path / "t.sarz", quality=6, reconstruction=tmp_path / "t.tif")
    assert any(f"hold {fill:g}, far from the rest: taken for a fill" in w for w in said)
    assert stats.kind == kind and inspect_input(src).kind == kind
    decoded, profile = _read(tmp_path / "f.tif")
    assert profile["nodata"] == pytest.approx(fill, rel=1e-7)
    outside = ~footprint_rows(0, 256, 256, 320)
    np.testing.assert_array_equal(decoded[outside], values[outside])
    np.testing.assert_array_equal(decoded[~outside], _read(tmp_path / "t.tif")[0][~outside])  # coded as with NaN
    metrics = evaluate_files(src, tmp_path / "f.tif")
    assert metrics["valid_pixels"] == np.count_nonzero(~outside) and not metrics["warnings"]
    assert metrics["psnr_db"] == pytest.approx(evaluate_files(twin, tmp_path / "t.tif")["psnr_db"], abs=1e-6)


def test_values_a_scene_reaches_are_not_taken_for_fill(tmp_path):
    """No fill where the smallest value is a scene's own: a dB floor its speckle reaches, one dark pixel, a native
    band's sea level (0) or a value within its span."""
    from sar_compressor.engine.codec.passes.survey import undeclared_fill

    intensity, _ = simulate_scene(256, 256, looks=4, seed=2)
    db = 10 * np.log10(intensity)
    floor = np.percentile(db, 3)
    info = api.open_info(_footprint_scene(tmp_path, "s", -9999.0)[0])
    assert undeclared_fill(info, np.maximum(db, floor).ravel(), "auto") is None  # 3 % at a floor: data
    one = db.ravel().copy()
    one[:3] = -9999.0  # fewer than FILL_MIN_COUNT
    assert undeclared_fill(info, one, "auto") is None
    dem = np.concatenate([np.zeros(5000), np.linspace(1, 3000, 20000)])
    assert undeclared_fill(info, dem, "native") is None
    near = np.concatenate([np.full(500, -500.0), np.linspace(0, 3000, 20000)])  # under the bottom, within the span
    assert undeclared_fill(info, near, "native") is None
    far = np.concatenate([np.full(500, -32768.0), np.linspace(0, 3000, 20000)])
    assert undeclared_fill(info, far, "native") == -32768.0
    single_look = encode_intensity(simulate_scene(512, 512, looks=1, seed=2)[0], "amplitude", "uint16")
    assert np.count_nonzero(single_look == 1) >= 16  # speckle's fades clipped to DN 1: data, 6 dB under DN 2
    assert undeclared_fill(replace(info, dtype="uint16"), single_look.ravel(), "auto") is None


def test_a_fill_at_the_top_or_near_the_data_is_found_and_a_display_band_is_left_alone(tmp_path):
    """A uint16 DN block at 65535 (9 % of it: more than a sensor's saturated targets) decoded between 30761 and 65535,
    and a third of a dB scene at -50 where its speckle reaches -40 decoded between -50 and -33 (a robustness sweep).
    Noise subtraction's negative values no longer hide a 1e-10 fill; uint8 display values are never fill."""
    from sar_compressor.engine.codec.passes.survey import undeclared_fill

    intensity, _ = simulate_scene(256, 320, looks=4, seed=7)
    dn = encode_intensity(intensity * 0.1, "amplitude", "uint16")  # its brightest 8889: 17 dB under the block
    dn[:80, :90] = 65535
    stats = api.compress_array(dn, quality=5)
    np.testing.assert_array_equal(stats.reconstruction[:80, :90], 65535)
    assert stats.stats.bands[0]["nodata"] == 65535.0 and stats.stats.kind == "amplitude"
    db = np.maximum(_db_scene(seed=8), -40.0)
    db[:, :110] = -50.0
    near = api.compress_array(db, quality=5, kind="db")
    np.testing.assert_array_equal(near.reconstruction[:, :110], -50.0)
    noisy = intensity - 0.002 * np.random.default_rng(3).random(intensity.shape)  # some noise-subtracted negatives
    noisy[:, :40] = 1e-10
    info = api.open_info(_footprint_scene(tmp_path, "n", 1e-10, "intensity")[0])
    assert (noisy < 0).any() and undeclared_fill(info, noisy.ravel().astype(np.float32), "auto") == pytest.approx(1e-10)
    u8 = np.clip(np.round(db + 200), 1, 255).astype(np.uint8)
    assert undeclared_fill(replace(info, dtype="uint8"), u8.ravel(), "auto") is None
    bright = encode_intensity(intensity, "amplitude", "uint16")  # 1 look: a few targets near 65535
    bright.flat[:6] = [58649, 50000, 45000, 40000, 35000, 30000]
    bright[:, :100] = 65535  # a user's sweep: a quarter of such a fill decoded to other values
    assert undeclared_fill(replace(info, dtype="uint16"), bright.ravel(), "auto") == 65535.0
    for fill in (-9999.0, -1.0):  # one negative value in intensity of any units (DN^2 here): fill, not native
        dn2 = (intensity * 1e6).astype(np.float32)
        dn2[:, :100] = fill
        assert undeclared_fill(info, dn2.ravel(), "auto") == fill


def test_a_fill_found_in_one_band_of_several_is_left_out_of_the_metrics(tmp_path):
    """A GeoTIFF holds one nodata value, band 1's: band 2's declared fill came back undeclared, and evaluate (which
    took the reconstruction's nodata) scored the exactly restored fill as data: 77 dB. It finds the fill in the
    original as the codec does; compression says the bands' nodata values differ; the panel's preview masks it."""
    from sar_compressor.algorithms.preview import read_preview

    _, band2 = _footprint_scene(tmp_path, "b2", -9999.0)
    band1 = _db_scene(seed=9)
    src = _write(tmp_path / "stack.tif", np.stack([band1, band2]), crs="EPSG:32631")
    said: list[str] = []
    result = api.compress_file(src, tmp_path / "s.sarz", quality=6, reconstruction=tmp_path / "r.tif", warn=said.append)
    assert [b["nodata"] for b in result.bands] == [None, -9999.0]
    assert any(w.startswith("band 2: no nodata value declared") for w in said)
    assert any(w.startswith("nodata values differ") for w in said) and result.warnings[0].startswith("band 2: ")
    metrics = evaluate_files(src, tmp_path / "r.tif", band=2)
    assert metrics["valid_pixels"] == np.count_nonzero(band2 != -9999.0) and metrics["psnr_db"] < 40
    assert inspect_input(src, band=2).nodata is None and "taken for a fill" in inspect_input(src, band=2).warnings[0]
    preview = read_preview(str(src), 2)
    assert np.isnan(preview.data[band2 == -9999.0]).all() and np.isfinite(preview.data[band2 != -9999.0]).all()


def test_integer_reasons_say_what_the_values_show():
    """An int16 band with a short tail was said to have 'a long upper tail'."""
    dem = np.linspace(100, 300, 5000).astype(np.int16)
    assert pp.choose_kind("int16", dem).reason == "int16 with a short upper tail: linear amplitude DN, coded in dB"
    scaled = pp.choose_kind("uint16", np.linspace(30000, 60000, 5000), scaled=True).reason
    assert "low in its range" not in scaled


def test_few_valued_bands_saturated_targets_and_a_kind_given_are_no_fill(tmp_path):
    """A band of a few values (a class map, a mask, two levels) had its majority value taken for fill, a DN product's
    1.2 % of saturated targets (nearly all its intensity) were declared nodata, and evaluate found a fill with the
    detected kind where the codec, told `native`, coded it as data (its errors went unscored). A negative GDAL
    scale turns the values over: its fill is found at the top of the band's values."""
    from sar_compressor.engine.codec.passes.survey import undeclared_fill

    info = api.open_info(_footprint_scene(tmp_path, "i", -9999.0)[0])
    rng = np.random.default_rng(5)
    two = np.where(rng.random(20000) < 0.8, 1.0, 10.0).astype(np.float32)
    classes = np.concatenate([rng.integers(1, 18, 20000), np.full(600, 255)]).astype(np.uint16)
    levels = np.where(rng.random(20000) < 0.5, -1.0, 1.0)
    for values, dtype in ((two, "float32"), (classes, "uint16"), (levels, "int16"), (levels, "float32")):
        assert undeclared_fill(replace(info, dtype=dtype), values.astype(dtype), "auto") is None
    dn = encode_intensity(simulate_scene(256, 256, looks=4, seed=3)[0] * 0.1, "amplitude", "uint16").ravel()
    dn[rng.choice(dn.size, int(0.012 * dn.size), replace=False)] = 65535
    assert undeclared_fill(replace(info, dtype="uint16"), dn, "auto") is None
    db = _db_scene(seed=4)
    db[:, :100] = db.min() - 10.0
    src = _write(tmp_path / "near.tif", db, crs="EPSG:32631")
    api.compress_file(src, tmp_path / "n.sarz", quality=5, kind="native", reconstruction=tmp_path / "n.tif")
    assert evaluate_files(src, tmp_path / "n.tif", kind="native")["valid_pixels"] == db.size
    assert evaluate_files(src, tmp_path / "n.tif")["valid_pixels"] == np.count_nonzero(db > db.min())
    flipped = np.round(_db_scene(seed=2) / -0.01).astype(np.int16)  # dB = raw x -0.01
    flipped[:, :60] = -32768
    src = _write(tmp_path / "flipped.tif", flipped, crs="EPSG:32631")
    with rasterio.open(src, "r+") as ds:
        ds.scales = (-0.01,)
    assert undeclared_fill(api.open_info(src), flipped.ravel(), "auto") == -32768.0
