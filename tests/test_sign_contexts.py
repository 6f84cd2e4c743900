"""Sign contexts (format 10; off by default, on for the ablation): laws fitted where they pay, side information
checked, lossless and bit-exact; a default tile writes the flag bytes and no law."""

import zlib

import numpy as np
import pytest

from sar_compressor.engine import api
from sar_compressor.engine.codec.entropy import contexts, refine, sign_contexts, tables
from sar_compressor.engine.codec.entropy.codes import TOTAL, quantize_pmf, split_pairs
from sar_compressor.engine.codec.passes.window_decode import decode_window
from sar_compressor.engine.errors import ContainerError


def _side(payload: bytes) -> tuple[int, bytes]:
    _, n_bands, side_len = refine._HEAD.unpack_from(payload)
    return n_bands, zlib.decompress(payload[refine._HEAD.size : refine._HEAD.size + side_len])


def _parts(payload: bytes) -> tuple[int, bytes, bytes, bytes, bytes]:
    """A single-band tile's subbands and side information: the weights and the inter-scale predictors, the sign
    laws, the phase laws."""
    n_bands, side = _side(payload)
    own, rest = refine.interscale.split(side[n_bands:])
    signs, phases = split_pairs(rest, n_bands - 1)
    return n_bands, side[:n_bands] + own, signs, phases, side


def _laws(payload: bytes) -> sign_contexts.Laws:
    n_bands, _, signs, _, _ = _parts(payload)
    return sign_contexts.decode(signs, n_bands - 1)


def _with_laws(payload: bytes, laws: bytes) -> bytes:
    """`payload` with its sign laws' bytes replaced by `laws` (the rest of the tile as it was)."""
    n_bands, head, _, phases, _ = _parts(payload)
    new_side = zlib.compress(head + laws + phases)
    levels = refine._HEAD.unpack_from(payload)[0]
    _, _, side_len = refine._HEAD.unpack_from(payload)
    return refine._HEAD.pack(levels, n_bands, len(new_side)) + new_side + payload[refine._HEAD.size + side_len :]


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
    """Signs that mostly follow their horizontal neighbours get a horizontal weight near SCALE and no vertical
    weight to speak of; independent signs get no law (it would not pay for its two bytes)."""
    rng = np.random.default_rng(1)
    horizontal = rng.integers(-2, 3, 20000)
    vertical = rng.integers(-2, 3, 20000)
    follows = rng.random(20000) < 1 / (1 + np.exp(-horizontal))  # logit = horizontal sum: weight SCALE
    law = sign_contexts.fit(horizontal, vertical, follows)
    assert law is not None and abs(law.horizontal - sign_contexts.SCALE) <= 1 and abs(law.vertical) <= 1
    assert sign_contexts.fit(horizontal, vertical, rng.random(20000) < 0.5) is None
    assert sign_contexts.fit(horizontal[:100], vertical[:100], follows[:100]) is None  # too few signs to pay


def test_sign_tables_do_not_depend_on_the_last_bits_of_exp():
    """Every context's 16-bit frequencies come out the same when the logistic is off by far more than any libm
    errs (1e-12 relative): they are a function of the integers alone, on every machine."""
    for z in range(-sign_contexts.Z_MAX, sign_contexts.Z_MAX + 1):
        f = sign_contexts.freqs(z)
        assert f.sum() == TOTAL and f.min() >= 1
        p = 1.0 / (1.0 + np.exp(-z / sign_contexts.SCALE))
        for q in (p * (1 - 1e-12), min(p * (1 + 1e-12), 1.0)):
            assert np.array_equal(quantize_pmf(np.array([1.0 - q, q])), f), z


@pytest.mark.parametrize("shape", [(256, 256), (200, 301)])
def test_sign_contexts_save_bytes_and_change_no_pixel(shape, oversampled):
    """On a scene whose features span neighbouring samples (oversampled twice) laws are kept and the tile takes
    fewer bytes (measured 1.2 % at step 2, 4.1-4.2 % at step 1, without phase prediction: it takes much of that
    structure first), the reconstruction is the same to the bit (signs are coded, not changed), the decoder's image
    and overviews are the encoder's, and encoding twice gives the same bytes."""
    target = oversampled(*shape)
    base = refine.FlatBase(float(target.mean()), shape)
    for step, most in ((2.0, 0.995), (1.0, 0.97)):
        payload, images = refine.encode_levels(target, base, step, (0, 2), model_signs=True, predict_phases=False)
        plain, plain_images = refine.encode_levels(target, base, step, (0, 2), predict_phases=False)
        assert any(_laws(payload)) and not any(_laws(plain))
        assert len(payload) < most * len(plain)
        for mine, theirs, decoded in zip(images, plain_images, refine.decode_levels(payload, base, step, (0, 2))):
            assert mine.tobytes() == theirs.tobytes() == decoded.tobytes()
        assert refine.encode_levels(target, base, step, (0, 2), model_signs=True, predict_phases=False)[0] == payload


def test_escaped_values_beside_and_under_a_law(oversampled, monkeypatch):
    """Bright points on an oversampled scene at a fine step: second-phase values of subbands with a law escape the
    tables (their magnitude is the folded escape, their sign comes with the escape stream) and escaped first-phase
    neighbours count 0 on both sides; the tile still decodes to the encoder's image."""
    target = oversampled(256, 256, seed=5)
    target[::37, ::29] += 60.0
    base = refine.FlatBase(float(target.mean()), target.shape)
    seen: dict = {}

    def fit_signs(symbols):
        laws = fit(symbols)
        seen.update(symbols=[s.copy() for s in symbols], laws=laws)
        return laws

    fit = refine._fit_signs
    monkeypatch.setattr(refine, "_fit_signs", fit_signs)
    payload, refined = refine.encode(target, base, 0.5, model_signs=True, predict_phases=False)
    escaped_under_laws = [
        k
        for k, law in enumerate(seen["laws"], start=1)
        if law is not None
        and np.any(np.abs(seen["symbols"][k].reshape(-1)[contexts.phase_cells(seen["symbols"][k].shape)[1]]) > 24)
    ]
    assert escaped_under_laws and tables.ALPHABET == 24
    assert refine.decode(payload, base, 0.5).tobytes() == refined.tobytes()


def test_a_law_is_kept_only_where_it_saves_bits():
    """White noise: the 9/7's filters correlate neighbouring coefficients a little (measured on 256 x 256 at step
    0.5: 6 of 24 subbands keep a weak law, 31 of 25,845 bytes saved), and a law is kept only where its own
    bytes are paid for, so a tile never costs more than without laws; a tile too small to pay keeps none and
    codes byte for byte as with laws off (the flag bytes are written either way)."""
    target = np.random.default_rng(7).normal(size=(256, 256)).astype(np.float32)
    base = refine.FlatBase(0.0, target.shape)
    payload, refined = refine.encode(target, base, 0.5, model_signs=True)
    plain, _ = refine.encode(target, base, 0.5)
    assert len(payload) <= len(plain)
    small = target[:16, :16]
    payload_small, _ = refine.encode(small, refine.FlatBase(0.0, small.shape), 0.5, model_signs=True)
    assert not any(_laws(payload_small))
    assert payload_small == refine.encode(small, refine.FlatBase(0.0, small.shape), 0.5)[0]


def test_damaged_sign_laws_in_a_tile_are_refused(oversampled):
    """A real tile whose sign-law bytes are cut, carry a weight out of range, or are missing altogether (a format 9
    side read as format 10), is a ContainerError, never a wrong image; a format 10 side is no format 9 side."""
    target = oversampled(256, 256, seed=3)
    base = refine.FlatBase(float(target.mean()), target.shape)
    payload, _ = refine.encode(target, base, 2.0, model_signs=True, predict_phases=False)
    laws = _laws(payload)
    assert any(laws)
    good = sign_contexts.encode(laws)
    first = next(i for i, law in enumerate(laws) if law is not None)
    heavy = list(laws)
    heavy[first] = sign_contexts.SignLaw(0, 0)
    out_of_range = bytearray(sign_contexts.encode(heavy))
    out_of_range[(len(laws) + 7) // 8] = 0x80  # that law's horizontal weight: -128
    for damaged in (good[:-1], bytes(out_of_range), b""):  # cut short, the sign laws eat the phase laws' flags
        with pytest.raises(ContainerError, match="(sign|phase) law"):
            refine.decode(_with_laws(payload, damaged), base, 2.0)
    with pytest.raises(ContainerError, match="trailing"):
        refine.decode(payload, base, 2.0, syntax=refine.SYNTAX_9)


def test_a_file_with_sign_laws_decodes_by_window_and_overview(oversampled):
    """Two tiles of an oversampled scene through the API: with sign contexts on the file is smaller (both write the
    same flag bytes, so fewer bytes means laws were kept: measured 32,165 against 32,262 at quality 8) and its
    pixels are those of the file without them, whole, across the tiles' border and as an overview."""
    image = (10 ** (oversampled(300, 1100, seed=2) / 10)).astype(np.float32)
    on = api.compress_array(image, quality=8, sign_contexts=True)
    off = api.compress_array(image, quality=8)  # the default: flag bytes, no laws
    assert len(on.data) < len(off.data)
    assert on.reconstruction.tobytes() == off.reconstruction.tobytes() == api.decompress_array(on.data).tobytes()
    window = (1000, 100, 60, 50)  # columns 1000-1059: both tiles
    assert decode_window(on.data, window).tobytes() == on.reconstruction[100:150, 1000:1060].tobytes()
    whole = (0, 0, 275, 75)  # the raster at 1/4
    assert decode_window(on.data, whole, level=2).tobytes() == decode_window(off.data, whole, level=2).tobytes()


def test_the_default_encoder_fits_no_sign_law(oversampled):
    """Off by default (they bought under 0.01 dB beside phase prediction for 3-6 % of the encoding time): a tile
    where laws would pay keeps none, and its side still carries the flag bytes format 10 reads."""
    target = oversampled(256, 256, seed=3)
    base = refine.FlatBase(float(target.mean()), target.shape)
    assert any(_laws(refine.encode(target, base, 2.0, model_signs=True, predict_phases=False)[0]))
    assert not any(_laws(refine.encode(target, base, 2.0, predict_phases=False)[0]))
