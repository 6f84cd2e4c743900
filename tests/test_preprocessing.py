"""Preprocessing: kind detection, dB conversion and its inverse, nodata masks, robust range, [0, 1] scaling."""

from __future__ import annotations

import numpy as np
import pytest

from sar_compressor.engine.errors import InputError
from sar_compressor.engine.preprocessing import (
    FLOOR_DB,
    MAX_SAMPLE,
    NOISE_FLOOR,
    Range,
    check_dtype,
    clipped_fraction,
    db_to_linear,
    denormalize,
    detect_kind,
    from_db,
    linear_to_db,
    normalize,
    output_dtype,
    robust_range,
    sample_stride,
    sampled_pixels,
    strided_strips,
    to_db,
    valid_mask,
    zero_is_fill,
)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    ("dtype", "sample", "description", "tags", "expected"),
    [
        ("complex64", None, None, None, "complex"),
        ("complex128", None, "intensity", None, "complex"),
        ("float32", None, "VV sigma0 in dB", None, "db"),
        ("float32", None, None, {"UNITS": "decibel"}, "db"),
        ("float32", None, "sigma0_db", None, "db"),
        ("float32", None, "linear amplitude", None, "amplitude"),
        ("float32", None, "HH amp", None, "amplitude"),
        ("float32", None, "linear intensity AIRSAR L-band", None, "intensity"),
        ("float32", np.array([-25.0, -12.0, -3.0, 2.0], np.float32), "VV", None, "db"),
        ("float32", np.array([0.01, 0.2, 1.5], np.float32), None, None, "intensity"),
        ("float32", np.array([-500.0, -200.0, 1.0], np.float32), None, None, "native"),
        ("float64", None, "sandbox layer", None, "intensity"),
        ("uint16", np.array([100, 400, 2000], np.uint16), None, None, "amplitude"),
        ("uint8", None, None, None, "native"),
        ("uint8", None, "amplitude", None, "native"),
        ("uint16", np.array([0, 0, 30000, 31000, 32000, 33000], np.uint16), None, None, "native"),
        ("uint16", np.array([0, 100, 110, 120, 4000], np.uint16), "amplitude", None, "amplitude"),
        ("int16", None, "intensity", None, "intensity"),
    ],
)
def test_detect_kind_rules(dtype, sample, description, tags, expected):
    assert detect_kind(dtype, sample, description, tags) == expected


def test_detect_kind_ignores_non_finite_sample():
    sample = np.array([np.nan, -20.0, -15.0, np.inf], np.float32)
    assert detect_kind("float32", sample) == "db"


@pytest.mark.parametrize("dtype", ["int8", "uint64", "float16", np.dtype("int64")])
def test_unsupported_dtype_is_named(dtype):
    with pytest.raises(InputError, match=str(np.dtype(dtype))):
        check_dtype(dtype)
    with pytest.raises(InputError):
        detect_kind(dtype)


def test_unknown_kind():
    with pytest.raises(InputError, match="unknown input kind"):
        to_db(np.ones(3), "sigma")


def test_to_db_per_kind():
    np.testing.assert_allclose(to_db(np.array([1.0, 100.0, 0.001]), "intensity"), [0.0, 20.0, -30.0], atol=1e-5)
    np.testing.assert_allclose(to_db(np.array([10.0], np.float32), "amplitude"), [20.0], atol=1e-5)
    np.testing.assert_allclose(to_db(np.array([3 + 4j], np.complex64), "complex"), [10 * np.log10(25.0)], atol=1e-5)
    np.testing.assert_allclose(to_db(np.array([-12.5, 3.0]), "db"), [-12.5, 3.0])
    assert to_db(np.ones((2, 3), np.uint16), "amplitude").dtype == np.float32


def test_to_db_noise_floor():
    """Linear values <= 0 or non-finite take the noise floor (float32's smallest normal, -379.3 dB); any positive
    float32 above it keeps its dB (1e-30: -300 dB; an amplitude of 1e-30 squares below it)."""
    floor = np.float32(10 * np.log10(NOISE_FLOOR))
    bad = np.array([0.0, -1.0, np.nan, np.inf, -np.inf], np.float32)
    for kind in ("intensity", "amplitude"):
        np.testing.assert_array_equal(to_db(bad, kind), np.full(5, floor, np.float32))
    assert to_db(np.array([1e-30], np.float32), "intensity")[0] == pytest.approx(-300.0, abs=1e-3)
    assert to_db(np.array([1e-30], np.float32), "amplitude")[0] == floor
    assert to_db(np.array([np.nan + 0j], np.complex64), "complex")[0] == floor
    np.testing.assert_array_equal(to_db(np.array([np.nan, -np.inf]), "db"), np.full(2, FLOOR_DB, np.float32))


@pytest.mark.parametrize(
    ("kind", "dtype"),
    [
        ("intensity", "float32"),
        ("intensity", "float64"),
        ("amplitude", "float32"),
        ("db", "float32"),
        ("db", "float64"),
    ],
)
def test_float_round_trip(kind, dtype):
    values = RNG.uniform(0.001, 50.0, 1000).astype(dtype)
    if kind == "db":
        values = (values - 40).astype(dtype)
    back = from_db(to_db(values, kind), kind, dtype)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_allclose(back, values, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize(("kind", "dtype"), [("amplitude", "uint16"), ("intensity", "uint8"), ("amplitude", "int16")])
def test_integer_round_trip_is_exact(kind, dtype):
    info = np.iinfo(dtype)
    values = RNG.integers(1, info.max, 2000).astype(dtype)
    back = from_db(to_db(values, kind), kind, dtype)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, values)


def test_integer_output_rounds_and_clips():
    np.testing.assert_array_equal(from_db(np.array([200.0, -200.0]), "intensity", "uint8"), [255, 0])
    np.testing.assert_array_equal(from_db(np.array([200.0]), "db", "int16"), [200])
    np.testing.assert_array_equal(from_db(np.array([1e6, -1e6]), "db", "int16"), [32767, -32768])
    np.testing.assert_array_equal(from_db(np.array([10 * np.log10(2.6)]), "intensity", "uint16"), [3])


def test_zero_comes_back_as_zero():
    values = np.array([0, 5, 0], np.uint16)
    np.testing.assert_array_equal(from_db(to_db(values, "amplitude"), "amplitude", "uint16"), values)


def test_complex_decompresses_to_float32_intensity():
    z = np.array([3 + 4j, 1j], np.complex64)
    out = from_db(to_db(z, "complex"), "complex", "complex64")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [25.0, 1.0], rtol=1e-5)
    assert output_dtype("complex", "complex64") == "float32"
    assert output_dtype("intensity", "uint16") == "uint16"


def test_valid_mask():
    arr = np.array([1.0, np.nan, np.inf, -9999.0, 0.0], np.float32)
    np.testing.assert_array_equal(valid_mask(arr), [True, False, False, True, True])
    np.testing.assert_array_equal(valid_mask(arr, -9999.0), [True, False, False, False, True])
    np.testing.assert_array_equal(valid_mask(arr, float("nan")), [True, False, False, True, True])
    np.testing.assert_array_equal(valid_mask(np.array([0, 3, 0], np.uint16), 0), [False, True, False])
    np.testing.assert_array_equal(valid_mask(np.array([1 + 1j, np.nan], np.complex64)), [True, False])
    np.testing.assert_array_equal(valid_mask(np.array([-80.0, -100.0]), None), [True, True])


def test_linear_helpers_are_inverse():
    db = np.linspace(-40, 30, 50, dtype=np.float32)
    np.testing.assert_allclose(linear_to_db(db_to_linear(db)), db, atol=1e-4)
    assert db_to_linear(np.array([10.0]))[0] == pytest.approx(10.0)


def test_range_dict_round_trip():
    rng = Range(-25.5, 7.25)
    assert Range.from_dict(rng.to_dict()) == rng
    assert rng.span == pytest.approx(32.75)
    for bad in ({"vmin": 1.0}, {"vmin": 2.0, "vmax": 1.0}, {"vmin": "x", "vmax": 1}, {"vmin": float("nan"), "vmax": 1}):
        with pytest.raises(InputError):
            Range.from_dict(bad)


def test_robust_range_percentiles_and_invalid_values():
    values = np.concatenate([np.linspace(-30, 10, 10001, dtype=np.float32), [np.nan, np.inf]])
    rng = robust_range(values)
    assert rng.vmin == pytest.approx(-30 + 40 * 0.005, abs=1e-3)
    assert rng.vmax == pytest.approx(-30 + 40 * 0.999, abs=1e-3)
    narrow = robust_range(values, lo=5, hi=95)
    assert narrow.vmin > rng.vmin and narrow.vmax < rng.vmax


def test_robust_range_errors_and_constant_image():
    with pytest.raises(InputError, match="no valid pixels"):
        robust_range(np.full(10, np.nan))
    with pytest.raises(InputError, match="no valid pixels"):
        robust_range(np.zeros(0))
    rng = robust_range(np.full(100, -12.0))
    assert rng.vmin < -12.0 < rng.vmax
    assert rng.span == pytest.approx(1.0)


def test_normalize_denormalize():
    rng = Range(-20.0, 10.0)
    db = np.array([-30.0, -20.0, -5.0, 10.0, 40.0, np.nan], np.float32)
    x = normalize(db, rng)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, [0.0, 0.0, 0.5, 1.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(denormalize(x[1:4], rng), db[1:4], atol=1e-5)
    assert clipped_fraction(db[:5], rng) == pytest.approx(0.4)
    assert clipped_fraction(db[:5], rng, mask=np.array([False, True, True, True, True])) == pytest.approx(0.25)


def _grid(arr: np.ndarray, strip_rows: int, max_values: int) -> np.ndarray:
    rows, cols = arr.shape
    strips = strided_strips(lambda r0, r1: arr[r0:r1], rows, cols, strip_rows, max_values)
    return np.concatenate([grid for *_, grid in strips], axis=0)


@pytest.mark.parametrize("strip_rows", [1, 7, 64, 500])
def test_the_sampling_grid_is_strided_and_strip_independent(strip_rows):
    """Every k-th row and column of the raster whatever its strips, as many as sampled_pixels says."""
    arr = RNG.uniform(0.01, 1.0, (301, 257)).astype(np.float32)
    step = sample_stride(301, 257, max_values=5000)
    got = _grid(arr, strip_rows, 5000)
    np.testing.assert_array_equal(got, arr[::step, ::step])
    assert got.size <= 5000 and got.size == sampled_pixels(301, 257, strip_rows, 5000)


def test_the_sampling_grid_of_a_small_raster_is_all_of_it():
    arr = RNG.uniform(0.1, 1.0, (20, 30)).astype(np.float32)
    np.testing.assert_array_equal(_grid(arr, 8, MAX_SAMPLE), arr)
    assert sampled_pixels(0, 10, 8) == 0


def test_real_crops_are_detected(shared_sar_dir):
    from sar_compressor.engine.io.raster_io import RasterReader

    expected = {
        "airsar_sf_T11_900x1024.tif": "intensity",
        "sanfrancisco_airsar_C11.tif": "intensity",
        "sen1floods11_spain_vv_vh_db.tif": "db",
        "gefolki_s1_patch_rescaled.tif": "intensity",
    }
    for name, kind in expected.items():
        with RasterReader(shared_sar_dir / name) as reader:
            info = reader.info
            sample = reader.read_rows(1, 0, 64)
            tags = {**info.tags, **info.band_tags[0]}
            assert detect_kind(info.dtype, sample, info.descriptions[0], tags) == kind, name
            read = lambda r0, r1: reader.read_rows(1, r0, r1)  # noqa: E731
            grid = np.concatenate([g.ravel() for *_, g in strided_strips(read, info.height, info.width, 100)])
            values = to_db(grid, kind)[valid_mask(grid, info.nodata, zero_is_fill(kind, grid.dtype))]
        rng = robust_range(values)
        assert -60 < rng.vmin < rng.vmax < 40
