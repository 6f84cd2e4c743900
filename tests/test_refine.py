"""The refinement layer (engine.codec.entropy.refine) and its wavelet: exact round trips, error bounded by the step,
escapes, and only ContainerError for damaged payloads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sar_compressor.engine.codec.entropy import contexts, rd_lowering, refine, ssim_weights, tables
from sar_compressor.engine.codec.transform import wavelet
from sar_compressor.engine.errors import ContainerError


def _pair(shape: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A speckled dB target with structure and a smooth, biased 'network output' of it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    clean = -12 + 6 * np.sin(xx / 9.0) + 4 * (yy > shape[0] / 2)
    target = clean + 10 * np.log10(rng.gamma(2.0, 0.5, shape))
    base = clean - 1.0
    return target.astype(np.float32), base.astype(np.float32)


@pytest.mark.parametrize("shape", [(256, 300), (131, 77), (5, 9), (3, 3), (1, 7), (256, 1)])
def test_wavelet_is_perfectly_invertible(shape):
    x = np.random.default_rng(1).normal(size=shape)
    levels = wavelet.max_levels(shape, 5)
    ll, details = wavelet.forward(x, levels)
    assert np.allclose(wavelet.inverse(ll, details), x, atol=1e-12)


def test_wavelet_is_nearly_orthonormal():
    ll_norm, per_level = wavelet.synthesis_norms(5)
    norms = [ll_norm] + [n for trio in per_level for n in trio]
    assert all(0.9 < n < 1.15 for n in norms), norms


@pytest.mark.parametrize("levels", [0, 1, 3])
def test_synthesis_norms_are_those_of_2d_impulses(levels):
    """The separable (1-D product) norms equal the norm of each subband's 2-D impulse synthesised in full."""
    n = 2 ** (levels + 4)
    zero_ll, zero_details = wavelet.forward(np.zeros((n, n)), levels)

    def norm_with_impulse(band: int) -> float:
        bands = [zero_ll.copy()] + [b.copy() for trio in zero_details for b in trio]
        bands[band][bands[band].shape[0] // 2, bands[band].shape[1] // 2] = 1.0
        details = [tuple(bands[1 + 3 * i : 4 + 3 * i]) for i in range(levels)]
        return float(np.linalg.norm(wavelet.inverse(bands[0], details)))

    ll_norm, per_level = wavelet.synthesis_norms(levels)
    expected = [norm_with_impulse(k) for k in range(1 + 3 * levels)]
    assert np.allclose([ll_norm] + [v for trio in per_level for v in trio], expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("predicted", [False, True])
@pytest.mark.parametrize("shape", [(256, 300), (131, 77), (9, 40)])
def test_the_encoders_approximations_are_the_decoders_to_the_bit(shape, predicted):
    """encode_levels' coarse images (the block means' prediction) are what decode_levels gives, to the bit."""
    target, _ = _pair(shape)
    base = refine.FlatBase(float(target.mean()), shape)
    reference = _pair(shape, seed=1)[0] if predicted else None
    wanted = tuple(sorted({0, min(3, refine.coarse_levels(shape)), refine.coarse_levels(shape)}))
    payload, images = refine.encode_levels(target, base, 0.5, wanted, reference=reference)
    decoded = refine.decode_levels(payload, base, 0.5, wanted, reference)
    assert len(images) == len(wanted)
    for mine, theirs in zip(images, decoded):
        assert mine.dtype == theirs.dtype == np.float32 and mine.tobytes() == theirs.tobytes()


@pytest.mark.parametrize("shape", [(256, 300), (131, 77), (5, 9), (1, 7)])
def test_decode_equals_the_encoders_refined_image(shape):
    target, base = _pair(shape)
    payload, refined = refine.encode(target, base, 1.0)
    again, _ = refine.encode(target, base, 1.0)
    assert payload == again  # deterministic bytes
    assert np.array_equal(refine.decode(payload, base, 1.0), refined)
    assert refined.dtype == np.float32 and refined.shape == shape


def test_error_and_size_follow_the_step():
    target, base = _pair((256, 256), seed=3)
    sizes, rmses = [], []
    for step in (8.0, 4.0, 2.0, 1.0, 0.5):
        payload, refined = refine.encode(target, base, step)
        sizes.append(len(payload))
        rmses.append(float(np.sqrt(np.mean((refined - target) ** 2))))
        assert rmses[-1] < 0.6 * step  # dead-zone quantizer in a near-orthonormal basis
    assert sizes == sorted(sizes) and rmses == sorted(rmses, reverse=True)
    assert rmses[-1] < 0.1 * float(np.sqrt(np.mean((base - target) ** 2)))


@pytest.mark.parametrize("step", [8.0, 4.0])  # coarse steps: where isolated 1s are many
def test_rate_distortion_lowering_lowers_the_cost(monkeypatch, step):
    """Lowering values whose bits are worth more than their error: fewer bytes, and a lower D + lambda R
    (squared error in steps^2 plus RDO_LAMBDA per bit) than plain dead-zone quantization at the same step."""
    target, base = _pair((256, 256), seed=5)

    def cost(payload: bytes, refined: np.ndarray) -> float:
        return float(np.sum((refined - target) ** 2)) / step**2 + rd_lowering.RDO_LAMBDA * 8 * len(payload)

    with_rdo = refine.encode(target, base, step)
    monkeypatch.setattr(refine, "RDO_PASSES", 0)
    plain = refine.encode(target, base, step)
    assert len(with_rdo[0]) < len(plain[0])
    assert cost(*with_rdo) < cost(*plain)
    assert np.array_equal(refine.decode(with_rdo[0], base, step), with_rdo[1])


def test_rate_distortion_lowers_values_above_one():
    """In a quiet band (one coefficient in ten a 1) a 2 just past its rounding threshold becomes 1 (the error it
    adds is small, the bits it saves are many); a 2 at the middle of its bin and a -3 near its bin's top stay."""
    residuals = [np.where(np.arange(256).reshape(16, 16) % 10 == 0, 1.0, 0.0)]
    symbols = [tables.quantize(residuals[0], 1.0)]
    for (r, c), x in {(2, 3): 1.56, (9, 9): 2.0, (12, 4): -3.4}.items():
        symbols[0][r, c] = tables.quantize(np.array(x), 1.0)
        residuals[0][r, c] = x
    assert symbols[0][2, 3] == 2 and symbols[0][9, 9] == 2 and symbols[0][12, 4] == -3
    kept = [symbols[0].copy()]
    rd_lowering.rdo_lower(symbols, residuals, [1.0], [1.0])
    assert symbols[0][2, 3] == 1 and symbols[0][9, 9] == 2 and symbols[0][12, 4] == -3
    rd_lowering.rdo_lower(kept, residuals, [1.0], [np.full((16, 16), ssim_weights.MAX_WEIGHT)])
    assert kept[0][2, 3] == 2  # where an error weighs more (a quiet area for SSIM) the same 2 stays


def test_an_isolated_value_is_priced_with_the_bits_its_neighbours_save(monkeypatch):
    """A lone 1 in a quiet area puts its four second-phase neighbours in a busier context, whose table (fitted to
    the busy half of the band, where such cells are mostly non-zero) codes their zeros dearly: lowering it saves
    those bits too. Placed where its own bits alone would not pay for its error, it goes; priced on its own bits
    it stays."""
    rng = np.random.default_rng(3)
    band = np.zeros((32, 32))
    band[:16] = rng.choice([-1.0, 0.0, 1.0], size=(16, 32), p=[0.3, 0.4, 0.3])
    band[24, 16] = 1.0  # a first-phase cell ((row + column) even)
    at = np.array([24 * 32 + 16])
    walk = rd_lowering.Walk([tables.quantize(band, 1.0)])
    fed = float(walk.fed(0, at)[0])
    own = tables.saved_bits()[walk.tables(0, 0)[0], 0]  # the low band's first phase: one context (activity 0)
    assert fed > 1.0  # four zeros coded in a busier context: bits each
    band[24, 16] = 0.5 + 0.5 * rd_lowering.RDO_LAMBDA * (
        own + fed / 2
    )  # worth keeping on its own bits, not with theirs
    symbols = [tables.quantize(band, 1.0)]
    assert symbols[0][24, 16] == 1
    rd_lowering.rdo_lower(symbols, [band], [1.0], [1.0])
    assert symbols[0][24, 16] == 0
    monkeypatch.setattr(rd_lowering.Walk, "fed", lambda self, k, at: np.zeros(at.size))
    symbols = [tables.quantize(band, 1.0)]
    rd_lowering.rdo_lower(symbols, [band], [1.0], [1.0])
    assert symbols[0][24, 16] == 1


def test_neighbour_bits_switch_off_to_the_lowering_on_own_bits(monkeypatch):
    """The API's `neighbour_bits=False` (the bench's ablation) codes as the lowering on own bits alone; both files
    decode to their encoder's reconstruction."""
    from sar_compressor.engine import api

    target, _ = _pair((256, 256), seed=5)
    image = (10 ** (target / 10)).astype(np.float32)
    on = api.compress_array(image, quality=4)
    off = api.compress_array(image, quality=4, neighbour_bits=False)
    monkeypatch.setattr(rd_lowering.Walk, "fed", lambda self, k, at: np.zeros(at.size))
    assert api.compress_array(image, quality=4).data == off.data != on.data
    for coded in (on, off):
        assert api.decompress_array(coded.data).tobytes() == coded.reconstruction.tobytes()


def test_weights_keep_more_where_they_are_high(monkeypatch):
    """Weighted errors in the left half: it keeps more (less error, more bytes), the right half is coded
    about as before, and the decoder, which never sees the weights, returns the encoder's image."""
    target, base = _pair((128, 128), seed=7)
    step = 8.0  # coarse: where plain rate-distortion quantization lowers many values
    weights = np.ones(target.shape, np.float32)
    weights[:, :64] = ssim_weights.MAX_WEIGHT
    scale = ssim_weights.SsimScale(30.0, 1.0)
    monkeypatch.setattr(ssim_weights, "pixel_weights", lambda t, s: weights if s == scale else None)
    plain = refine.encode(target, base, step)
    weighted = refine.encode(target, base, step, ssim=scale)

    def sse(refined: np.ndarray, cols: slice) -> float:
        return float(np.sum((refined[:, cols] - target[:, cols]) ** 2))

    assert sse(weighted[1], slice(8, 56)) < 0.9 * sse(plain[1], slice(8, 56))
    assert sse(weighted[1], slice(72, 120)) == pytest.approx(sse(plain[1], slice(72, 120)), rel=0.1)
    assert len(weighted[0]) > len(plain[0])
    assert np.array_equal(refine.decode(weighted[0], base, step), weighted[1])


def test_escapes_beyond_the_table_round_trip():
    target, base = _pair((64, 64), seed=5)
    target[10, 10], target[40, 3] = 400.0, -400.0  # far beyond ALPHABET steps
    payload, refined = refine.encode(target, base, 0.05)
    assert np.array_equal(refine.decode(payload, base, 0.05), refined)
    assert abs(refined[10, 10] - 400.0) < 0.1 and abs(refined[40, 3] + 400.0) < 0.1


def test_prediction_ignores_a_useless_base():
    """A base unrelated to the target gets weight 0 in every detail subband instead of costing bits."""
    target, _ = _pair((128, 128), seed=6)
    noise = np.random.default_rng(9).normal(0, 5, target.shape).astype(np.float32)
    with_noise, _ = refine.encode(target, noise, 1.0)
    flat, _ = refine.encode(target, np.zeros_like(target), 1.0)
    assert len(with_noise) < 1.05 * len(flat)


def test_shape_mismatch_and_truncation_are_container_errors():
    target, base = _pair((64, 80))
    payload, _ = refine.encode(target, base, 1.0)
    with pytest.raises(ContainerError, match="size"):
        refine.decode(payload, base[:32], 1.0)
    for n in range(0, len(payload), max(1, len(payload) // 40)):
        with pytest.raises(ContainerError):
            refine.decode(payload[:n], base, 1.0)


_TARGET, _BASE = _pair((40, 48), seed=11)
_PAYLOAD, _ = refine.encode(_TARGET, _BASE, 1.0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_PAYLOAD) - 1), st.integers(1, 255)), min_size=1, max_size=4))
def test_damaged_payload_gives_only_container_errors(flips):
    data = bytearray(_PAYLOAD)
    for pos, mask in flips:
        data[pos] ^= mask
    try:
        out = refine.decode(bytes(data), _BASE, 1.0)
    except ContainerError:
        return
    assert out.shape == _BASE.shape  # a flip the coder cannot notice still yields a raster of the right size


def _first_table(words: np.ndarray) -> int:
    """The table index the first group of an `_encode_groups` stream names (its prediction is the middle one)."""
    import constriction

    coder = constriction.stream.stack.AnsCoder(words.astype(np.uint32))
    delta = int(coder.decode(tables.index_delta_model(contexts.CONTEXTS.delta_scale), 1)[0])
    return tables.N_SCALES // 2 + delta - (tables.N_SCALES - 1)


def test_a_group_takes_the_table_that_costs_least_with_its_index():
    """A group's table is chosen by its symbols' bits plus its index's: two symbols keep the predicted table
    although another codes them a little cheaper; a thousand take their own."""
    bits = tables.bank()[1]
    few = np.array([tables.ALPHABET, tables.ALPHABET + 1], dtype=np.int32)  # a 0 and a 1
    own = int(np.argmin(bits @ np.bincount(few, minlength=bits.shape[1])))
    predicted = tables.N_SCALES // 2
    assert own != predicted
    assert _first_table(refine._encode_groups([refine._Group(1, 0, few, False)], 4)) == predicted
    many = np.tile(few, 500)
    best = int(np.argmin(bits @ np.bincount(many, minlength=bits.shape[1])))
    assert _first_table(refine._encode_groups([refine._Group(1, 0, many, False)], 4)) == best != predicted


def test_contexts_of_each_format_cut_activities_at_their_edges():
    """Format 8's buckets are finer than formats 6 and 7's, and each context table puts an activity at an edge in
    the bucket above it."""
    for walk_contexts, n in ((contexts.CONTEXTS, 17), (contexts.CONTEXTS_7, 13)):
        assert walk_contexts.n_buckets == n and walk_contexts.n_contexts == 2 * n
        edges = np.array(walk_contexts.edges)
        assert walk_contexts.bucket_of[edges].tolist() == list(range(1, n))
        assert walk_contexts.bucket_of[edges - 1].tolist() == list(range(n - 1))
