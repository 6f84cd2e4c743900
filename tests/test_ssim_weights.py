"""SSIM weights for the refinement layer's rate-distortion decisions (engine.ssim_weights): quiet areas weigh
more, the busiest share of a strip weighs 1, and the encoder uses them with the raster's range."""

from __future__ import annotations

import numpy as np
import pytest

from sar_compressor.engine import codec, ssim_weights
from sar_compressor.engine.errors import InputError
from sar_compressor.engine.metrics import SSIM_WINDOW, _gaussian_kernel


def _calm_and_busy(shape: tuple[int, int] = (96, 128)) -> np.ndarray:
    """dB: a calm left half (small texture) beside a busy right half (single-look-like speckle)."""
    rng = np.random.default_rng(3)
    x = rng.normal(-20.0, 5.6, shape)
    x[:, : shape[1] // 2] = rng.normal(-25.0, 0.5, (shape[0], shape[1] // 2))
    return x.astype(np.float32)


def test_blur_is_ssims_gaussian_window():
    x = np.random.default_rng(0).normal(size=(23, 31)).astype(np.float32)
    r = SSIM_WINDOW // 2
    p = np.pad(x.astype(np.float64), r, mode="reflect")
    k2 = np.outer(_gaussian_kernel(), _gaussian_kernel())
    expected = np.array(
        [[np.sum(p[i : i + SSIM_WINDOW, j : j + SSIM_WINDOW] * k2) for j in range(31)] for i in range(23)]
    )
    assert np.allclose(ssim_weights._blur(x), expected, atol=1e-5)


def test_quiet_areas_weigh_more_and_the_busiest_weigh_one():
    x = _calm_and_busy()
    w = ssim_weights.pixel_weights(x, span=40.0)
    assert w.dtype == np.float32 and w.shape == x.shape
    assert w.min() >= 1.0 and w.max() <= ssim_weights.MAX_WEIGHT
    assert np.mean(w == 1.0) == pytest.approx(ssim_weights.BUSY_FRACTION, abs=0.01)
    calm, busy = w[:, 10:50], w[:, 80:120]
    assert np.median(calm) > 4 * np.median(busy)


@pytest.mark.parametrize("shape", [(64, 64), (1, 9), (3, 200)])
def test_a_flat_strip_weighs_one_everywhere(shape):
    """No texture anywhere: nothing is quieter than anything else (and no division by zero)."""
    w = ssim_weights.pixel_weights(np.full(shape, -18.0, np.float32), span=30.0)
    assert np.all(w == 1.0)


def test_pooled_follows_the_wavelet_levels():
    w = np.arange(37 * 50, dtype=np.float32).reshape(37, 50)
    levels = ssim_weights.pooled(w, 3)
    assert [p.shape for p in levels] == [(19, 25), (10, 13), (5, 7)]
    assert levels[0][0, 0] == pytest.approx(np.mean(w[:2, :2]))
    assert all(np.all(p == 2.0) for p in ssim_weights.pooled(np.full((37, 50), 2.0, np.float32), 3))


def test_the_encoder_weighs_with_the_rasters_range(monkeypatch):
    spans = []
    original = ssim_weights.pixel_weights

    def spy(target: np.ndarray, span: float) -> np.ndarray:
        spans.append(span)
        return original(target, span)

    monkeypatch.setattr(ssim_weights, "pixel_weights", spy)
    intensity = 10.0 ** (_calm_and_busy((128, 128)) / 10.0)
    result = codec.compress_array(intensity, quality=3, kind="intensity")
    rng = codec.read_header(result.data)["range"]
    assert spans and all(s == pytest.approx(rng["vmax"] - rng["vmin"]) for s in spans)


def test_tuned_for_psnr_the_encoder_weighs_nothing(monkeypatch):
    """tune="psnr": no weights, a different (smaller, at the same quality) file that decodes the same way;
    an unknown tune is an InputError naming the choices."""
    calls = []
    original = ssim_weights.pixel_weights
    monkeypatch.setattr(ssim_weights, "pixel_weights", lambda t, span: calls.append(span) or original(t, span))
    intensity = 10.0 ** (_calm_and_busy((128, 128)) / 10.0)
    psnr = codec.compress_array(intensity, quality=3, kind="intensity", base="flat", tune="psnr")
    assert calls == []
    ssim = codec.compress_array(intensity, quality=3, kind="intensity", base="flat")
    assert calls and len(psnr.data) < len(ssim.data)
    for result in (psnr, ssim):
        np.testing.assert_array_equal(codec.decompress_array(result.data), result.reconstruction)
    with pytest.raises(InputError, match="tune must be one of ssim, psnr, got 'mse'"):
        codec.compress_array(intensity, quality=3, kind="intensity", tune="mse")
