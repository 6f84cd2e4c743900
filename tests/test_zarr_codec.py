"""The Sarz numcodecs codec: registry and entry point, a Zarr v2 cube read back through xarray/dask equal to a
direct decode of its chunks, frames of planes (leading axes, planes without a valid pixel), refusals."""

from __future__ import annotations

import importlib
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest

from sar_compressor.engine.api import compress_array, decompress_array
from sar_compressor.engine.errors import ContainerError, InputError
from sar_compressor.engine.simulate import simulate_scene

numcodecs = pytest.importorskip("numcodecs")
zarr = pytest.importorskip("zarr")
xr = pytest.importorskip("xarray")
from sar_compressor.engine.zarr_codec import Sarz  # noqa: E402 (after the optional dependencies' skip)

CHUNK = 256
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return simulate_scene(300, 384, seed=5)[0].astype(np.float32)


def test_registered_and_config_round_trip():
    codec = numcodecs.get_codec({"id": "sarz", "quality": 3, "kind": "intensity", "nodata": -1.0})
    assert isinstance(codec, Sarz) and codec.quality == 3 and codec.nodata == -1.0
    assert numcodecs.get_codec(codec.get_config()) == codec
    with pytest.raises(InputError, match="not both"):
        Sarz(quality=3, target_bpp=1.0)
    for value, name in ((float("nan"), "NaN"), (float("-inf"), "-Infinity")):  # strict JSON: no bare NaN token
        config = Sarz(nodata=value).get_config()
        assert config["nodata"] == name and json.loads(json.dumps(config), parse_constant=_refuse) == config
        again = numcodecs.get_codec(config).nodata
        assert again == value or (np.isnan(again) and np.isnan(value))


def _refuse(token: str) -> None:
    raise ValueError(f"not JSON: {token}")


def test_entry_point_declared():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    module, _, name = project["entry-points"]["numcodecs.codecs"]["sarz"].partition(":")
    assert getattr(importlib.import_module(module), name) is Sarz


def test_zarr_through_xarray_dask_equals_direct_decode(scene, tmp_path):
    """A (time, y, x) cube with edge chunks, written by xarray with the codec, read lazily through dask."""
    cube = np.stack([scene, scene[::-1]])
    cube[1, :40, :] = np.nan  # a nodata border: restored exactly
    codec = Sarz(quality=3, kind="intensity")
    data = xr.DataArray(cube, dims=("time", "y", "x")).chunk({"time": 1, "y": CHUNK, "x": CHUNK})
    xr.Dataset({"vv": data}).to_zarr(tmp_path / "cube.zarr", encoding={"vv": {"compressor": codec}})
    lazy = xr.open_zarr(tmp_path / "cube.zarr")["vv"]
    assert lazy.chunks is not None and lazy.encoding["compressor"] == codec
    read = lazy.values
    store = zarr.open(str(tmp_path / "cube.zarr" / "vv"), mode="r")
    direct = np.empty_like(cube)
    for t, i, j in itertools.product(range(2), range(2), range(2)):
        plane = decompress_array(store.store[f"{t}.{i}.{j}"])  # each chunk is a .sarz file of its own
        rows, cols = slice(i * CHUNK, (i + 1) * CHUNK), slice(j * CHUNK, (j + 1) * CHUNK)
        direct[t, rows, cols] = plane[: direct[t, rows, cols].shape[0], : direct[t, rows, cols].shape[1]]
    np.testing.assert_array_equal(read, direct)
    assert np.isnan(read[1, :40]).all() and np.isfinite(read[0]).all()
    assert store.nbytes_stored < cube.nbytes / 8


def test_frame_of_planes_and_all_invalid_plane(scene):
    codec = Sarz(quality=2, kind="intensity")
    block = np.stack([scene[:CHUNK, :CHUNK], np.full((CHUNK, CHUNK), np.nan, np.float32)])[None]
    decoded = codec.decode(codec.encode(block))
    assert decoded.shape == (2, CHUNK, CHUNK) and decoded.dtype == np.float32
    expected = decompress_array(compress_array(block[0, 0], quality=2, kind="intensity").data)
    np.testing.assert_array_equal(decoded[0], expected)
    assert np.isnan(decoded[1]).all()
    out = np.empty(block.shape, np.float32)
    assert codec.decode(codec.encode(block), out=out) is out and np.array_equal(out[0], decoded, equal_nan=True)
    with pytest.raises(ContainerError, match="damaged Sarz chunk"):
        codec.decode(codec.encode(block)[:-1])


def test_refusals():
    codec = Sarz()
    with pytest.raises(InputError, match="complex"):
        codec.encode(np.ones((8, 8), np.complex64))
    with pytest.raises(InputError, match="at least 2 axes"):
        codec.encode(np.ones(64, np.float32))
    with pytest.raises(ContainerError, match="not a Sarz chunk"):
        codec.decode(b"garbage")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"quality": 0}, "quality must be an integer in 1..12, got 0"),
        ({"target_bpp": -1}, "target_bpp must be a positive number of bits per pixel, got -1"),
        ({"kind": "sigma0"}, "unknown input kind 'sigma0'"),
        ({"tune": "mse"}, "tune must be one of ssim, psnr"),
        ({"scale": 0.0}, "scale must be finite and non-zero"),
        ({"scale": None}, "scale must be finite and non-zero"),
        ({"offset": "2"}, "scale must be finite and non-zero"),
        ({"kind": "complex"}, "codes real arrays: kind 'complex' fits none"),
        ({"nodata": "x"}, "nodata must be a number (or None), got 'x'"),
    ],
)
def test_bad_settings_are_refused_when_the_codec_is_made(settings, message):
    """They failed at the first chunk, after to_zarr had written the array's metadata (a half-made store), and a
    target with the per-chunk figure it became ('got -0.5' for -1 on a half-filled chunk)."""
    with pytest.raises(InputError, match=re.escape(message)):
        Sarz(**settings)


def test_a_target_is_per_valid_pixel_and_a_chunk_too_small_for_it_is_still_coded():
    """Zarr pads edge chunks with the fill value: a target over the padded chunk gave a 300x350 array in 256x256
    chunks 1.25 bpp of its pixels for 0.5 asked. A chunk too small to reach a target (its header alone) failed the
    whole write; it is coded at quality 1 with a warning. Pass 1's warnings reach the caller as Python warnings."""
    import zarr

    arr = simulate_scene(300, 350, looks=2, seed=1)[0].astype(np.float32)
    with pytest.warns(UserWarning, match="coded at quality 1"):  # the corner chunk (44x94 of 256x256) at 0.5
        stored = [zarr.array(arr[None], chunks=(1, 256, 256), compressor=Sarz(target_bpp=t)) for t in (0.5, 1.0)]
    for target, array in zip((0.5, 1.0), stored):
        assert target <= array.nbytes_stored * 8 / arr.size < 1.15 * target
    with pytest.warns(UserWarning, match="values are negative: not linear backscatter"):
        Sarz(quality=4).encode(np.where(np.arange(350) < 40, -arr, arr).astype(np.float32))


def test_a_target_leaves_an_undeclared_fill_out():
    """A fill compression finds without a nodata value (pp.undeclared_fill) is restored exactly, not coded: counted
    as data, a chunk with 29 % of it at -9999 took 1.41 bits per valid pixel for 1 asked."""
    import zarr

    db = (10 * np.log10(simulate_scene(256, 320, looks=4, seed=6)[0])).astype(np.float32)
    db[:, :92] = -9999.0
    with pytest.warns(UserWarning, match="hold -9999, far from the rest: taken for a fill"):
        stored = zarr.array(db, chunks=(256, 320), compressor=Sarz(target_bpp=1.0))
    assert 0.95 <= stored.nbytes_stored * 8 / np.count_nonzero(db != -9999.0) < 1.1  # metadata, mask: 1.05
    np.testing.assert_array_equal(stored[:][:, :92], db[:, :92])


def test_a_target_counts_the_zeros_coded_as_data():
    """Scattered no-signal zeros are coded as data (pp.coded_pixels): a target that counted them out gave a
    noise-clipped scene in 256x256 chunks 0.2245 bpp for 0.25 asked."""
    import zarr
    from test_products import _noise_clipped

    arr = _noise_clipped(512, 512)
    stored = zarr.array(arr, chunks=(256, 256), compressor=Sarz(target_bpp=0.25, kind="intensity"))
    assert 0.24 <= stored.nbytes_stored * 8 / arr.size <= 0.25


def test_warnings_are_said_once_and_zeros_are_fill_only_where_the_kind_says_so():
    """A write codes many chunks: each kind of warning comes once (64 chunks gave 39). A dB plane's zero fill is
    fill (pp.db_zero_fill: restored exactly, out of the target, which counts the data: 1.0 bpp of its rows); a
    plane of zeros alone is kept exactly, deflated."""
    import warnings

    import zarr

    arr = simulate_scene(512, 512, looks=2, seed=1)[0].astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zarr.array(arr, chunks=(64, 64), compressor=Sarz(target_bpp=0.5))
    assert len([w for w in caught if "Sarz codec" in str(w.message)]) == 1
    db = np.zeros((256, 256), np.float32)
    db[:56] = np.random.default_rng(0).normal(-10, 3, (56, 256))
    stored = zarr.array(db, chunks=(256, 256), compressor=Sarz(target_bpp=1.0, kind="db"))
    assert 0.9 < stored.nbytes_stored * 8 / (56 * 256) < 1.3  # 1.0 bpp of the data, Zarr's metadata, a header
    assert np.all(stored[56:] == 0)
    zeros = np.zeros((256, 256), np.float32)
    coded = Sarz(quality=4).encode(zeros)
    assert coded[:4] == b"SZCK" and np.array_equal(Sarz().decode(coded).reshape(zeros.shape), zeros)


def test_a_scale_factor_encoding_is_coded_in_the_values_it_means(scene, tmp_path):
    """xarray applies scale_factor before the codec: dB x 100 in int16 reached it as raw hundreds, coded native
    (mean 7.7 % off), with advice Zarr cannot follow. Sarz(scale=0.01) codes the dB they mean."""
    db = (10.0 * np.log10(scene)).astype(np.float32)
    encoding = {"dtype": "int16", "scale_factor": 0.01, "_FillValue": -32768}
    means = {}
    for name, codec in (
        ("scaled", Sarz(quality=5, nodata=-32768, scale=0.01)),
        ("raw", Sarz(quality=5, nodata=-32768)),
    ):
        path = tmp_path / f"{name}.zarr"
        xr.Dataset({"vv": xr.DataArray(db, dims=("y", "x"))}).to_zarr(
            path, encoding={"vv": {**encoding, "compressor": codec}}
        )
        read = xr.open_zarr(path)["vv"].values
        means[name] = float(np.mean(10.0 ** (read / 10.0)) / np.mean(10.0 ** (db / 10.0)))
    assert abs(means["scaled"] - 1.0) < 0.01 < abs(means["raw"] - 1.0)
    assert numcodecs.get_codec(Sarz(scale=0.01).get_config()).scale == 0.01


def test_an_array_without_a_scale_has_no_scale_in_its_metadata():
    """0.6's codec takes no scale or offset: an array that has none must not name them."""
    assert "scale" not in Sarz(quality=3).get_config() and "offset" not in Sarz(quality=3).get_config()
    assert Sarz(scale=0.01).get_config()["scale"] == 0.01


def test_a_chunk_of_sea_under_the_noise_is_coded_as_the_declared_intensity():
    """Noise less its mean is skewed: a chunk of sea under the noise floor has more negative values than positive
    ones (53.6 % in a sweep), and a Zarr write with kind="intensity" stopped there, half made, where the command
    line took the whole scene."""
    rng = np.random.default_rng(5)
    sea = (1e-4 + rng.gamma(4.4, 3e-3 / 4.4, (128, 128)) - 3e-3).astype(np.float32)  # -40 dB sea, -25 dB noise
    assert 0.5 < np.mean(sea < 0) < 0.75
    codec = Sarz(kind="intensity", nodata=np.array(-9999.0))  # a 0-d array is a number too
    decoded = codec.decode(codec.encode(sea))
    assert decoded.shape == sea.shape and np.all(decoded > 0)


@pytest.mark.parametrize("dtype", [">f4", ">u2"])
def test_a_big_endian_array_round_trips(scene, dtype):
    """xarray opens NetCDF3 as big-endian: its chunks were refused ("unsupported raster data type '>f4'; supported:
    ... float32"), after the array's metadata was on disk. Coded in native order, given back big-endian."""
    data = (scene * 1000).astype(dtype) if "u" in dtype else scene.astype(dtype)
    store = zarr.create(data.shape, chunks=(CHUNK, CHUNK), dtype=dtype, compressor=Sarz(quality=8))
    store[:] = data
    back = store[:]
    assert back.dtype == np.dtype(dtype)
    native = compress_array(np.ascontiguousarray(data[:CHUNK, :CHUNK]).astype(data.dtype.newbyteorder("=")), quality=8)
    assert np.array_equal(back[:CHUNK, :CHUNK], decompress_array(native.data))


def test_a_column_major_array_and_damaged_frames_are_refused_and_a_0d_nodata_fits_the_metadata(scene):
    """order='F' chunks decoded row-major and read back scrambled (correlation 0.01, no error); a frame of no plane
    raised numpy's ValueError; a 0-d array as nodata made the store's JSON metadata fail."""
    store = zarr.create(scene.shape, chunks=(CHUNK, 200), dtype="f4", compressor=Sarz(), order="F")
    with pytest.raises(InputError, match="row-major arrays: create the Zarr array with order='C'"):
        store[:] = scene
    with pytest.raises(ContainerError, match="a frame of no plane"):
        Sarz().decode(b"SZCK" + bytes(12))
    zarr.create((8, 8), dtype="f4", compressor=Sarz(nodata=np.array(-9999.0)))  # metadata written as JSON


def test_a_plane_that_inflates_past_its_frame_is_refused():
    """A forged frame's deflated plane inflated whole (a 1000-fold deflate of zeros), whatever its frame's size."""
    import struct
    import zlib

    bomb = zlib.compress(bytes(32 << 20), 9)
    frame = b"SZCK" + struct.pack("<III", 1, 8, 8) + struct.pack("<Q", len(bomb)) + bomb
    with pytest.raises(ContainerError, match="damaged Sarz chunk.*inflates past"):
        Sarz().decode(frame)
