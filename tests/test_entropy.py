"""Entropy model: training path, integer tables, exact deterministic ANS coding, corruption handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sar_compressor.engine.codes import TOTAL, zigzag_decode, zigzag_encode
from sar_compressor.engine.entropy import N_QUALITIES, EntropyModel
from sar_compressor.engine.errors import ContainerError, InputError, ModelError


@pytest.fixture(scope="module")
def frozen_model() -> EntropyModel:
    torch.manual_seed(0)
    model = EntropyModel(latent_channels=16)
    model.freeze()
    return model.eval()


def _latents(seed: int = 0, shape=(16, 8, 12)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_training_forward_gives_finite_bits_and_gradients() -> None:
    torch.manual_seed(0)
    model = EntropyModel().train()
    y = torch.randn(2, 16, 4, 4, requires_grad=True)
    for q in (0, torch.tensor([1, 5])):
        model.zero_grad()
        y_hat, lik = model(y, q)
        bits = model.bits(lik)
        assert torch.isfinite(bits) and bits > 0
        assert y_hat.shape == y.shape and lik.shape == y.shape
        (bits + y_hat.square().sum()).backward()
        assert model.log_gain.grad.abs().sum() > 0
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.matrices)
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.biases)
        assert all(p.grad is not None for p in model.factors)


def test_training_noise_and_ste() -> None:
    model = EntropyModel().train()
    y = _latents()[None]
    g = model.gains()[2][None, :, None, None]
    y_hat, _ = model(y, 2)
    assert 0 < (y_hat - y).abs().max() <= 0.5 / g.min() + 1e-6
    y_ste, _ = model(y, 2, ste=True)
    assert torch.allclose(y_ste, torch.round(y * g) / g)


def test_eval_forward_rounds_like_quantize(frozen_model: EntropyModel) -> None:
    y = _latents(1)
    y_hat, lik = frozen_model(y[None], 3)
    s = frozen_model.quantize(y, 3)
    assert torch.allclose(y_hat[0], frozen_model.dequantize(s, 3))
    assert torch.all(lik > 0) and torch.all(lik <= 1)


def test_initial_gains_are_spread_and_positive() -> None:
    g = EntropyModel().gains()
    assert g.shape == (N_QUALITIES, 16)
    assert torch.allclose(g[:, 0], torch.tensor([0.5, 1, 2, 4, 8, 16.0]), rtol=1e-5)


def test_levels_are_validated(frozen_model: EntropyModel) -> None:
    y = _latents()
    for bad in (-1, N_QUALITIES, 1.5, "3"):
        with pytest.raises(InputError):
            frozen_model.quantize(y, bad)
    with pytest.raises(InputError):
        frozen_model(y[None], torch.tensor([0, 1]))


def test_frozen_tables_are_valid_plain_python(frozen_model: EntropyModel) -> None:
    d = frozen_model.frozen
    assert d is not None and d["n_qualities"] == N_QUALITIES
    for q in range(N_QUALITIES):
        for c in range(16):
            f = d["freqs"][q][c]
            assert isinstance(f, list) and all(type(v) is int for v in f)
            assert sum(f) == TOTAL and min(f) >= 1 and len(f) >= 2
            assert type(d["offsets"][q][c]) is int and type(d["gains"][q][c]) is float


def test_from_frozen_codes_identically(frozen_model: EntropyModel) -> None:
    clone = EntropyModel.from_frozen(frozen_model.frozen)
    y = _latents(2)
    for q in range(N_QUALITIES):
        s = frozen_model.quantize(y, q)
        assert np.array_equal(clone.quantize(y, q), s)
        assert clone.encode(s, q) == frozen_model.encode(s, q)


def test_round_trip_every_level_with_outliers(frozen_model: EntropyModel) -> None:
    rng = np.random.default_rng(0)
    info = np.iinfo(np.int32)
    for q in range(N_QUALITIES):
        s = frozen_model.quantize(_latents(q), q)
        s[0, 0, :3] = [info.min, info.max, 0]
        s[5, 2, 4] = 1_000_000
        s[7] = rng.integers(info.min, info.max, size=s[7].shape, dtype=np.int64)
        data = frozen_model.encode(s, q)
        assert np.array_equal(frozen_model.decode(data, q, s.shape), s)
        assert frozen_model.decode(data, q, s.shape).dtype == np.int32


def test_round_trip_random_ints_and_empty(frozen_model: EntropyModel) -> None:
    rng = np.random.default_rng(1)
    s = rng.integers(-300, 300, size=(16, 5, 7)).astype(np.int32)
    assert np.array_equal(frozen_model.decode(frozen_model.encode(s, 0), 0, s.shape), s)
    empty = np.zeros((16, 0, 4), np.int32)
    assert frozen_model.decode(frozen_model.encode(empty, 2), 2, empty.shape).shape == (16, 0, 4)


def test_encoding_is_deterministic(frozen_model: EntropyModel) -> None:
    s = frozen_model.quantize(_latents(3), 4)
    assert frozen_model.encode(s, 4) == frozen_model.encode(s.copy(), 4)


def test_estimate_matches_coded_length(frozen_model: EntropyModel) -> None:
    y = _latents(4, (16, 32, 32))
    for q in range(N_QUALITIES):
        s = frozen_model.quantize(y, q)
        actual = 8 * len(frozen_model.encode(s, q))
        estimate = frozen_model.estimate_bits(s, q)
        assert abs(actual - estimate) <= 0.01 * estimate + 128


def test_higher_level_gives_more_bytes(frozen_model: EntropyModel) -> None:
    y = _latents(5, (16, 16, 16))
    sizes = [len(frozen_model.encode(frozen_model.quantize(y, q), q)) for q in range(N_QUALITIES)]
    assert sizes == sorted(sizes) and len(set(sizes)) == N_QUALITIES, sizes


def test_dequantize_error_is_half_a_step(frozen_model: EntropyModel) -> None:
    y = _latents(6)
    for q in range(N_QUALITIES):
        g = torch.tensor(frozen_model.frozen["gains"][q]).view(-1, 1, 1)
        err = (frozen_model.dequantize(frozen_model.quantize(y, q), q) - y).abs()
        assert torch.all(err <= 0.5 / g + 1e-6)


def test_non_finite_latents_do_not_break_quantize(frozen_model: EntropyModel) -> None:
    y = _latents()
    y[0, 0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    s = frozen_model.quantize(y, 5)
    assert np.array_equal(frozen_model.decode(frozen_model.encode(s, 5), 5, s.shape), s)


def test_coding_needs_tables_and_valid_symbols() -> None:
    model = EntropyModel()
    with pytest.raises(ModelError):
        model.encode(np.zeros((16, 2, 2), np.int32), 0)
    model.freeze()
    with pytest.raises(InputError):
        model.encode(np.zeros((8, 2, 2), np.int32), 0)
    with pytest.raises(InputError):
        model.encode(np.zeros((16, 2, 2), np.float32), 0)
    with pytest.raises(ContainerError):
        model.decode(model.encode(np.zeros((16, 2, 2), np.int32), 0), 0, (8, 2, 2))


def test_malformed_frozen_tables_raise_model_error(frozen_model: EntropyModel) -> None:
    import copy

    bad = copy.deepcopy(frozen_model.frozen)
    bad["freqs"][2][3][0] += 1
    with pytest.raises(ModelError):
        EntropyModel.from_frozen(bad)
    with pytest.raises(ModelError):
        EntropyModel.from_frozen({"latent_channels": 16})


def test_varint_extremes() -> None:
    v = np.array([0, 1, -1, 63, -64, 2**33, -(2**33), 127, 128], dtype=np.int64)
    assert np.array_equal(zigzag_decode(zigzag_encode(v), len(v), "test"), v)
    with pytest.raises(ContainerError):
        zigzag_decode(zigzag_encode(v)[:-1], len(v), "test")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupt_data_raises_container_error_only(frozen_model: EntropyModel, data) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    s = rng.integers(-40, 40, size=(16, 3, 3)).astype(np.int32)
    s[1, 1, 1] = 10**6  # forces an escape side stream
    q = data.draw(st.integers(0, N_QUALITIES - 1))
    coded = bytearray(frozen_model.encode(s, q))
    action = data.draw(st.sampled_from(["flip", "truncate", "append", "random"]))
    if action == "flip":
        pos = data.draw(st.integers(0, len(coded) - 1))
        coded[pos] ^= data.draw(st.integers(1, 255))
    elif action == "truncate":
        coded = coded[: data.draw(st.integers(0, len(coded) - 1))]
    elif action == "append":
        coded += data.draw(st.binary(min_size=1, max_size=8))
    else:
        coded = bytearray(data.draw(st.binary(max_size=64)))
    try:
        out = frozen_model.decode(bytes(coded), q, s.shape)
    except ContainerError:
        return
    assert out.shape == s.shape and out.dtype == np.int32


def test_copy_and_pickle_keep_tables(frozen_model: EntropyModel) -> None:
    import copy
    import pickle

    s = frozen_model.quantize(_latents(7), 1)
    data = frozen_model.encode(s, 1)  # builds cached coder models, which do not pickle themselves
    for clone in (copy.deepcopy(frozen_model), pickle.loads(pickle.dumps(frozen_model))):
        assert clone.encode(s, 1) == data
        assert np.array_equal(clone.decode(data, 1, s.shape), s)
