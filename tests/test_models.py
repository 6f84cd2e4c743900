"""Autoencoders, registry and checkpoint files (save/load, half precision, prototype format, broken files)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sar_compressor.engine import catalog
from sar_compressor.engine.entropy import EntropyModel
from sar_compressor.engine.errors import InputError, ModelError
from sar_compressor.engine.models import (
    DEFAULT_MODEL,
    MODELS,
    BaselineAutoencoder,
    ResNetAutoencoder,
    build_model,
    list_models,
    load_checkpoint,
    resolve_model,
    save_checkpoint,
)

CONFIG = {"model": {"name": "baseline"}, "preprocessing_params": {"vmin": -25.0, "vmax": 5.0}}


@pytest.fixture(scope="module")
def small_pair() -> tuple[BaselineAutoencoder, EntropyModel]:
    torch.manual_seed(1)
    return build_model({"name": "baseline"}), EntropyModel()


def _run(model, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        return model.decode(model.encode(x))


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("hw", [(256, 256), (32, 48), (16, 80)])
def test_shapes(name: str, hw: tuple[int, int]) -> None:
    model = build_model({"name": name}).eval()
    x = torch.rand(2, 1, *hw)
    with torch.inference_mode():
        y = model.encode(x)
        out = model.decode(y)
    assert y.shape == (2, 16, hw[0] // 16, hw[1] // 16)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_training_output_is_raw_eval_is_clamped() -> None:
    torch.manual_seed(0)
    model = build_model({"name": "baseline"}).train()
    y = torch.randn(1, 16, 2, 2) * 50
    raw = model.decode(y)
    assert raw.min() < 0 or raw.max() > 1
    model.eval()
    clamped = model.decode(y)
    assert torch.equal(clamped, raw.detach().clamp(0, 1))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_rejects_bad_input_shapes(name: str) -> None:
    model = build_model({"name": name})
    with pytest.raises(InputError, match="multiples of 16"):
        model.encode(torch.rand(1, 1, 24, 32))
    with pytest.raises(InputError):
        model.encode(torch.rand(1, 2, 32, 32))
    with pytest.raises(InputError):
        model.decode(torch.rand(1, 8, 2, 2))


@pytest.mark.parametrize(("cls", "expected"), [(BaselineAutoencoder, 2.3e6), (ResNetAutoencoder, 5.6e6)])
def test_parameter_counts(cls, expected: float) -> None:
    n = sum(p.numel() for p in cls().parameters())
    print(f"{cls.__name__}: {n} parameters")
    assert abs(n - expected) <= 0.15 * expected


def test_registry() -> None:
    assert set(MODELS) == {"baseline", "resnet_lite_v2"}
    assert isinstance(build_model({"name": "resnet_lite_v2", "base_channels": 8}), ResNetAutoencoder)
    with pytest.raises(ModelError, match="baseline.*resnet_lite_v2"):
        build_model({"name": "nope"})
    with pytest.raises(ModelError):
        build_model({})
    with pytest.raises(ModelError, match="bad arguments"):
        build_model({"name": "baseline", "colour": 3})


def test_round_trip(tmp_path: Path, small_pair) -> None:
    model, entropy = small_pair
    path = save_checkpoint(tmp_path / "m.pt", model, {**CONFIG, "quality": {"lambdas": [1.0] * 6}}, entropy)
    loaded = load_checkpoint(path)
    assert loaded.name == "baseline" and (loaded.vmin, loaded.vmax) == (-25.0, 5.0)
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.config["quality"] == {"lambdas": [1.0] * 6, "n_qualities": 6}
    assert not loaded.model.training and loaded.path == path
    x = torch.rand(1, 1, 32, 32)
    assert torch.equal(_run(loaded.model, x), _run(model, x))
    assert loaded.entropy.frozen == entropy.frozen
    y = model.encode(x)[0].detach()
    s = entropy.quantize(y, 2)
    assert loaded.entropy.encode(s, 2) == entropy.encode(s, 2)
    assert not list(tmp_path.glob(".*tmp"))


def test_half_checkpoint(tmp_path: Path, small_pair) -> None:
    model, entropy = small_pair
    full = save_checkpoint(tmp_path / "full.pt", model, CONFIG, entropy)
    half = save_checkpoint(tmp_path / "half.pt", model, CONFIG, entropy, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    x = torch.rand(1, 1, 32, 32)
    assert torch.allclose(_run(loaded.model, x), _run(model, x), atol=0.02)
    assert loaded.entropy.frozen == entropy.frozen


def test_load_uses_map_location_and_cache(tmp_path: Path, small_pair, monkeypatch) -> None:
    model, entropy = small_pair
    path = save_checkpoint(tmp_path / "m.pt", model, CONFIG, entropy)
    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append((kwargs.get("map_location"), kwargs.get("weights_only")))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    first = load_checkpoint(path, device=torch.device("cpu"))
    assert seen == [(torch.device("cpu"), True)]
    assert load_checkpoint(path, device="cpu") is first  # cached
    assert len(seen) == 1
    save_checkpoint(path, model, CONFIG, None)
    os.utime(path, ns=(1, 1))  # a new mtime even on coarse clocks
    reloaded = load_checkpoint(path)
    assert reloaded is not first and reloaded.entropy is None and len(seen) == 2


def test_prototype_format_loads(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = build_model({"name": "resnet_lite_v2", "base_channels": 8})
    path = tmp_path / "proto.pt"
    cfg = {
        "model": {"name": "resnet_lite_v2", "base_channels": 8},
        "preprocessing_params": {"vmin": np.float64(-30.0), "vmax": 10},
    }
    torch.save({"model_state_dict": model.state_dict(), "config": cfg}, path)
    loaded = load_checkpoint(path)
    assert loaded.entropy is None and loaded.vmin == -30.0 and loaded.vmax == 10.0
    assert isinstance(loaded.model, ResNetAutoencoder) and loaded.model.base_channels == 8


def _save_raw(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def test_broken_files_raise_model_error(tmp_path: Path, small_pair) -> None:
    model, entropy = small_pair
    good = save_checkpoint(tmp_path / "good.pt", model, CONFIG, entropy)
    raw = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "empty.pt").write_bytes(b"")
    for name in ("trunc.pt", "random.pt", "empty.pt"):
        with pytest.raises(ModelError, match="not a readable torch checkpoint"):
            load_checkpoint(tmp_path / name)
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")

    state = model.state_dict()
    cases = {
        "model_state_dict": {"config": CONFIG},
        "'config'": {"model_state_dict": state},
        "config.model.name": {"model_state_dict": state, "config": {**CONFIG, "model": {}}},
        "unknown model architecture": {
            "model_state_dict": state,
            "config": {**CONFIG, "model": {"name": "x"}},
        },
        "vmin/vmax": {"model_state_dict": state, "config": {"model": {"name": "baseline"}}},
        "missing: encoder.0.weight": {
            "model_state_dict": {k: v for k, v in state.items() if k != "encoder.0.weight"},
            "config": CONFIG,
        },
        "wrong shape": {
            "model_state_dict": build_model({"name": "baseline", "widths": (8, 8, 8, 8)}).state_dict(),
            "config": CONFIG,
        },
        "frozen": {"model_state_dict": state, "config": CONFIG, "entropy": {"state_dict": {}}},
        "top level": [1, 2, 3],
    }
    for i, (message, obj) in enumerate(cases.items()):
        with pytest.raises(ModelError, match=message):
            load_checkpoint(_save_raw(tmp_path / f"case{i}.pt", obj))


class _Foreign:
    pass


def test_foreign_pickle_is_refused(tmp_path: Path) -> None:
    path = _save_raw(tmp_path / "foreign.pt", {"model_state_dict": _Foreign(), "config": CONFIG})
    with pytest.raises(ModelError, match="not a readable torch checkpoint"):
        load_checkpoint(path)


def test_save_checks_config(tmp_path: Path, small_pair) -> None:
    model, entropy = small_pair
    with pytest.raises(ModelError, match="resnet_lite_v2"):
        save_checkpoint(tmp_path / "x.pt", model, {**CONFIG, "model": {"name": "resnet_lite_v2"}}, entropy)
    with pytest.raises(ModelError, match="vmin"):
        save_checkpoint(tmp_path / "x.pt", model, {"model": {"name": "baseline"}}, entropy)
    assert not list(tmp_path.iterdir())


def test_resolve_model(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(catalog, "MODELS_DIR", tmp_path)
    assert list_models() == []
    with pytest.raises(ModelError, match="none installed"):
        resolve_model(None)
    (tmp_path / f"{DEFAULT_MODEL}.pt").write_bytes(b"x")
    (tmp_path / "resnet_lite_v2.pt").write_bytes(b"x")
    assert list_models() == ["baseline", "resnet_lite_v2"]
    assert resolve_model(None) == tmp_path / "baseline.pt" == resolve_model("default")
    assert resolve_model("resnet_lite_v2") == tmp_path / "resnet_lite_v2.pt"
    assert resolve_model(str(tmp_path / "baseline.pt")) == tmp_path / "baseline.pt"
    with pytest.raises(ModelError, match="baseline, resnet_lite_v2"):
        resolve_model("unknown")
    with pytest.raises(ModelError, match="not found"):
        resolve_model(tmp_path / "missing.pt")


def test_tiny_model_fixture(tiny_model_path: Path) -> None:
    loaded = load_checkpoint(tiny_model_path)
    assert loaded.entropy is not None and loaded.entropy.n_qualities == 6
    assert loaded.config["quality"]["n_qualities"] == 6


def test_bundled_default_model_loads() -> None:
    if DEFAULT_MODEL not in list_models():
        pytest.skip("no bundled default model in resources/models")
    loaded = load_checkpoint(resolve_model(None))
    assert loaded.name == DEFAULT_MODEL and loaded.entropy is not None


@pytest.mark.parametrize("name", ["baseline", "resnet_lite_v2"])
def test_bundled_models_round_trip_through_the_codec(name: str) -> None:
    """Each bundled network, used as the base (and under auto), decodes to exactly the encoder's reconstruction."""
    if name not in list_models():
        pytest.skip(f"no bundled {name} in resources/models")
    from sar_compressor.engine import codec
    from sar_compressor.engine.compressor import SARCompressor
    from sar_compressor.engine.simulate import simulate_scene

    comp = SARCompressor(name, device="cpu")
    arr = simulate_scene(96, 80, seed=2)[0]
    for base, quality in (("network", 1), ("network", 12), ("auto", 5)):
        result = codec.compress_array(arr, quality=quality, compressor=comp, base=base)
        assert result.stats.model_name == name and (base == "auto" or result.stats.base == base)
        np.testing.assert_array_equal(codec.decompress_array(result.data, compressor=comp), result.reconstruction)
