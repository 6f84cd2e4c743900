"""Checkpoint files: plain dicts of tensors and Python values, saved atomically, loaded weights_only.

Layout: {'format_version': 1, 'model_state_dict': {...}, 'config': {'model': {'name', **kwargs},
'preprocessing_params': {'vmin', 'vmax'}, 'quality': {'n_qualities', 'lambdas'?}, ...},
'entropy': {'state_dict': {...}, 'frozen': EntropyModel.freeze()}}.
Prototype checkpoints without 'entropy' still load (entropy=None: fixed-rate float latents only).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..catalog import DEFAULT_MODEL, MODELS_DIR, PathLike, list_models, resolve_model
from ..entropy import EntropyModel
from ..errors import ModelError
from .base import SARAutoencoder
from .registry import MODELS, build_model

FORMAT_VERSION = 1
_CACHE_SIZE = 4

__all__ = ["DEFAULT_MODEL", "MODELS_DIR", "LoadedModel", "list_models", "load_checkpoint", "resolve_model"]


@dataclass
class LoadedModel:
    """A ready-to-run model. Shared through a cache: treat it as read-only."""

    model: SARAutoencoder
    entropy: EntropyModel | None
    config: dict[str, Any]
    vmin: float
    vmax: float
    name: str
    sha256: str
    path: Path


_cache: dict[tuple[str, str, int, int], LoadedModel] = {}


def save_checkpoint(
    path: PathLike,
    model: SARAutoencoder,
    config: dict[str, Any],
    entropy: EntropyModel | None,
    half: bool = False,
) -> Path:
    """Write model + config (+ entropy parameters and freshly frozen tables) atomically (temp file + rename).

    half=True stores floating weights as float16 (about half the size); they load back as float32.
    """
    cfg = _checked_config(config)
    name = cfg["model"]["name"]
    if not isinstance(model, MODELS[name]):
        raise ModelError(f"config names {name!r} but the model is a {type(model).__name__}")
    if entropy is not None:
        if entropy.latent_channels != model.latent_channels:
            raise ModelError("entropy model and autoencoder disagree on the number of latent channels")
        cfg["quality"] = {**cfg.get("quality", {}), "n_qualities": entropy.n_qualities}
    ckpt: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model_state_dict": _plain_state(model, half),
        "config": cfg,
    }
    if entropy is not None:
        ckpt["entropy"] = {"state_dict": _plain_state(entropy, False), "frozen": entropy.freeze()}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: PathLike, device: torch.device | str = "cpu") -> LoadedModel:
    """Load (cached per path, device and file mtime/size) a checkpoint; ModelError names what is wrong."""
    path = Path(path).expanduser()
    try:
        st = path.stat()
    except OSError as exc:
        raise ModelError(f"model file not found: {path}") from exc
    key = (str(path.resolve()), str(torch.device(device)), st.st_mtime_ns, st.st_size)
    if key not in _cache:
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = _load_uncached(path, device)
    return _cache[key]


def _load_uncached(path: Path, device: torch.device | str) -> LoadedModel:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc}") from exc
    ckpt = _torch_load(raw, path, device)
    if not isinstance(ckpt, dict):
        raise ModelError(f"{path} is not a SAR Compressor checkpoint (top level is {type(ckpt).__name__})")
    for k in ("model_state_dict", "config"):
        if k not in ckpt:
            raise ModelError(f"{path} is not a SAR Compressor checkpoint: missing '{k}'")
    cfg = _checked_config(ckpt["config"], where=f"{path}: ")
    model = build_model(cfg["model"])
    _load_state(model, ckpt["model_state_dict"], f"{path}: model '{cfg['model']['name']}'")
    model.to(device).eval()
    entropy = _load_entropy(ckpt.get("entropy"), model, path, device)
    pre = cfg["preprocessing_params"]
    return LoadedModel(
        model=model,
        entropy=entropy,
        config=cfg,
        vmin=float(pre["vmin"]),
        vmax=float(pre["vmax"]),
        name=str(cfg["model"]["name"]),
        sha256=hashlib.sha256(raw).hexdigest(),
        path=path,
    )


def _torch_load(raw: bytes, path: Path, device: torch.device | str) -> Any:
    """weights_only load; numpy scalars (seen in prototype configs) are allowed, nothing else executable."""
    safe = [np.dtype, type(np.dtype(np.float32)), type(np.dtype(np.float64))]
    scalar = getattr(np.core.multiarray, "scalar", None)
    if scalar is not None:
        safe.append(scalar)
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(io.BytesIO(raw), map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many types for foreign/truncated files
        raise ModelError(f"{path} is not a readable torch checkpoint: {type(exc).__name__}: {exc}") from exc


def _checked_config(config: Any, where: str = "") -> dict[str, Any]:
    """A plain copy of the config with the required keys checked."""
    if not isinstance(config, dict):
        raise ModelError(f"{where}checkpoint 'config' must be a dict")
    model_cfg = config.get("model")
    if not isinstance(model_cfg, dict) or "name" not in model_cfg:
        raise ModelError(f"{where}checkpoint config is missing 'config.model.name'")
    if model_cfg["name"] not in MODELS:
        raise ModelError(f"{where}unknown model architecture {model_cfg['name']!r}; known: {', '.join(sorted(MODELS))}")
    pre = config.get("preprocessing_params")
    if not isinstance(pre, dict) or "vmin" not in pre or "vmax" not in pre:
        raise ModelError(f"{where}checkpoint config is missing 'config.preprocessing_params.vmin/vmax'")
    try:
        vmin, vmax = float(pre["vmin"]), float(pre["vmax"])
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}preprocessing_params vmin/vmax are not numbers") from exc
    if not vmin < vmax:
        raise ModelError(f"{where}preprocessing_params need vmin < vmax, got {vmin}, {vmax}")
    out = dict(config)
    out["model"] = dict(model_cfg)
    out["preprocessing_params"] = {**pre, "vmin": vmin, "vmax": vmax}
    if isinstance(config.get("quality"), dict):
        out["quality"] = dict(config["quality"])
    return out


def _plain_state(module: nn.Module, half: bool) -> dict[str, torch.Tensor]:
    state = {}
    for k, v in module.state_dict().items():
        v = v.detach().cpu().clone()
        state[k] = v.half() if half and v.is_floating_point() else v
    return state


def _load_state(module: nn.Module, state: Any, what: str) -> None:
    """Strict load with float32 weights; ModelError listing missing/unexpected/mis-shaped keys."""
    if not isinstance(state, dict):
        raise ModelError(f"{what}: state dict is not a dict")
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        k for k in own if k in state and (not torch.is_tensor(state[k]) or tuple(state[k].shape) != tuple(own[k].shape))
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
            if keys
        ]
        raise ModelError(f"{what}: weights do not match the architecture ({'; '.join(parts)})")
    fixed = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    module.load_state_dict(fixed, strict=True)


def _load_entropy(section: Any, model: SARAutoencoder, path: Path, device: torch.device | str) -> EntropyModel | None:
    if section is None:
        return None
    if not isinstance(section, dict) or "frozen" not in section:
        raise ModelError(f"{path}: checkpoint 'entropy' section is missing 'frozen' tables")
    entropy = EntropyModel.from_frozen(section["frozen"])
    if entropy.latent_channels != model.latent_channels:
        raise ModelError(
            f"{path}: entropy tables have {entropy.latent_channels} channels, the model has {model.latent_channels}"
        )
    if "state_dict" in section:
        _load_state(entropy, section["state_dict"], f"{path}: entropy model")
    return entropy.to(device).eval()
