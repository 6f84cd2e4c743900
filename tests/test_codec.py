"""compress_file / decompress_file end to end: exactness where the format promises
it (bytes, nodata, georeferencing, dtype), honest statistics, clean failures, bounded memory."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import subprocess
import sys
import tracemalloc
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS
from rasterio.transform import from_origin

from sar_compressor.engine import api
from sar_compressor.engine.codec.entropy import refine
from sar_compressor.engine.codec.entropy.codes import varint_decode, varint_encode
from sar_compressor.engine.codec.format import layout as layout_module
from sar_compressor.engine.codec.format import strip_payload
from sar_compressor.engine.codec.format.container import (
    FORMAT_VERSION,
    PLAIN_VERSION,
    ContainerReader,
    container_bytes,
)
from sar_compressor.engine.codec.format.layout import BLOCK, LEGACY_BLOCK, MEAN_LOG2_STEPS, Layout, mean_log2_step
from sar_compressor.engine.codec.format.sarz_header import layouts_from_header
from sar_compressor.engine.codec.format.strip_payload import BRIGHT_CONTEXTS, BrightResiduals, Strip
from sar_compressor.engine.codec.passes import strip_window, survey
from sar_compressor.engine.codec.passes.quality import DEFAULT_QUALITY, N_QUALITIES, quality_level
from sar_compressor.engine.codec.passes.window_decode import decode_window
from sar_compressor.engine.codec.radiometry import (
    WEIGHT_CAP,
    block_counts,
    block_means,
    block_offsets,
    bright_contexts,
    cell_sums,
    mean_codes,
    offset_field,
)
from sar_compressor.engine.errors import (
    CancelledError,
    ContainerError,
    InputError,
    SARCompressorError,
)
from sar_compressor.engine.simulate import simulate_scene, write_scene

DATA = Path(__file__).resolve().parent / "data"
TRANSFORM = from_origin(500000.0, 4200000.0, 10.0, 10.0)


def _scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    return simulate_scene(height, width, seed=seed)[0]


def _write(path, arr, nodata=None, georef=True, description="test band", count=1):
    profile = {"driver": "GTiff", "width": arr.shape[-1], "height": arr.shape[-2], "count": count}
    profile["dtype"] = arr.dtype.name
    if georef:
        profile.update(crs=CRS.from_epsg(32633), transform=TRANSFORM)
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(arr if arr.ndim == 3 else arr[None])
        for i in range(1, count + 1):
            ds.set_band_description(i, description)
    return path


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.profile, ds.descriptions[0]


def _temp_leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_round_trip_is_deterministic_and_equals_the_reconstruction(tmp_path):
    src = write_scene(tmp_path / "scene.tif", 300, 200, seed=3)
    a, b = tmp_path / "a.sarz", tmp_path / "b.sarz"
    progress = []
    stats = api.compress_file(
        src,
        a,
        reconstruction=tmp_path / "rec.tif",
        progress=lambda d, t: progress.append((d, t)),
    )
    api.compress_file(src, b)
    assert a.read_bytes() == b.read_bytes()
    assert progress[-1][0] == progress[-1][1] > 0
    dstats = api.decompress_file(a, tmp_path / "dec.tif")
    rec, _, _ = _read(tmp_path / "rec.tif")
    dec, profile, _ = _read(tmp_path / "dec.tif")
    np.testing.assert_array_equal(dec, rec)
    assert profile["tiled"] and profile["compress"].lower() == "deflate"
    assert stats.output_bytes == a.stat().st_size
    assert stats.bpp == pytest.approx(8 * a.stat().st_size / (300 * 200))
    assert stats.ratio == pytest.approx(300 * 200 * 4 / a.stat().st_size)
    assert dstats.width == 200 and dstats.height == 300
    assert stats.to_dict()["quality"] == DEFAULT_QUALITY
    assert _temp_leftovers(tmp_path) == []


def _make(kind_case: str, shape=(90, 140)):
    """(array, nodata, kind) for each supported dtype, with nodata/NaN pixels where the case has them."""
    inten = _scene(*shape, seed=5).astype(np.float64)
    holes = np.zeros(shape, dtype=bool)
    holes[5:9, 10:30] = True
    holes[60, :] = True
    if kind_case == "float32_intensity":
        arr = inten.astype(np.float32)
        arr[holes] = np.nan
        return arr, None, "intensity"
    if kind_case == "uint16_amplitude":
        arr = np.clip(np.rint(np.sqrt(inten) * 1000), 1, 65535).astype(np.uint16)
        arr[holes] = 0
        return arr, 0.0, "amplitude"
    if kind_case == "float32_db":
        arr = (10 * np.log10(inten)).astype(np.float32)
        arr[holes] = -9999.0
        arr[0, 0] = np.nan
        return arr, -9999.0, "db"
    if kind_case == "complex64":
        rng = np.random.default_rng(1)
        z = np.sqrt(inten / 2) * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
        arr = z.astype(np.complex64)
        arr[holes] = np.nan
        return arr, None, "complex"
    if kind_case == "int16":
        arr = np.clip(np.rint(np.sqrt(inten) * 300), 1, 32767).astype(np.int16)
        arr[holes] = -1
        return arr, -1.0, "amplitude"
    if kind_case == "uint32":  # linear amplitude past 16 bits (wide dynamic range DN)
        arr = np.clip(np.rint(np.sqrt(inten) * 3e5), 1, 2**32 - 1).astype(np.uint32)
        arr[holes] = 0
        return arr, 0.0, "amplitude"
    if kind_case == "int32":  # not backscatter (a DEM, a difference image): negative values, coded native
        arr = np.rint((10 * np.log10(inten)) * 1000).astype(np.int32)
        arr[holes] = -(2**31)
        return arr, float(-(2**31)), "native"
    if kind_case == "uint8":
        arr = np.clip(np.rint(np.sqrt(inten) * 60), 1, 255).astype(np.uint8)
        return arr, None, "native"
    if kind_case == "float64":
        arr = inten.copy()
        arr[holes] = -1.0
        arr[3, 3] = np.inf
        return arr, -1.0, "intensity"
    raise AssertionError(kind_case)


CASES = [
    "float32_intensity",
    "uint16_amplitude",
    "float32_db",
    "complex64",
    "int16",
    "uint32",
    "int32",
    "uint8",
    "float64",
]


@pytest.mark.parametrize("case", CASES)
def test_round_trip_keeps_dtype_georef_nodata_and_description(tmp_path, case):
    arr, nodata, kind = _make(case)
    src = _write(tmp_path / "in.tif", arr, nodata=nodata, description=f"{case} band")
    stats = api.compress_file(src, tmp_path / "x.sarz", reconstruction=tmp_path / "rec.tif")
    assert stats.kind == kind
    assert stats.input_bytes == arr.size * arr.dtype.itemsize
    api.decompress_file(tmp_path / "x.sarz", tmp_path / "out.tif")
    out, profile, description = _read(tmp_path / "out.tif")
    expected_dtype = np.float32 if case == "complex64" else arr.dtype
    assert out.dtype == expected_dtype and out.shape == arr.shape
    assert CRS.from_user_input(profile["crs"]) == CRS.from_epsg(32633)
    assert profile["transform"] == TRANSFORM
    assert description == f"{case} band"
    if nodata is None:
        assert profile["nodata"] is None
    else:
        assert profile["nodata"] == nodata
    invalid_in = np.isnan(arr) if arr.dtype.kind in "fc" else np.zeros(arr.shape, bool)
    if nodata is not None:
        invalid_in |= arr == nodata
    if arr.dtype.kind == "f":
        invalid_in |= np.isinf(arr)
        np.testing.assert_array_equal(out[np.isinf(arr)], arr[np.isinf(arr)])
    if nodata is not None:
        np.testing.assert_array_equal(out == nodata, (arr == nodata) & ~np.isnan(arr))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(arr))
    assert np.all(np.isfinite(out[~invalid_in]))
    rec, _, _ = _read(tmp_path / "rec.tif")
    np.testing.assert_array_equal(rec, out)


def test_no_georeferencing_stays_without(tmp_path):
    src = _write(tmp_path / "plain.tif", _scene(64, 64), georef=False)
    api.compress_file(src, tmp_path / "p.sarz")
    header = api.read_header(tmp_path / "p.sarz")
    assert header["raster"]["crs_wkt"] is None and header["raster"]["transform"] is None
    api.decompress_file(tmp_path / "p.sarz", tmp_path / "p.tif")
    with rasterio.open(tmp_path / "p.tif") as ds:
        assert ds.crs is None and ds.transform.is_identity


@pytest.mark.parametrize("shape", [(37, 53), (1, 300), (300, 1), (1, 1), (257, 17)])
def test_odd_and_tiny_shapes(shape):
    arr = _scene(*shape, seed=2) if min(shape) > 1 else np.random.default_rng(0).gamma(1.0, 1.0, shape)
    result = api.compress_array(arr.astype(np.float32))
    assert result.reconstruction.shape == shape
    decoded = api.decompress_array(result.data)
    np.testing.assert_array_equal(decoded, result.reconstruction)
    assert np.all(np.isfinite(decoded))


def test_one_band_of_a_multi_band_raster(tmp_path):
    """All bands by default (tests/test_multiband.py), one on request; a band that is not there is refused."""
    arr = np.stack([_scene(40, 50, seed=1), _scene(40, 50, seed=2)]).astype(np.float32)
    src = _write(tmp_path / "two.tif", arr, count=2)
    with pytest.raises(InputError, match="band 3"):
        api.compress_file(src, tmp_path / "t.sarz", band=3)
    api.compress_file(src, tmp_path / "t.sarz", band=2)
    assert api.read_header(tmp_path / "t.sarz")["bands"][0]["source_band"] == 2


def test_input_errors(tmp_path):
    good = _write(tmp_path / "good.tif", _scene(40, 40))
    out = tmp_path / "o.sarz"
    with pytest.raises(InputError, match="quality"):
        api.compress_file(good, out, quality=N_QUALITIES + 1)
    with pytest.raises(InputError, match="quality"):
        api.compress_file(good, out, quality=0)
    with pytest.raises(InputError, match="kind"):
        api.compress_file(good, out, kind="sigma")
    with pytest.raises(InputError, match="mean correction"):
        api.compress_file(good, out, mean_correction="local")
    with pytest.raises(InputError, match="not found"):
        api.compress_file(tmp_path / "missing.tif", out)
    with pytest.raises(InputError, match="output folder"):
        api.compress_file(good, tmp_path / "nope" / "o.sarz")
    int64 = _write(tmp_path / "i64.tif", np.ones((20, 20), dtype=np.int64))
    with pytest.raises(InputError, match="int64"):
        api.compress_file(int64, out)
    assert not out.exists()


def test_cancel_leaves_no_files(tmp_path):
    src = write_scene(tmp_path / "scene.tif", 512, 200, seed=1)
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(CancelledError):
        api.compress_file(src, tmp_path / "c.sarz", reconstruction=tmp_path / "r.tif", cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]
    api.compress_file(src, tmp_path / "c.sarz")
    calls.clear()
    with pytest.raises(CancelledError):
        api.decompress_file(tmp_path / "c.sarz", tmp_path / "d.tif", cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.sarz", "scene.tif"]


def test_a_cancel_after_the_last_strip_still_leaves_no_file(tmp_path):
    """A cancel that came once every strip was decoded (while GDAL flushed and the file was read back) was ignored:
    the GeoTIFF was written and the run reported success; an older file there stays as it was."""
    src = write_scene(tmp_path / "scene.tif", 512, 200, seed=1)
    api.compress_file(src, tmp_path / "c.sarz")
    old = tmp_path / "d.tif"
    old.write_bytes(b"the user's file")
    decoded: list[bool] = []

    def progress(done: int, total: int) -> None:
        decoded.append(done >= total)

    for cog in (False, True):
        with pytest.raises(CancelledError):
            api.decompress_file(tmp_path / "c.sarz", old, cog=cog, progress=progress, cancel=lambda: any(decoded))
        assert any(decoded) and old.read_bytes() == b"the user's file"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["c.sarz", "d.tif", "scene.tif"]
        decoded.clear()


def test_quality_is_monotonic():
    """Each quality refines at a finer step: strictly larger files, strictly closer to the input."""
    arr = _scene(128, 128, seed=7)
    db = 10 * np.log10(arr.astype(np.float64))
    sizes, errors = [], []
    for q in range(1, N_QUALITIES + 1):
        result = api.compress_array(arr, quality=q, mean_correction="none")
        sizes.append(len(result.data))
        lo, hi = result.stats.vmin, result.stats.vmax
        rec = 10 * np.log10(result.reconstruction.astype(np.float64))
        errors.append(float(np.mean((np.clip(rec, lo, hi) - np.clip(db, lo, hi)) ** 2)))
    assert sizes == sorted(set(sizes)), sizes
    assert errors == sorted(set(errors), reverse=True), errors


@pytest.mark.parametrize("quality", [1, DEFAULT_QUALITY, N_QUALITIES])
def test_bright_targets_restored_within_three_quarters_of_a_step(quality):
    """Pixels beyond half a refinement step (at most 3 dB) above the range keep their value to 3/4 of a bright
    step (1/8 of the refinement step, 0.05-1 dB; to half a step but where rounding the other way keeps the tile's
    bright intensity, below); the ones closer are clipped to the range like any error of that size."""
    arr = _scene(100, 120, seed=4)
    rows, cols = np.array([10, 50, 77, 99]), np.array([3, 60, 119, 0])
    arr[rows, cols] = np.array([1e3, 5e4, 2e2, 1e6], dtype=np.float32)
    result = api.compress_array(arr, quality=quality)
    bright = api.read_header(result.data)["bands"][0]["bright"]
    step_db = quality_level(quality).refine_step * (result.stats.vmax - result.stats.vmin)
    assert bright["threshold_db"] == pytest.approx(result.stats.vmax + min(step_db / 2, 3.0), abs=1e-4)
    assert bright["step_db"] == pytest.approx(min(max(step_db / 8, 0.05), 1.0))
    db_in = 10 * np.log10(arr.astype(np.float64))
    above = db_in > bright["threshold_db"]
    assert above[rows, cols].all() and result.stats.n_bright_residuals == int(above.sum())
    db_out = 10 * np.log10(result.reconstruction.astype(np.float64))
    assert np.max(np.abs(db_out[above] - db_in[above])) <= bright["step_db"] * 0.75 + 1e-3
    near = (db_in > result.stats.vmax) & ~above
    assert np.all(db_out[near] <= bright["threshold_db"])  # clipped to the range (plus its block gain)
    assert result.stats.clipped_fraction >= above.mean()


@pytest.mark.parametrize(("seed", "height"), [(3, 256), (1, 200)])
def test_a_few_bright_targets_holding_much_intensity_keep_the_mean(seed, height):
    """27-28 bright pixels holding 39-48 % of a simulated scene's intensity, each rounded to its nearest bright
    step (1 dB): their sum decoded 1.048 / 0.969 times theirs, the scene's mean ratio 1.020 / 0.987 at qualities 2
    and 5 (a sweep; the block means keep the rest, not them). Rounded to keep their sum: within 0.5 %."""
    arr = simulate_scene(height, 256, looks=4, seed=seed)[0].astype(np.float32)
    for quality in (2, DEFAULT_QUALITY):
        result = api.compress_array(arr, quality=quality)
        threshold = api.read_header(result.data)["bands"][0]["bright"]["threshold_db"]
        bright = arr > 10 ** (threshold / 10)
        assert arr[bright].sum() > 0.35 * arr.sum(dtype=np.float64)
        decoded = result.reconstruction.astype(np.float64)
        assert decoded[bright].sum() / arr[bright].sum(dtype=np.float64) == pytest.approx(1, abs=0.002)
        assert decoded.mean() / arr.mean(dtype=np.float64) == pytest.approx(1, abs=0.005)


def test_native_values_keep_their_low_tail():
    """A native raster (an int16 product with a scale, a DEM) keeps its lowest values to a refinement step: its
    range starts at its minimum, where dB backscatter's starts at the 0.5th percentile (speckle's fades)."""
    rng = np.random.default_rng(3)
    arr = np.round(rng.normal(-1500.0, 250.0, (120, 160))).astype(np.int16)
    arr[:4, :6] = -2957  # the deepest 0.12 %
    result = api.compress_array(arr, quality=DEFAULT_QUALITY, kind="native")
    step = quality_level(DEFAULT_QUALITY).refine_step * (result.stats.vmax - result.stats.vmin)
    assert result.stats.vmin == pytest.approx(-2957, abs=0.5)
    assert np.max(np.abs(result.reconstruction[:4, :6].astype(np.float64) + 2957)) <= step
    dark = np.percentile(10 * np.log10(_scene(120, 160, seed=3).astype(np.float64)), 0.5)
    backscatter = api.compress_array(_scene(120, 160, seed=3), quality=DEFAULT_QUALITY)
    assert backscatter.stats.vmin == pytest.approx(dark, abs=0.05)


@pytest.mark.parametrize("kind", ["intensity", "native"])
def test_values_in_small_units_are_coded_not_floored(kind):
    """Intensities near 1e-13 (a product in watts, not calibrated backscatter) were clamped whole to the -100 dB
    floor and decoded as one value (1e-10); coded native they fitted a span of 1 and decoded as 0."""
    arr = _scene(96, 128, seed=8) * np.float32(1e-13)
    if kind == "native":
        arr[0, :4] = -1e-15  # negative values: native
    result = api.compress_array(arr, quality=DEFAULT_QUALITY, kind=kind)
    decoded = api.decompress_array(result.data).astype(np.float64)
    np.testing.assert_array_equal(decoded, result.reconstruction)
    assert np.mean(decoded) == pytest.approx(np.mean(arr, dtype=np.float64), rel=0.02)
    assert np.unique(decoded).size > 1000  # the scene, not one value
    if kind == "intensity":
        db_in, db_out = (10 * np.log10(np.maximum(a, 1e-30)) for a in (arr.astype(np.float64), decoded))
        assert np.corrcoef(db_in.ravel(), db_out.ravel())[0, 1] > 0.7


@pytest.mark.parametrize("kind", ["intensity", "native", "amplitude"])
def test_values_beyond_float32_are_refused_before_any_work(kind, tmp_path):
    """A float64 raster's 1e45 (or an amplitude whose square overflows float32) came back as inf or failed writing
    the header (an uncaught ValueError); it is one clear error, and nothing is written."""
    arr = _scene(40, 50, seed=9).astype(np.float64) * 1e45
    src = _write(tmp_path / "huge.tif", arr)
    with pytest.raises(InputError, match="cannot be coded as .*: the codec works in float32"):
        api.compress_file(src, tmp_path / "huge.sarz", kind=kind)
    assert not (tmp_path / "huge.sarz").exists()


@pytest.mark.parametrize("kind, scale", [("intensity", 1e-40), ("amplitude", 1e-21)])
def test_values_under_float32s_normal_range_are_refused(kind, scale, tmp_path):
    """Intensities under float32's smallest normal number were clamped to it: 1e-40 intensities decoded to two
    values (mean 122 times the original's), 1e-21 amplitudes to a constant, evaluate measuring 107 dB; refused now,
    while a scene of ordinary values with a few denormal pixels is coded."""
    arr = _scene(40, 50, seed=9).astype(np.float64)
    arr = np.sqrt(arr) if kind == "amplitude" else arr
    src = _write(tmp_path / "tiny.tif", (arr * scale).astype(np.float32))
    with pytest.raises(InputError, match="below 1.18e-38 as linear intensity.*rescale the raster first"):
        api.compress_file(src, tmp_path / "tiny.sarz", kind=kind)
    assert not (tmp_path / "tiny.sarz").exists()
    arr = arr.astype(np.float32)
    arr[0, :5] = 1e-41  # 0.25 % of the pixels
    api.compress_array(arr, quality=DEFAULT_QUALITY, kind=kind)


@pytest.mark.parametrize(
    "kind, mean_correction", [("intensity", "global"), ("intensity", "none"), ("db", "none"), ("native", "none")]
)
def test_bright_targets_kept_without_block_gains(kind, mean_correction):
    """Bright targets come back whatever the mean correction: a scalar gain leaves the refined tile column-major,
    where a write through a flat view used to go to a copy (the targets were lost, 0.5.1)."""
    arr = _scene(90, 110, seed=6)
    arr[[5, 40, 80], [7, 55, 100]] = np.array([1e4, 3e5, 2e3], dtype=np.float32)
    if kind != "intensity":
        arr = (10 * np.log10(arr)).astype(np.float32)
    result = api.compress_array(arr, quality=DEFAULT_QUALITY, kind=kind, mean_correction=mean_correction)
    assert result.stats.n_bright_residuals >= 3
    decoded = api.decompress_array(result.data)
    np.testing.assert_array_equal(decoded, result.reconstruction)
    bright = api.read_header(result.data)["bands"][0]["bright"]
    value = decoded[[5, 40, 80], [7, 55, 100]].astype(np.float64)
    expected = arr[[5, 40, 80], [7, 55, 100]].astype(np.float64)
    if kind == "intensity":
        value, expected = 10 * np.log10(value), 10 * np.log10(expected)
    assert np.max(np.abs(value - expected)) <= bright["step_db"] * 0.75 + 1e-3


def test_mean_correction_modes(tmp_path):
    src = write_scene(tmp_path / "s.tif", 300, 100, seed=9, nodata_fraction=0.2)
    for mode in ("global", "none"):
        out = tmp_path / f"{mode}.sarz"
        api.compress_file(src, out, mean_correction=mode, reconstruction=tmp_path / f"{mode}.tif")
        api.decompress_file(out, tmp_path / f"{mode}_dec.tif")
        np.testing.assert_array_equal(_read(tmp_path / f"{mode}.tif")[0], _read(tmp_path / f"{mode}_dec.tif")[0])
        assert api.read_header(out)["bands"][0]["mean_correction"] == mode
    assert _temp_leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "value, dtype, kind, nodata",
    [
        (0.1, "float32", "auto", None),
        (0.37, "float32", "intensity", -9999.0),
        (0.1234567, "float32", "native", -9999.0),
        (-12.345678, "float32", "db", -9999.0),
        (1234, "uint16", "auto", None),
    ],
)
def test_a_constant_band_decodes_to_its_value(value, dtype, kind, nodata):
    """A band with nothing to code but one value gets it back to float32 rounding, invalid pixels around it kept:
    its block means, coded in log2 steps, moved 0.1 to 0.10011, and its range, rounded to 1e-4, moved the flat base
    every pixel decodes to off the value (0.1234567 native decoded as 0.1235)."""
    arr = np.full((520, 300), value, dtype=dtype)
    arr[:40] = 0 if nodata is None else nodata  # no-signal zeros (linear kinds) or nodata
    if dtype == "float32":
        arr[100:110, 50:90] = np.nan
    result = api.compress_array(arr, kind=kind, nodata=nodata)
    decoded = api.decompress_array(result.data)
    np.testing.assert_array_equal(decoded, result.reconstruction)
    valid = np.full(arr.shape, True)
    valid[:40] = valid[100:110, 50:90] = False
    np.testing.assert_allclose(decoded[valid], np.asarray(value, dtype=dtype), rtol=2.5e-7)  # two float32 ulps
    np.testing.assert_array_equal(decoded[~valid], arr[~valid])  # nodata, NaN, zeros as they were
    assert api.read_header(result.data)["bands"][0]["mean_correction"] == "none"


def _layout(width: int, height: int, format_version: int = 10) -> Layout:
    """A band's layout; format 10's 64x64 gain blocks unless told (format 11's are 256x256)."""
    return Layout(
        width=width,
        height=height,
        kind="intensity",
        dtype="float32",
        nodata=None,
        rng=api.pp.Range(-20.0, 10.0),
        quality=1,
        refine_step=0.8,
        mean_correction="block",
        bright_threshold=10.0,
        format_version=format_version,
        block=LEGACY_BLOCK if format_version < 11 else BLOCK,
    )


def _strip(rows: int, raw_db: np.ndarray, gains: np.ndarray) -> Strip:
    residuals = BrightResiduals(np.zeros(0, np.int64), np.zeros(0, np.int64))
    strip = Strip(0, 0, rows, 0, raw_db.shape[1], residuals, None, np.zeros(0, np.uint8))
    strip.raw_db, strip.gains = raw_db, gains
    return strip


def test_offset_field_keeps_each_block_mean_with_its_own_offset():
    """Two uniform blocks decoded at 1, their means coded as 1 and 2: each block takes its own offset (0 and
    3 dB), so each block's linear mean is its coded mean exactly; format 6 ramped the field between the block
    centres (the per-block fix leaving a seam far below the 3 dB step) and kept the means too."""
    strip = _strip(64, np.zeros((64, 128), np.float32), np.array([[0, 32]], dtype=np.int16))
    field = offset_field(_layout(128, 64), strip)
    np.testing.assert_allclose(field[:, :64], 0.0, atol=1e-6)
    np.testing.assert_allclose(field[:, 64:], 10 * math.log10(2), rtol=1e-5)
    legacy = offset_field(replace(_layout(128, 64), format_version=6), strip)
    lin = 10 ** (legacy.astype(np.float64) / 10)
    assert lin[:, :64].mean() == pytest.approx(1.0, rel=1e-5) and lin[:, 64:].mean() == pytest.approx(2.0, rel=1e-5)
    assert np.all(np.diff(legacy[0, 32:96]) > 0)  # between the block centres
    assert np.abs(np.diff(legacy[0])).max() < 1.0


def test_offsets_restore_each_block_and_go_to_bright_pixels():
    """Each block's linear mean over its used pixels becomes its coded mean; brighter pixels take larger
    offsets (a lone bright pixel at most WEIGHT_CAP times the block mean's), pixels left out (bright targets,
    restored from their own residuals) do not count."""
    rng = np.random.default_rng(3)
    raw = rng.normal(-8.0, 4.0, (64, 192)).astype(np.float32)
    raw[32, 96] = raw.max() + 25.0  # far above its block (at its centre): its share is capped
    w = 10.0 ** (raw.astype(np.float64) / 10)
    use = np.ones(raw.shape, bool)
    use[0, :10] = False
    means = [w[:, 64 * b : 64 * (b + 1)][use[:, 64 * b : 64 * (b + 1)]].mean() for b in range(3)]
    codes = np.rint(np.log2(means) * 32 + np.array([12, -20, 40])).astype(np.int16)[None]  # gains 2**(12/32)...
    strip = _strip(64, raw, codes)
    strip.bright.positions = np.arange(10, dtype=np.int64)  # row 0, columns 0-9
    layout = _layout(192, 64)
    side = layout.block
    c, _ = block_offsets(raw, use, block_means(codes, layout.mean_log2_step) * block_counts(use, side), side)
    assert np.sign(c[0]).tolist() == [1, -1, 1]
    field = offset_field(layout, strip).astype(np.float64)
    for b in range(3):
        cols = slice(64 * b, 64 * (b + 1))
        restored = (w[:, cols] * 10 ** (field[:, cols] / 10))[use[:, cols]].mean()
        assert restored == pytest.approx(2 ** (codes[0, b] / 32), rel=1e-5)
    block = field[:, 64 * 2 + 16 : 64 * 2 + 48]
    bright = raw[:, 64 * 2 + 16 : 64 * 2 + 48] > np.percentile(raw[:, 128:], 90)
    assert block[bright].mean() > 3 * block[~bright].mean() > 0
    middle = np.abs(field[:, 64:128])
    assert middle[32, 32] == middle.max() < WEIGHT_CAP * np.abs(c[0, 1]) * 1.5 and field[32, 96] < 0


def _relabelled(data: bytes, version: int) -> bytes:
    """The same chunks under a header that says `version`."""
    with ContainerReader(data) as reader:
        header, chunks = copy.deepcopy(reader.header), [reader.read_chunk(i) for i in range(reader.n_chunks)]
    header["format_version"] = version
    return container_bytes(header, chunks)


def test_block_offsets_lift_no_pixel_above_the_bright_threshold():
    """Format 12: at quality 2 a single-look scene decodes to smooth dB with a few bright spots, and spread by
    intensity its blocks' offsets lifted those far above the range (format 11's rule, the same chunks); now no
    pixel but a coded bright target ends above the bright threshold, and each block keeps its coded mean."""
    arr = _scene(512, 512, seed=1)
    result = api.compress_array(arr, quality=2)
    threshold = api.read_header(result.data)["bands"][0]["bright"]["threshold_db"]
    db_in = 10 * np.log10(arr.astype(np.float64))
    counted = db_in <= threshold  # not a bright target
    capped = api.decompress_array(result.data)
    np.testing.assert_array_equal(capped, result.reconstruction)
    assert np.max(10 * np.log10(capped[counted].astype(np.float64))) <= threshold + 1e-4
    lifted = api.decompress_array(_relabelled(result.data, 11))
    assert np.max(10 * np.log10(lifted[counted].astype(np.float64))) > threshold + 3
    means = [x.astype(np.float64).reshape(2, 256, 2, 256).sum(axis=(1, 3)) for x in (capped, lifted)]
    np.testing.assert_allclose(means[0], means[1], rtol=1e-4)


@pytest.mark.parametrize("step", MEAN_LOG2_STEPS)
def test_mean_codes_cover_a_wide_range(step):
    """Block means from 1e-4 to 1e4 (-40 to +40 dB) are coded to a log2 step, the finest too, not clipped."""
    codes = mean_codes(np.array([[1e4 * 4096, 4096 * 1e-4, 0.0]]), np.array([[4096, 4096, 0]]), step)
    db = codes.astype(np.float64) * step * 10 * math.log10(2)
    assert db[0, 0] == pytest.approx(40.0, abs=0.05) and db[0, 1] == pytest.approx(-40.0, abs=0.05)
    assert codes[0, 2] == np.rint((codes[0, 0] + codes[0, 1]) / 2)  # an empty block takes the mean code


def test_mean_step_follows_the_refinement_step():
    """The block means' code step in dB is about the refinement step over BLOCK (sqrt of a block's pixels), within
    the steps the format knows: coarse at low rates, where a bit buys more elsewhere, fine at high rates."""
    assert mean_log2_step(24.0) == mean_log2_step(1e9) == MEAN_LOG2_STEPS[0]
    assert mean_log2_step(0.05) == mean_log2_step(0.0) == MEAN_LOG2_STEPS[-1]
    for step in MEAN_LOG2_STEPS:
        db = step * BLOCK * 10 * math.log10(2)  # the refinement step this code step is ideal for
        assert mean_log2_step(db) == step and mean_log2_step(db * 1.4) == step and mean_log2_step(db / 1.4) == step
    steps = [mean_log2_step(s) for s in np.geomspace(0.1, 30, 50)]
    assert steps == sorted(steps)


def test_header_contents(tmp_path):
    src = write_scene(tmp_path / "s.tif", 70, 90, seed=2, kind="amplitude", dtype="uint16")
    api.compress_file(src, tmp_path / "h.sarz", quality=2)
    h = api.read_header(tmp_path / "h.sarz")
    band = h["bands"][0]
    assert h["format_version"] == PLAIN_VERSION == 12 and FORMAT_VERSION == 13  # 13 only where a band is scaled
    assert len(h["bands"]) == 1 and band["source_band"] == 1
    assert band["mean_log2_step"] == mean_log2_step(0.56 * (band["range"]["vmax"] - band["range"]["vmin"]))
    assert band["quality"] == 2 and band["refine_step"] == 0.56 and h["refine"]["wavelet"] == "cdf97"
    assert band["kind"] == "amplitude" and h["raster"]["dtype"] == "uint16"
    assert (h["raster"]["width"], h["raster"]["height"]) == (90, 70)
    assert h["raster"]["crs_wkt"] and len(h["raster"]["transform"]) == 6
    # a raster smaller than a tile is one tile
    assert h["tiling"] == {"tile_width": 90, "tile_height": 70, "order": "band, tile row, tile column"}
    assert h["streams"] == ["refinement", "block_means", "bright", "mask", "mask_codes", "loop_filter"]
    assert h["tools"] == {"post_filter": None} and h["gain_blocks"] == {"block_size": 256, "offsets": "per_block"}
    assert h["file_bytes"] == (tmp_path / "h.sarz").stat().st_size and h["n_chunks"] == 1
    assert band["stats"]["input_bytes"] == 70 * 90 * 2
    assert not any(key in h for key in ("model", "latent", "base", "model_level"))


def _peak_bytes(tmp_path, height: int) -> int:
    src = write_scene(tmp_path / f"m{height}.tif", height, 256, seed=1)
    tracemalloc.start()
    try:
        api.compress_file(src, tmp_path / f"m{height}.sarz")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_memory_does_not_grow_with_height(tmp_path, monkeypatch):
    """Peak numpy allocation (tracemalloc) for 3072 rows stays that of 1024 rows (both hold one row of tiles
    at a time). The pass-1 sample and texture tiles are bounded on their own (4M values, 1M pixels) and tiles by
    their side (1024); all are made small here so that only the streaming part is compared. One tile in flight:
    with two, which of them overlap at their peak is up to the thread scheduler (a bounded addition)."""
    monkeypatch.setattr(survey, "SAMPLE_VALUES", 16384)
    monkeypatch.setattr(survey, "TEXTURE_PIXELS", 16384)
    monkeypatch.setattr(layout_module, "TILE", 128)
    monkeypatch.setattr(strip_window, "LOOKAHEAD", 1)
    small, large = _peak_bytes(tmp_path, 1024), _peak_bytes(tmp_path, 3072)
    assert large < 1.25 * small, (small, large)


SMALL = {}


def _small_sarz() -> bytes:
    """A small file with nodata and a bright target: its chunk holds every stream."""
    if not SMALL:
        arr = _scene(40, 70, seed=11)
        arr[0:3, 0:5] = np.nan
        arr[20, 20] = 1e5
        SMALL["file"] = api.compress_array(arr).data
    return SMALL["file"]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzz_decompression_raises_only_codec_errors(data):
    valid = _small_sarz()
    blob = bytearray(valid)
    for _ in range(data.draw(st.integers(0, 3))):
        blob[data.draw(st.integers(0, len(blob) - 1))] ^= data.draw(st.integers(1, 255))
    blob = bytes(blob[: data.draw(st.integers(0, len(blob)))]) + data.draw(st.binary(max_size=16))
    with contextlib.suppress(SARCompressorError):
        api.decompress_array(blob)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzz_chunk_payloads_with_valid_crcs(data):
    """Damage behind a correct CRC (a buggy writer): the chunk parser must still fail cleanly."""
    with ContainerReader(_small_sarz()) as reader:
        header, payload = reader.header, bytearray(reader.read_chunk(0))
    for _ in range(data.draw(st.integers(1, 4))):
        payload[data.draw(st.integers(0, len(payload) - 1))] ^= data.draw(st.integers(1, 255))
    payload = bytes(payload[: data.draw(st.integers(0, len(payload)))])
    with contextlib.suppress(SARCompressorError):
        api.decompress_array(container_bytes(header, [payload]))


def _with_stream(data: bytes, k: int, stream: bytes) -> bytes:
    """`data`'s first chunk with its stream `k` replaced, behind valid CRCs (what a forged file holds)."""
    with ContainerReader(data) as reader:
        header, chunk = reader.header, reader.read_chunk(0)
    rows, cols, n = strip_payload._CHUNK_HEAD.unpack_from(chunk)
    streams = strip_payload._split_chunk(chunk, "chunk", (rows, cols), n)
    streams[k] = stream
    head = strip_payload._CHUNK_HEAD.pack(rows, cols, n) + b"".join(strip_payload._LENGTH.pack(len(x)) for x in streams)
    return container_bytes(header, [head + b"".join(streams)])


def _side_bomb(data: bytes, bomb: bytes) -> bytes:
    """`data`'s first chunk with its refinement layer's side information replaced by `bomb`."""
    with ContainerReader(data) as reader:
        chunk = reader.read_chunk(0)
    rows, cols, n = strip_payload._CHUNK_HEAD.unpack_from(chunk)
    refinement = strip_payload._split_chunk(chunk, "chunk", (rows, cols), n)[0]
    levels, n_bands, side_len = refine._HEAD.unpack_from(refinement)
    forged = refine._HEAD.pack(levels, n_bands, len(bomb)) + bomb + refinement[refine._HEAD.size + side_len :]
    return _with_stream(data, 0, forged)


@pytest.mark.parametrize(
    "k, prefix, what",
    [(1, b"", "gains"), (3, b"", "nodata mask"), (4, b"", "mask codes"), (5, b"\x04\x03", "loop"), (0, None, "side")],
)
def test_a_deflate_bomb_is_refused_before_it_inflates(k, prefix, what):
    """A 316 KB file whose nodata mask inflated to 300 MB took the decoder past 3 GB and ended in MemoryError:
    each stream inflates to no more than its tile can hold (the refinement layer's side information too)."""
    deflated = zlib.compress(bytes(32 << 20), 9)
    data = _small_sarz()
    bomb = _side_bomb(data, deflated) if prefix is None else _with_stream(data, k, prefix + deflated)
    tracemalloc.start()
    try:
        with pytest.raises(ContainerError, match=f"{what}.*(inflates past|wrong size)"):
            api.decompress_array(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_a_nodata_value_the_type_cannot_hold_still_decodes(tmp_path):
    """A uint16 raster given nodata -1 or 70000 compressed; a reader that refused such a header read none of these
    files back (and the GeoTIFF writer never could): they decode, the GeoTIFF without a nodata value, said."""
    arr = np.random.default_rng(0).integers(1, 60000, (40, 70)).astype(np.uint16)
    for nodata in (70000.0, -1.0):
        path = tmp_path / "n.sarz"
        path.write_bytes(api.compress_array(arr, nodata=nodata).data)
        assert api.decompress_array(path).shape == arr.shape
        heard = []
        api.decompress_file(path, tmp_path / "n.tif", warn=heard.append)
        assert any("declares no nodata value" in text for text in heard)


def test_a_raster_too_large_for_memory_is_named(monkeypatch):
    """decompress_array allocates the whole raster: a header saying 200000x200000 (its chunks all there) ended in
    numpy's MemoryError; now the error says how large and what to do instead."""
    with ContainerReader(_small_sarz()) as reader:
        header = copy.deepcopy(reader.header)
    header["raster"].update(width=200_000, height=200_000)
    header["tiling"].update(tile_width=1024, tile_height=1024)
    header["gain_blocks"]["block_size"] = 256
    data = container_bytes(header, [b"x"] * 196**2)
    real = np.empty

    def bounded(shape, *args, **kwargs):  # as a machine without overcommit answers (Linux's default heuristic)
        if math.prod(np.atleast_1d(shape)) > 2**34:
            raise MemoryError("Unable to allocate")
        return real(shape, *args, **kwargs)

    monkeypatch.setattr(np, "empty", bounded)
    with pytest.raises(InputError, match=r"200000x200000 float32, 149.0 GiB\) does not fit in memory"):
        api.decompress_array(data)


def test_a_damaged_chunk_is_named_by_its_place_in_the_file():
    """Chunks are named "chunk N of M", counted from 1 over the file, whichever band holds them: the payload's
    errors named a band's tile from 0 ("chunk 0" for the second band's first chunk of a two-band file)."""
    arr = np.stack([_scene(40, 70, seed=1), _scene(40, 70, seed=2)])
    with ContainerReader(api.compress_array(arr, interband=False).data) as reader:
        header, chunks = reader.header, [reader.read_chunk(i) for i in range(reader.n_chunks)]
    assert len(chunks) == 2  # one tile per band
    damaged = container_bytes(header, [chunks[0], chunks[1][:3]])  # cut short behind a valid CRC
    with pytest.raises(ContainerError, match="^chunk 2 of 2 is too short$"):
        api.decompress_array(damaged)


def test_header_damage_behind_a_valid_crc():
    with ContainerReader(_small_sarz()) as reader:
        header, chunk = reader.header, reader.read_chunk(0)
    for path, value, match in [
        (("raster", "width"), 10**6, "tiling"),  # a 70-wide tile in a wider raster
        (("bands", 0, "kind"), "phase", "kind"),
        (("bands", 0, "range"), {"vmin": 1.0, "vmax": 0.0}, "range"),
        (("bands", 0, "refine_step"), -0.5, "step"),
        (("bands", 0, "refine_step"), None, "header"),
        (("refine", "levels"), 3, "refine"),
        (("bands", 0, "mean_correction"), "magic", "gain"),
        (("tiling", "tile_height"), 512, "tiling"),  # taller than the 40-row raster
        (("tiling", "tile_height"), 0, "tiling"),
        (("tiling", "order"), "tile column, tile row, band", "tiling"),
        (("tiling", "tile_width"), 32, "tiling"),  # not whole gain blocks
        (("tiling", "tile_width"), 64, "tiling"),  # not whole 256x256 gain blocks either
        (("gain_blocks", "block_size"), 32, "gain"),  # not a side format 11 knows
        (("gain_blocks", "block_size"), "256", "gain"),
        (("bands",), [], "no bands"),
        (("bands", 0, "reference"), 0, "reference"),  # itself
        (("bands", 0, "reference"), 1, "reference"),  # no such band
        (("bands", 0, "reference"), "0", "reference"),
        (("tools", "post_filter"), {"name": "x", "sha256": "00"}, "learned tools.*not supported"),
        (("streams",), ["refinement"], "chunk streams.*not supported"),
        (("bands", 0, "mean_log2_step"), 1 / 48, "gain"),  # not a step the format knows
        (("gain_blocks", "offsets"), "interpolated", "gain"),
        (("format_version",), 5, "prefix says format 13, its header 5"),  # the prefix and the JSON must agree
        # the raster's own fields: a forged header ended in tracebacks, a temp file or a 37 GiB allocation
        (("raster", "width"), "70", "impossible size"),
        (("raster", "width"), 70.5, "impossible size"),
        (("raster", "dtype"), "pixels", "unknown data type"),
        (("raster", "crs_wkt"), "NOT A CRS", "CRS that does not parse"),
        (("raster", "transform"), [0.0, 1.0], "geotransform"),
        (("raster", "transform"), [0.0, 1.0, 0.0, 0.0, 0.0, "x"], "malformed"),
        (("raster", "gcps"), [[1.0, 2.0]], "ground control points"),
        (("raster", "tags"), {"A": 1}, "tags"),
        (("bands", 0, "description"), 5, "descriptions"),
        (("bands", 0, "tags"), "x", "tags"),
    ]:
        bad = copy.deepcopy(header)
        target = bad
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(ContainerError, match=match):
            api.decompress_array(container_bytes(bad, [chunk]))
    two = copy.deepcopy(header)
    two["bands"].append(copy.deepcopy(two["bands"][0]))
    with pytest.raises(ContainerError, match="source_band"):
        api.decompress_array(container_bytes(two, [chunk, chunk]))
    two["bands"][1]["source_band"] = 2
    with pytest.raises(ContainerError, match="the file has 1 chunks, its header implies 2"):
        api.decompress_array(container_bytes(two, [chunk]))
    two["bands"][1]["reference"] = 0
    two["bands"][0]["reference"] = 1
    with pytest.raises(ContainerError, match="reference"):  # a predicted band as a reference
        api.decompress_array(container_bytes(two, [chunk, chunk]))
    del header["raster"]
    with pytest.raises(ContainerError, match="header"):
        api.decompress_array(container_bytes(header, [chunk]))
    with pytest.raises(ContainerError, match="chunks"):
        api.decompress_array(container_bytes(_header_of(), [chunk, chunk]))


def test_a_forged_header_is_named_by_every_reader(tmp_path, capsys):
    """decompress_file read the raster's width and type before the header was checked (KeyError, TypeError), `info`
    and read_header indexed missing band entries (KeyError, AttributeError), and GDAL's refusal of a nodata value
    left the output's temp file behind: a ContainerError each (exit 2 on the command line), and no file."""
    from sar_compressor.engine.cli import main

    with ContainerReader(_small_sarz()) as reader:
        header, chunk = reader.header, reader.read_chunk(0)
    for key, value in [("raster", None), ("bands", None), ("bands", "x")]:
        bad = copy.deepcopy(header)
        bad.pop(key) if value is None else bad.update({key: value})
        src = tmp_path / "bad.sarz"
        src.write_bytes(container_bytes(bad, [chunk]))
        with pytest.raises(ContainerError):
            api.decompress_file(src, tmp_path / "out.tif")
        if key == "bands":
            with pytest.raises(ContainerError, match="no raster or band entries"):
                api.read_header(src)
            assert main(["info", str(src)]) == 2 and "error:" in capsys.readouterr().err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.sarz"]


def test_headers_deflate_against_their_own_dictionary(tmp_path):
    """A small file's header is a large share of its bits: the dictionary of formats 7 and 8 knows the statistics
    and the kind reasons their headers carry, so a typical one deflates to far less than against format 6's."""
    from sar_compressor.engine.codec.format.container import encode_header
    from sar_compressor.engine.codec.format.header_dictionary import HEADER_DICTIONARIES

    src = write_scene(tmp_path / "s.tif", 256, 256, seed=4)
    api.compress_file(src, tmp_path / "s.sarz", quality=3)
    with ContainerReader(tmp_path / "s.sarz") as reader:
        header = reader.header
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    deflate = zlib.compressobj(9, zdict=HEADER_DICTIONARIES[6])
    with_6 = len(deflate.compress(text) + deflate.flush())
    assert len(encode_header(header)) < with_6 - 60  # 255 bytes against 345 when written


def test_format_6_files_decode_as_they_did():
    """A file format 6 wrote (tests/data: 128 x 128, 4 looks, 10 % nodata, quality 9) decodes to the pixels that
    version decoded, whole and by window, with its one mean step and its offsets interpolated between block
    centres; format 7's per-block offsets would change them."""
    data = (DATA / "format6.sarz").read_bytes()
    expected = np.load(DATA / "format6.npy")
    assert api.read_header(data)["format_version"] == 6
    np.testing.assert_allclose(api.decompress_array(data), expected, rtol=1e-6, equal_nan=True)
    window = decode_window(data, (16, 40, 100, 70))
    np.testing.assert_allclose(window, expected[40:110, 16:116], rtol=1e-6, equal_nan=True)
    with ContainerReader(data) as reader:
        header = reader.header
        chunks = [reader.read_chunk(i) for i in range(reader.n_chunks)]
    layout = layouts_from_header(header)[0][0]
    assert (layout.mean_log2_step, layout.legacy_means) == (MEAN_LOG2_STEPS[0], True)
    header["gain_blocks"] = {"block_size": 64, "offsets": "per_block"}  # format 7 says so, same chunks and step
    header["format_version"], header["bands"][0]["mean_log2_step"] = 7, MEAN_LOG2_STEPS[0]
    ruled = api.decompress_array(container_bytes(header, chunks))
    assert np.nanmax(np.abs(ruled - expected)) > 1e-4


@pytest.mark.parametrize(
    ("version", "syntax", "stride"),
    [
        (7, refine.SYNTAX_7, 1),
        (8, refine.SYNTAX_8, 1),
        (9, refine.SYNTAX_9, 4),
        (10, refine.SYNTAX, 4),
        (11, refine.SYNTAX, 4),
        (12, refine.SYNTAX, 4),
        (13, refine.SYNTAX, 4),
    ],
    ids=["format7", "format8", "format9", "format10", "format11", "format12", "format13"],
)
def test_files_decode_as_they_did(version, syntax, stride):
    """A file each format wrote, the current one included (tests/data: two bands, the second predicted from the first; 7
    and 8: 128 x 128, 4 looks, 10 % nodata, quality 9, format 8's made by the code of commit 85cd8eb; 9 and 10: 256 x
    256, a 4-look scene oversampled twice whose first band keeps inter-scale predictors, a no-data corner, quality 7,
    made by the code of d0e21ae and of the commit that added 10, its bands keeping phase laws (both) and a sign law (the
    second), their pixels kept on one row and column in 4; 11: format 10's decoded pixels coded again at quality 7 by
    the commit that added 11, 256x256 gain blocks; 12: a single-look scene and a second polarization of it, a no-data
    corner, quality 2, whose block offsets are capped at the bright threshold, made by the commit that added 12; 13: two
    int16 bands of dB stored as (dB + 30) x 100 with scale 0.01 and offset -30, a no-data corner, quality 3, made by the
    commit that added 13)
    decodes to the pixels it decoded to when written, whole, by window
    and band by band, with its refinement layer's syntax (format 7: its contexts; 8: no inter-scale predictors; 9: no
    sign laws) and gain blocks (10: 64x64): a change to the decoder that the encoder mirrors still fails here. The next
    version's rules read the older chunks as something else (13's next is refused)."""
    data = (DATA / f"format{version}.sarz").read_bytes()
    expected = np.load(DATA / f"format{version}.npy")
    header = api.read_header(data)
    assert header["format_version"] == version and [b["reference"] for b in header["bands"]] == [None, 0]
    grid = (slice(None), slice(None, None, stride), slice(None, None, stride))
    np.testing.assert_allclose(api.decompress_array(data)[grid], expected, rtol=1e-6, equal_nan=True)
    band_2 = api.decompress_array(data, band=2)[grid[1:]]
    np.testing.assert_allclose(band_2, expected[1], rtol=1e-6, equal_nan=True)
    window = decode_window(data, (16, 40, 100, 70), band=2)[grid[1:]]
    rows, cols = slice(40 // stride, -(-110 // stride)), slice(16 // stride, -(-116 // stride))  # 40, 16: on the grid
    np.testing.assert_allclose(window, expected[1, rows, cols], rtol=1e-6, equal_nan=True)
    assert layouts_from_header(header)[0][0].syntax == syntax
    with ContainerReader(data) as reader:
        chunks = [reader.read_chunk(i) for i in range(reader.n_chunks)]
    header["format_version"] = version + 1
    if version in (10, 11, 12):  # 11 is 10 with the gain blocks' side in the header, 12 is 11 with the offsets
        # capped, which none of format 11's file reaches, 13 is 12 with scaled bands, which format 12's file has not:
        # relabelled, they decode the same
        np.testing.assert_allclose(api.decompress_array(container_bytes(header, chunks))[grid], expected, rtol=1e-6)
        return
    with contextlib.suppress(ContainerError):  # or a corrupt stream
        relabelled = api.decompress_array(container_bytes(header, chunks))[grid]
        assert not np.allclose(relabelled, expected, equal_nan=True)


def test_gain_blocks_are_the_largest_side_the_tiles_hold():
    """Format 11's encoder writes 256-pixel gain blocks with its own tiles (1024 wide, 512k rows, or the raster's
    side), and a smaller side where tiles are narrower (tests force 128); a reader takes the header's side."""
    hold = layout_module.block_for_tiles
    assert hold(1024, 4096, 5000, 9000) == hold(900, 512, 900, 1024) == hold(70, 90, 70, 90) == BLOCK == 256
    assert hold(128, 128, 300, 250) == 128 and hold(1024, 64, 2048, 300) == 64
    arr = simulate_scene(300, 250, looks=4, seed=5)[0]
    data = api.compress_array(arr, quality=6).data
    header = api.read_header(data)
    assert header["gain_blocks"]["block_size"] == 256 and layouts_from_header(header)[0][0].block == 256


def test_a_format_10_file_with_other_gain_blocks_is_refused():
    """Before format 11 the gain blocks are 64 pixels a side whatever a header says."""
    with ContainerReader((DATA / "format10.sarz").read_bytes()) as reader:
        header = copy.deepcopy(reader.header)
    header["gain_blocks"]["block_size"] = 256
    with pytest.raises(ContainerError, match="gain"):
        layouts_from_header(header)


def test_bright_contexts_come_from_the_decoded_strip():
    """Eighths of a step below the range's top (a pixel at the top is context 0, two steps down and beyond the
    last)."""
    layout = _layout(4, 1)
    layout.refine_step = 0.1  # of the -20..10 dB range: 3 dB, eighths of 0.375 dB
    raw = np.array([[10.0, 9.5, 8.0, -20.0]], dtype=np.float32)
    assert bright_contexts(layout, raw).tolist() == [0, 1, 5, BRIGHT_CONTEXTS - 1]


def test_tiles_are_square_up_to_the_raster():
    """1024x1024 tiles; a raster narrower or shorter than that has tiles as wide or tall as it."""
    assert [layout_module.tile_size(w, h) for w, h in ((1, 1), (900, 1024), (20000, 300), (4096, 8192))] == [
        (1, 1),
        (900, 1024),
        (1024, 300),
        (1024, 1024),
    ]


def _header_of() -> dict:
    with ContainerReader(_small_sarz()) as reader:
        return reader.header


def test_bright_and_varint_helpers_round_trip():
    values = np.array([0, 1, 127, 128, 300, 2**31, 2**40], dtype=np.int64)
    decoded, used = varint_decode(varint_encode(values) + b"\x05", len(values))
    np.testing.assert_array_equal(decoded, values)
    assert used == len(varint_encode(values))
    rng = np.random.default_rng(0)
    contexts = np.full(100000, BRIGHT_CONTEXTS - 1, dtype=np.uint8)
    contexts[[3, 4]] = 0  # a context that is all bright: its flags cost nothing
    near = rng.choice(np.arange(10, 100000), 300, replace=False)
    contexts[near] = 2
    positions = np.sort(np.concatenate([[3, 4], near[:100], [99999]]))
    bright = BrightResiduals(positions, np.append(rng.integers(0, 4, positions.size - 1), 5000))
    data = bright.encode(contexts)
    back = BrightResiduals.decode(data, contexts)
    np.testing.assert_array_equal(back.positions, bright.positions)
    np.testing.assert_array_equal(back.steps, bright.steps)
    uninformed = bright.encode(np.full(100000, BRIGHT_CONTEXTS - 1, dtype=np.uint8))
    assert len(data) < 0.6 * len(uninformed)  # contexts that find the bright pixels make them cheap
    with pytest.raises(ContainerError):
        BrightResiduals.decode(data, contexts[:1000])
    for cut in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(ContainerError):
            BrightResiduals.decode(data[:cut], contexts)
    assert BrightResiduals.decode(b"", contexts).positions.size == 0


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_sar_crops_round_trip(shared_sar_dir, tmp_path):
    """Every crop in ../shared/sar-data: band 1 comes back with its size, dtype and georeferencing."""
    for src in sorted(shared_sar_dir.glob("*.tif")):
        sarz, out = tmp_path / f"{src.stem}.sarz", tmp_path / f"{src.stem}.tif"
        stats = api.compress_file(src, sarz, band=1)
        api.decompress_file(sarz, out)
        with rasterio.open(src) as a, rasterio.open(out) as b:
            assert (b.height, b.width, b.count, b.dtypes[0]) == (a.height, a.width, 1, a.dtypes[0]), src.name
            assert b.crs == a.crs and b.transform == a.transform, src.name
            assert b.descriptions[0] == a.descriptions[0], src.name
        assert stats.bpp == pytest.approx(8 * sarz.stat().st_size / (a.height * a.width)), src.name


@pytest.mark.parametrize("quality", [1, 2])
def test_linear_mean_is_kept_at_the_lowest_qualities(quality):
    """Block gains keep the linear mean within 2 % even at the coarsest steps, where the refinement layer
    clips bright speckle hard (a margin above the range without a cap broke this: 0.94-0.96)."""
    arr = simulate_scene(512, 512, looks=1, seed=5)[0]
    result = api.compress_array(arr, quality=quality)
    ratio = float(np.mean(result.reconstruction, dtype=np.float64) / np.mean(arr, dtype=np.float64))
    assert abs(ratio - 1.0) < 0.02, ratio


def test_compression_and_decompression_import_no_torch(tmp_path):
    """No network runs on either side, so neither may pay for importing torch (about 5 s a process)."""
    src = write_scene(tmp_path / "s.tif", 96, 80, seed=2)
    code = (
        "import sys\n"
        "from sar_compressor.engine import cli\n"
        f"assert cli.main(['-q', 'compress', {str(src)!r}, {str(tmp_path / 's.sarz')!r}]) == 0\n"
        f"assert cli.main(['-q', 'decompress', {str(tmp_path / 's.sarz')!r}, {str(tmp_path / 'd.tif')!r}]) == 0\n"
        f"assert cli.main(['info', {str(tmp_path / 's.sarz')!r}]) == 0\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "d.tif").exists()


def _three_strip_files(tmp_path, monkeypatch) -> tuple[bytes, bytes]:
    """Two .sarz of same-size rasters (different scenes), three chunks each."""
    monkeypatch.setattr(layout_module, "TILE", 512)
    files = []
    for seed in (1, 2):
        src = write_scene(tmp_path / f"s{seed}.tif", 1300, 64, seed=seed)
        api.compress_file(src, tmp_path / f"s{seed}.sarz")
        files.append((tmp_path / f"s{seed}.sarz").read_bytes())
    return files[0], files[1]


def test_a_header_spliced_with_another_files_chunks_is_refused(tmp_path, monkeypatch):
    """Issue 22 item 5: a .sarz made of one file's header and another's chunks (the same raster size, so every
    size agrees) decoded to garbage with exit 0 in format 5; in format 6 every combination is a ContainerError."""
    a, b = _three_strip_files(tmp_path, monkeypatch)
    assert api.read_header(a)["file_id"] != api.read_header(b)["file_id"]
    with ContainerReader(a) as ra, ContainerReader(b) as rb:
        assert ra.n_chunks == rb.n_chunks == 3
        start_a, start_b = ra._offsets[0], rb._offsets[0]
    splices = {
        "header of A, chunks and index of B": a[:start_a] + b[start_b:],
        "header of B, chunks and index of A": b[:start_b] + a[start_a:],
        "A with B's header CRC": a[: start_a - 4] + b[start_b - 4 : start_b] + a[start_a:],
        "A with B's file id": a[:6] + b[6:22] + a[22:],
    }
    for name, data in splices.items():
        with pytest.raises(ContainerError):
            api.decompress_array(data)
        out = tmp_path / "spliced.sarz"
        out.write_bytes(data)
        with pytest.raises(ContainerError):
            api.decompress_file(out, tmp_path / "spliced.tif")
        assert not (tmp_path / "spliced.tif").exists(), name
    np.testing.assert_array_equal(api.decompress_array(a), api.decompress_array(a))


def test_gdal_cache_follows_the_width_not_the_height(tmp_path, monkeypatch):
    """GDAL's block cache is sized to a few block rows of the raster's width: a fixed 256 MB filled with strips
    read once, so peak RSS grew with the height (22 MB per 8192-row strip at 512 pixels wide)."""
    from sar_compressor.engine.io.raster_io import GDAL_CACHE_MB, streaming_cache_mb

    assert streaming_cache_mb(512, "float32") == 16 and streaming_cache_mb(4096, "float32") == 32
    assert streaming_cache_mb(20000, "float32") == 157 and streaming_cache_mb(80000, "complex64") == GDAL_CACHE_MB
    seen = []
    original = api.bounded_gdal_cache
    monkeypatch.setattr(api, "bounded_gdal_cache", lambda mb: seen.append(mb) or original(mb))
    src = write_scene(tmp_path / "s.tif", 300, 4096, seed=1)
    api.compress_file(src, tmp_path / "s.sarz", quality=1)
    api.decompress_file(tmp_path / "s.sarz", tmp_path / "d.tif")
    assert seen == [32, 32]


@pytest.mark.parametrize("shape", [(1, 700), (700, 1), (3, 5), (300, 257), (256, 512)])
def test_cell_sums_are_exact_on_partial_cells_and_sides_shorter_than_a_cell(shape):
    """The block means' sums over f x f cells: a side shorter than a cell is one cell, not padded to a whole one
    (a 1-pixel-wide raster's tiles were 256 times the work of their pixels)."""
    a = np.arange(math.prod(shape), dtype=np.float64).reshape(shape)
    f = 256
    expected = [[a[r : r + f, c : c + f].sum() for c in range(0, shape[1], f)] for r in range(0, shape[0], f)]
    np.testing.assert_array_equal(cell_sums(a, f), expected)
