"""SARCompressor: devices, batch sizes, strip encode/decode geometry, seamless halos, progress and cancel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sar_compressor.engine.compressor import SARCompressor, resolve_device
from sar_compressor.engine.errors import CancelledError, InputError, ModelError
from sar_compressor.engine.simulate import simulate_scene


@pytest.fixture(scope="module")
def comp(tiny_model_path) -> SARCompressor:
    return SARCompressor(tiny_model_path, device="cpu")


def _x01(height: int, width: int, seed: int = 0) -> np.ndarray:
    db = 10 * np.log10(simulate_scene(height, width, seed=seed)[0])
    return np.clip((db + 30) / 40, 0, 1).astype(np.float32)


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA was requested"):
            resolve_device("cuda")


def test_properties_and_model_sources(comp, tiny_model_path):
    assert comp.device_name == "CPU" and comp.batch_size == 4
    assert comp.n_qualities == 6 and comp.latent_channels == 16
    assert comp.loaded.path == tiny_model_path
    again = SARCompressor(comp.loaded, device="cpu", batch_size=2)
    assert again.loaded is comp.loaded and again.batch_size == 2
    with pytest.raises(InputError, match="batch size"):
        SARCompressor(comp.loaded, device="cpu", batch_size=0)
    with pytest.raises(ModelError, match="not found"):
        SARCompressor(tiny_model_path.parent / "missing.pt", device="cpu")


@pytest.mark.parametrize("shape", [(37, 53), (1, 1), (256, 256), (16, 300)])
def test_strip_shapes(comp, shape):
    y = comp.encode_strip(_x01(*shape) if min(shape) > 1 else np.full(shape, 0.5, np.float32))
    lat = (16, -(-shape[0] // 16), -(-shape[1] // 16))
    assert y.shape == lat and y.dtype == np.float32
    x = comp.decode_strip(y)
    assert x.shape == (16 * lat[1], 16 * lat[2])
    assert x.min() >= 0.0 and x.max() <= 1.0


def test_strips_with_halos_equal_one_tall_strip(comp):
    """Cutting a raster into 256-row strips with real 32-row halos gives the latents (and decoded pixels) of
    encoding it in one piece: the strip boundaries leave no trace."""
    x = _x01(512, 300, seed=3)
    whole = comp.encode_strip(x)
    top = comp.encode_strip(x[: 256 + 32], 0, 32)
    bottom = comp.encode_strip(x[256 - 32 :], 32, 0)
    np.testing.assert_allclose(np.concatenate([top, bottom], axis=1), whole, atol=1e-5)
    pixels = comp.decode_strip(whole)
    top_px = comp.decode_strip(whole[:, : 16 + 2], 0, 2)
    bottom_px = comp.decode_strip(whole[:, 16 - 2 :], 2, 0)
    np.testing.assert_allclose(np.concatenate([top_px, bottom_px]), pixels, atol=1e-5)


def test_batch_size_does_not_change_results(comp):
    x = _x01(256, 600, seed=1)
    one = SARCompressor(comp.loaded, device="cpu", batch_size=1)
    np.testing.assert_allclose(one.encode_strip(x), comp.encode_strip(x), atol=1e-5)


def test_progress_cancel_and_timing(comp):
    x = _x01(256, 1100)  # 5 tiles: batches of 4 + 1
    seen: list[int] = []
    before = comp.seconds_network
    comp.encode_strip(x, on_batch=seen.append)
    assert seen == [4, 1]
    assert comp.seconds_network > before
    with pytest.raises(CancelledError):
        comp.encode_strip(x, cancel=lambda: True)
    calls = []
    with pytest.raises(CancelledError):
        comp.decode_strip(np.zeros((16, 16, 80), np.float32), cancel=lambda: calls.append(1) or len(calls) > 1)
    assert len(calls) == 2  # stopped within one batch


def test_bad_strips(comp):
    with pytest.raises(InputError):
        comp.encode_strip(np.zeros((40, 40), np.float32), 30, 30)
    with pytest.raises(InputError):
        comp.encode_strip(np.zeros((40, 40), np.float32), 33, 0)
    with pytest.raises(InputError):
        comp.decode_strip(np.zeros((16, 4, 4), np.float32), 3, 0)


def test_array_round_trip_through_the_compressor(comp):
    arr = simulate_scene(70, 90, seed=4)[0]
    result = comp.compress_array(arr, quality=2)
    assert result.stats.quality == 2 and result.stats.bpp == pytest.approx(8 * len(result.data) / arr.size)
    np.testing.assert_array_equal(comp.decompress_array(result.data), result.reconstruction)
    assert result.reconstruction.dtype == np.float32
