"""Sign contexts (format 10): laws fitted where they pay, side information checked, lossless and bit-exact."""

import zlib

import numpy as np
import pytest

from sar_compressor.engine.codec.entropy import refine, sign_contexts
from sar_compressor.engine.codec.entropy.codes import TOTAL, quantize_pmf
from sar_compressor.engine.errors import ContainerError


def _laws(payload: bytes) -> sign_contexts.Laws:
    _, n_bands, side_len = refine._HEAD.unpack_from(payload)
    side = zlib.decompress(payload[refine._HEAD.size : refine._HEAD.size + side_len])
    return sign_contexts.decode(refine.interscale.split(side[n_bands:])[1], n_bands - 1)


def test_laws_round_trip_and_damage_is_refused():
    laws = [None, sign_contexts.SignLaw(12, -3), None, None, sign_contexts.SignLaw(-64, 64)] + [None] * 9
    data = sign_contexts.encode(laws)
    assert len(data) == 2 + 2 * 2 and sign_contexts.decode(data, len(laws)) == laws
    assert sign_contexts.decode(sign_contexts.encode([None] * 3), 3) == [None] * 3
    out_of_range = data[:2] + bytes([12, 0x80]) + data[4:]  # -128
    for damaged in (b"", data[:-1], data + b"\x00", out_of_range, bytes([0, 0x40])):
        with pytest.raises(ContainerError, match="sign law"):
            sign_contexts.decode(damaged, len(laws))


def test_a_law_is_fitted_where_neighbours_agree_and_not_on_noise():
    """Signs that mostly follow their horizontal neighbours get a positive across weight and no along weight to
    speak of; independent signs get no law (it would not pay for its two bytes)."""
    rng = np.random.default_rng(1)
    across = rng.integers(-2, 3, 20000)
    along = rng.integers(-2, 3, 20000)
    follows = rng.random(20000) < 1 / (1 + np.exp(-across))  # logit = across: weight SCALE
    law = sign_contexts.fit(across, along, follows)
    assert law is not None and abs(law.across - sign_contexts.SCALE) <= 1 and abs(law.along) <= 1
    assert sign_contexts.fit(across, along, rng.random(20000) < 0.5) is None
    assert sign_contexts.fit(across[:100], along[:100], follows[:100]) is None  # too few signs to pay


def test_sign_tables_do_not_depend_on_the_last_bits_of_exp():
    """Every context's 16-bit frequencies come out the same when the logistic is off by far more than any libm
    errs (1e-12 relative): they are a function of the integers alone, on every machine."""
    for z in range(-4 * sign_contexts.MAX_WEIGHT, 4 * sign_contexts.MAX_WEIGHT + 1):
        f = sign_contexts.freqs(z)
        assert f.sum() == TOTAL and f.min() >= 1
        p = 1.0 / (1.0 + np.exp(-z / sign_contexts.SCALE))
        for q in (p * (1 - 1e-12), min(p * (1 + 1e-12), 1.0)):
            assert np.array_equal(quantize_pmf(np.array([1.0 - q, q])), f), z


@pytest.mark.parametrize("shape", [(256, 256), (200, 301)])
def test_sign_contexts_save_bytes_and_change_no_pixel(shape, oversampled):
    """On a scene whose features span neighbouring samples (oversampled twice) laws are kept and the tile takes
    fewer bytes (measured 1.2 % at step 2, 4.1-4.2 % at step 1), the reconstruction is the same to the bit (signs
    are coded, not changed), the decoder's image and overviews are the encoder's, and encoding twice gives the
    same bytes."""
    target = oversampled(*shape)
    base = refine.FlatBase(float(target.mean()), shape)
    for step, most in ((2.0, 0.995), (1.0, 0.97)):
        payload, images = refine.encode_levels(target, base, step, (0, 2))
        plain, plain_images = refine.encode_levels(target, base, step, (0, 2), model_signs=False)
        assert any(_laws(payload)) and not any(_laws(plain))
        assert len(payload) < most * len(plain)
        for mine, theirs, decoded in zip(images, plain_images, refine.decode_levels(payload, base, step, (0, 2))):
            assert mine.tobytes() == theirs.tobytes() == decoded.tobytes()
        assert refine.encode_levels(target, base, step, (0, 2))[0] == payload


def test_a_law_is_kept_only_where_it_saves_bits():
    """White noise: the 9/7's filters correlate neighbouring coefficients a little (measured on 256 x 256 at step
    0.5: 6 of 24 subbands keep a weak law, 31 of 25,845 bytes saved), and a law is kept only where its own
    bytes are paid for, so a tile never costs more than its flag bytes; a tile too small to pay keeps none."""
    target = np.random.default_rng(7).normal(size=(256, 256)).astype(np.float32)
    base = refine.FlatBase(0.0, target.shape)
    payload, refined = refine.encode(target, base, 0.5)
    plain, _ = refine.encode(target, base, 0.5, model_signs=False)
    assert len(payload) <= len(plain)
    small = target[:16, :16]
    payload_small, _ = refine.encode(small, refine.FlatBase(0.0, small.shape), 0.5)
    assert not any(_laws(payload_small))
    assert (
        len(payload_small)
        <= len(refine.encode(small, refine.FlatBase(0.0, small.shape), 0.5, model_signs=False)[0]) + 3
    )
    assert refine.decode(payload, base, 0.5).tobytes() == refined.tobytes()


def test_format_9_syntax_does_not_read_sign_laws():
    """A format 10 tile whose side carries laws is not a format 9 tile: its flags would be read as trailing bytes."""
    from conftest import oversampled_db

    target = oversampled_db(256, 256, seed=3)
    base = refine.FlatBase(float(target.mean()), target.shape)
    payload, _ = refine.encode(target, base, 2.0)
    assert any(_laws(payload))
    with pytest.raises(ContainerError, match="trailing"):
        refine.decode(payload, base, 2.0, syntax=refine.SYNTAX_9)
