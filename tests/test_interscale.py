"""Inter-scale prediction (engine.codec.transform.interscale, format 9): the finest level's LH and HL predicted
from the approximation above them, fitted per tile where it saves bits; bit-exact round trips, its side
information, and only ContainerError for damaged predictors."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from sar_compressor.engine.codec.entropy import refine
from sar_compressor.engine.codec.transform import interscale, wavelet
from sar_compressor.engine.errors import ContainerError


def test_fit_finds_a_filter_that_made_the_subband():
    """A subband that is a 7x7 filter of the approximation (plus a little noise) gets that filter back."""
    rng = np.random.default_rng(0)
    approx = rng.normal(size=(130, 150))
    true = interscale.Predictor(10, rng.integers(-60, 60, len(interscale.OFFSETS)).astype(np.int8))
    target = true.apply(approx, (129, 150)) + rng.normal(scale=0.01, size=(129, 150))
    fitted = interscale.fit(approx, target)
    assert fitted is not None
    np.testing.assert_allclose(fitted.taps * 2.0**-fitted.shift, true.taps * 2.0**-true.shift, atol=1e-3)


def test_fit_refuses_what_it_cannot_predict():
    """White noise (single-look speckle's finest subbands) and subbands too small to fit get no predictor."""
    rng = np.random.default_rng(1)
    approx = rng.normal(size=(256, 256))
    assert interscale.fit(approx, rng.normal(size=(256, 256))) is None
    assert interscale.fit(approx[:20, :20], rng.normal(size=(20, 20))) is None


def test_prediction_reads_the_approximation_at_the_subband_grid():
    """LH is a row shorter on odd heights and HL a column narrower on odd widths: the approximation's top-left
    part is their grid; a smaller approximation is a programming error."""
    approx = np.arange(35.0).reshape(5, 7)
    p = interscale.Predictor(0, np.ones(len(interscale.OFFSETS), dtype=np.int8))
    assert p.apply(approx, (4, 7)).shape == (4, 7) and p.apply(approx, (5, 6)).shape == (5, 6)
    with pytest.raises(ValueError):
        p.apply(approx, (6, 7))


def test_side_information_round_trips_and_refuses_damage():
    taps = np.arange(-24, 24, dtype=np.int8)
    empty = [None] * interscale.SLOTS
    one = [interscale.Predictor(9, taps) if i == interscale.slot(1, 0) else None for i in range(interscale.SLOTS)]
    last = [interscale.Predictor(0, -taps) if i == interscale.slot(4, 1) else None for i in range(interscale.SLOTS)]
    for predictors in (empty, one, last):
        decoded = interscale.decode(interscale.encode(predictors))
        assert [p is None for p in decoded] == [p is None for p in predictors]
        for mine, theirs in zip(predictors, decoded):
            if mine is not None:
                assert mine.shift == theirs.shift and np.array_equal(mine.taps, theirs.taps)
    good = interscale.encode(one)
    for damaged in (b"", b"\x04", good[:-1], good + b"\x00", bytes([1, 99]) + good[2:]):
        with pytest.raises(ContainerError, match="inter-scale"):
            interscale.decode(damaged)


@pytest.mark.parametrize("shape", [(256, 256), (200, 301)])
def test_an_oversampled_tile_predicts_its_finest_level_and_decodes_to_the_bit(shape, oversampled):
    """On an oversampled scene both LH and HL keep a predictor; the file takes 5-25 % fewer bytes (measured 5-24 %,
    signs at a bit each and no phase prediction on both sides: those find some of the same structure) for an error
    within 10 % of the unpredicted one's (measured 0.71-0.72x at step 4, 1.04-1.07x at 1-2; rate control turns the bytes
    into PSNR); the decoder's image and its overviews are the encoder's to the bit, and encoding twice gives the same
    bytes."""
    target = oversampled(*shape)
    base = refine.FlatBase(float(target.mean()), shape)
    for step in (4.0, 1.0):
        alone = {"model_signs": False, "predict_phases": False}
        payload, (refined, coarse) = refine.encode_levels(target, base, step, (0, 2), **alone)
        plain, (unpredicted, _) = refine.encode_levels(target, base, step, (0, 2), predict_scales=False, **alone)
        assert refine.predicted_subbands(payload, reference=False) >= 2
        assert refine.predicted_subbands(plain, reference=False) == 0
        assert 0.75 * len(plain) < len(payload) < 0.95 * len(plain)
        assert np.mean((refined - target) ** 2) < 1.1 * np.mean((unpredicted - target) ** 2)
        decoded, overview = refine.decode_levels(payload, base, step, (0, 2))
        assert decoded.tobytes() == refined.tobytes() and overview.tobytes() == coarse.tobytes()
        assert refine.encode_levels(target, base, step, (0, 2), **alone)[0] == payload


def test_a_predicted_band_keeps_its_predictors_apart_from_its_weights(oversampled):
    """With a reference band the side holds both weight lists, then the predictors."""
    target = oversampled(256, 256, seed=2)
    reference = 0.6 * target + 0.4 * oversampled(256, 256, seed=5)
    base = refine.FlatBase(float(target.mean()), target.shape)
    payload, refined = refine.encode(target, base, 2.0, reference=reference)
    assert refine.predicted_subbands(payload, reference=True) > 0
    assert refine.decode(payload, base, 2.0, reference).tobytes() == refined.tobytes()


def test_format_8_syntax_has_no_predictors(oversampled):
    """A format 8 reader takes the predictors for a side of the wrong size; format 9's reads a format 8 side as
    damaged (tests/test_codec.py decodes a format 8 file as it was written)."""
    target = oversampled(128, 128)
    base = refine.FlatBase(float(target.mean()), target.shape)
    payload, _ = refine.encode(target, base, 2.0)
    with pytest.raises(ContainerError, match="side information"):
        refine.decode(payload, base, 2.0, syntax=refine.SYNTAX_8)


def test_split_reconstruction_is_the_whole_transform():
    """Without predictors the finest level added after the approximation gives the whole inverse to the bit (what
    lets a tile that keeps none decode as format 8 did)."""
    x = np.random.default_rng(4).normal(size=(97, 130))
    levels = wavelet.max_levels(x.shape, 8)
    ll, details = wavelet.forward(x, levels)
    approx = wavelet.inverse(ll, details[:-1])
    assert wavelet.inverse(approx, details[-1:]).tobytes() == wavelet.inverse(ll, details).tobytes()


def test_a_scene_four_times_oversampled_predicts_the_level_above_too(oversampled):
    """Four times finer than its resolution, a scene's finest level is empty and the next one is what its level
    above predicts: that level keeps predictors (bits 2-3 of the flags), the file takes 10-22 % fewer bytes
    (measured at steps 4 to 1 without phase prediction, which finds some of the same structure: with it, 5 % at
    step 1), and it decodes to the encoder's image and overviews to the bit, with phase prediction too."""
    target = oversampled(512, 512, factor=4)
    base = refine.FlatBase(float(target.mean()), target.shape)
    for step in (4.0, 1.0):
        plain, _ = refine.encode_levels(target, base, step, (0, 1, 3), predict_scales=False, predict_phases=False)
        assert len(refine.encode_levels(target, base, step, (0, 1, 3), predict_phases=False)[0]) < 0.92 * len(plain)
        payload, images = refine.encode_levels(target, base, step, (0, 1, 3))
        _, n_bands, side_len = refine._HEAD.unpack_from(payload)
        side = zlib.decompress(payload[refine._HEAD.size : refine._HEAD.size + side_len])
        predictors = interscale.decode(interscale.split(side[n_bands:])[0])
        assert any(predictors[interscale.slot(2, band)] for band in interscale.BANDS)
        for mine, theirs in zip(images, refine.decode_levels(payload, base, step, (0, 1, 3))):
            assert mine.tobytes() == theirs.tobytes()


def test_a_predictor_for_a_level_the_tile_lacks_is_refused():
    """A small tile (two wavelet levels) whose side names a predictor for level 3 is damaged, not decoded."""
    target = np.random.default_rng(5).normal(size=(12, 12)).astype(np.float32)
    base = refine.FlatBase(0.0, target.shape)
    payload, _ = refine.encode(target, base, 0.5)
    levels, n_bands, side_len = refine._HEAD.unpack_from(payload)
    assert levels == 2
    side = zlib.decompress(payload[refine._HEAD.size : refine._HEAD.size + side_len])
    slots = [None] * interscale.SLOTS
    slots[interscale.slot(3, 0)] = interscale.Predictor(0, np.ones(len(interscale.OFFSETS), dtype=np.int8))
    new_side = zlib.compress(side[:n_bands] + interscale.encode(slots) + interscale.split(side[n_bands:])[1])
    damaged = refine._HEAD.pack(levels, n_bands, len(new_side)) + new_side + payload[refine._HEAD.size + side_len :]
    with pytest.raises(ContainerError, match="level the tile does not have"):
        refine.decode(damaged, base, 0.5)
