"""SSIM weights for the refinement layer's rate-distortion decisions (engine.codec.entropy.ssim_weights): quiet
areas weigh more, the busiest share of the raster weighs 1, and the encoder uses them with the raster's range and one
reference for the whole raster, measured in pass 1 (engine.codec.passes.survey)."""

from __future__ import annotations

import numpy as np
import pytest

from sar_compressor.engine import api
from sar_compressor.engine import preprocessing as pp
from sar_compressor.engine.codec.entropy import ssim_weights
from sar_compressor.engine.codec.format import layout
from sar_compressor.engine.codec.passes import survey
from sar_compressor.engine.errors import InputError
from sar_compressor.engine.io.raster_io import RasterInfo
from sar_compressor.engine.metrics import SSIM_WINDOW, gaussian_kernel


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
    k2 = np.outer(gaussian_kernel(), gaussian_kernel())
    expected = np.array(
        [[np.sum(p[i : i + SSIM_WINDOW, j : j + SSIM_WINDOW] * k2) for j in range(31)] for i in range(23)]
    )
    assert np.allclose(ssim_weights.blur(x), expected, atol=1e-5)


def _own_scale(x: np.ndarray, span: float) -> ssim_weights.SsimScale:
    """The scale measured on `x` itself, whole."""
    return ssim_weights.SsimScale(span, ssim_weights.reference([(x, np.ones(x.shape, bool))], span, margin=0))


def test_quiet_areas_weigh_more_and_the_busiest_weigh_one():
    x = _calm_and_busy()
    w = ssim_weights.pixel_weights(x, _own_scale(x, 40.0))
    assert w.dtype == np.float32 and w.shape == x.shape
    assert w.min() >= 1.0 and w.max() <= ssim_weights.MAX_WEIGHT
    assert np.mean(w == 1.0) == pytest.approx(ssim_weights.BUSY_FRACTION, abs=0.01)
    calm, busy = w[:, 10:50], w[:, 80:120]
    assert np.median(calm) > 4 * np.median(busy)


@pytest.mark.parametrize("shape", [(64, 64), (1, 9), (3, 200)])
def test_a_flat_strip_weighs_one_everywhere(shape):
    """No texture anywhere: nothing is quieter than anything else (and no division by zero)."""
    flat = np.full(shape, -18.0, np.float32)
    w = ssim_weights.pixel_weights(flat, _own_scale(flat, 30.0))
    assert np.all(w == 1.0)


def test_the_reference_leaves_out_invalid_pixels_and_block_margins():
    x = _calm_and_busy((96, 128))
    calm_only = np.zeros(x.shape, bool)
    calm_only[:, :64] = True
    whole = ssim_weights.reference([(x, np.ones(x.shape, bool))], 40.0, margin=0)
    calm = ssim_weights.reference([(x, calm_only)], 40.0, margin=0)
    assert calm > 4 * whole  # calm pixels only: a higher sensitivity at the same quantile
    # a margin the size of the window: the pixels next to the calm/busy edge of a block stay out
    framed = np.pad(x[:, 64:], SSIM_WINDOW // 2, mode="constant", constant_values=-25.0)
    inner = ssim_weights.reference([(framed, np.ones(framed.shape, bool))], 40.0, margin=SSIM_WINDOW // 2)
    assert inner == pytest.approx(ssim_weights.reference([(x[:, 64:], np.ones((96, 64), bool))], 40.0, 0), rel=0.2)
    # nothing valid: plain squared error everywhere
    none = ssim_weights.reference([(x, np.zeros(x.shape, bool))], 40.0, margin=0)
    assert np.all(ssim_weights.pixel_weights(x, ssim_weights.SsimScale(40.0, none)) == 1.0)


def _info(height: int, width: int) -> RasterInfo:
    return RasterInfo(width=width, height=height, count=1, dtype="float32", nodata=None, descriptions=[None])


def _survey(db: np.ndarray) -> survey.Survey:
    intensity = (10.0 ** (db / 10.0)).astype(np.float32)
    return survey.survey_band(_info(*db.shape), lambda r0, r1: intensity[r0:r1], "intensity", ssim=True)


def test_a_small_rasters_reference_is_measured_on_all_of_it():
    """Up to TEXTURE_PIXELS the survey's reference is the one measured on the whole clipped raster: what the
    encoder of a one-strip raster would measure on its strip."""
    db = _calm_and_busy((700, 96))  # two 512-row reads
    result = _survey(db)
    clipped = np.clip(pp.to_db(10.0 ** (db / 10.0), "intensity"), result.rng.vmin, result.rng.vmax)
    assert result.ssim == _own_scale(clipped.astype(np.float32), result.rng.span)
    assert survey.survey_band(_info(*db.shape), lambda r0, r1: db[r0:r1], "db").ssim is None


def test_a_large_rasters_reference_comes_from_bounded_tiles(monkeypatch):
    """Beyond TEXTURE_PIXELS: tiles spread over the raster, about TEXTURE_PIXELS of them, give about the
    whole raster's reference."""
    db = _calm_and_busy((1100, 640))
    whole = _survey(db).ssim
    kept = []
    monkeypatch.setattr(survey, "TEXTURE_PIXELS", 100_000)
    monkeypatch.setattr(survey, "TEXTURE_TILE", 64)
    original = ssim_weights.reference
    monkeypatch.setattr(ssim_weights, "reference", lambda b, s, m: kept.append(b) or original(b, s, m))
    tiled = _survey(db).ssim
    pixels = sum(block.size for block, _ in kept[0])
    assert 50_000 < pixels <= 100_000 + 64 * 64
    assert {block.shape for block, _ in kept[0]} == {(64, 64)}
    assert tiled.span == whole.span and tiled.reference == pytest.approx(whole.reference, rel=0.25)


def test_pooled_follows_the_wavelet_levels():
    w = np.arange(37 * 50, dtype=np.float32).reshape(37, 50)
    levels = ssim_weights.pooled(w, 3)
    assert [p.shape for p in levels] == [(19, 25), (10, 13), (5, 7)]
    assert levels[0][0, 0] == pytest.approx(np.mean(w[:2, :2]))
    assert levels[2][0, 0] == pytest.approx(np.mean(w[:8, :8]))  # averaged from the untempered level below


def test_the_second_finest_levels_weights_are_tempered():
    """Full SSIM weights on the second-finest level (4x4 pixels, much of the 5x5 means analysts multilook) moved
    its bits from busy areas to quiet ones: their fourth root there measured +0.108 / +0.107 / +0.021 dB of
    multilooked PSNR on the real crops at 0.25 / 0.5 / 1 bpp, for SSIM -0.0017 to -0.0037."""
    pooled = ssim_weights.pooled(np.full((37, 50), 16.0, np.float32), 4)
    assert [float(p[0, 0]) for p in pooled] == pytest.approx([16.0, 2.0, 16.0, 16.0])
    assert ssim_weights.LEVEL_EXPONENTS == (1.0, 0.25)


def test_the_encoder_weighs_every_strip_with_the_rasters_scale(monkeypatch):
    """One scale for all strips (the base trial's too): its range is the raster's, and its reference does not
    follow a strip's own content (three strips here: calm, half busy, calm), so the same calm texture weighs
    the same beside calm water and beside a city (a per-strip reference weighed it up to 16 times more there)."""
    scales, weights = [], []
    original = ssim_weights.pixel_weights

    def spy(target: np.ndarray, scale: ssim_weights.SsimScale) -> np.ndarray:
        scales.append(scale)
        weights.append(original(target, scale))
        return weights[-1]

    monkeypatch.setattr(ssim_weights, "pixel_weights", spy)
    monkeypatch.setattr(layout, "TILE", 512)  # 512-row tiles on a narrow raster
    db = _calm_and_busy((1100, 64))
    db[:, 32:] = np.where(np.arange(1100)[:, None] // 512 == 1, db[:, 32:], db[:, :32])
    result = api.compress_array(10.0 ** (db / 10.0), quality=3, kind="intensity")
    rng = api.read_header(result.data)["bands"][0]["range"]
    assert [w.shape for w in weights[-3:]] == [(512, 64), (512, 64), (76, 64)]
    calm_beside_calm, calm_beside_busy = (float(np.mean(w[:, :24])) for w in weights[-3:-1])
    assert calm_beside_busy == pytest.approx(calm_beside_calm, rel=0.1)  # no step at the strip boundary
    assert len(set(scales)) == 1
    assert scales[0].span == pytest.approx(rng["vmax"] - rng["vmin"])


def test_tuned_for_psnr_the_encoder_weighs_nothing(monkeypatch):
    """tune="psnr": no weights, a different (smaller, at the same quality) file that decodes the same way;
    an unknown tune is an InputError naming the choices."""
    calls = []
    original = ssim_weights.pixel_weights
    monkeypatch.setattr(ssim_weights, "pixel_weights", lambda t, scale: calls.append(scale) or original(t, scale))
    intensity = 10.0 ** (_calm_and_busy((128, 128)) / 10.0)
    psnr = api.compress_array(intensity, quality=3, kind="intensity", tune="psnr")
    assert calls == []
    ssim = api.compress_array(intensity, quality=3, kind="intensity")
    assert calls and len(psnr.data) < len(ssim.data)
    for result in (psnr, ssim):
        np.testing.assert_array_equal(api.decompress_array(result.data), result.reconstruction)
    with pytest.raises(InputError, match="tune must be one of ssim, psnr, got 'mse'"):
        api.compress_array(intensity, quality=3, kind="intensity", tune="mse")
