"""End of a run: reload the best weights, decide fp16, write the engine checkpoint, verify, draw figures."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..engine.survey import RANGE_PERCENTILES
from .plots import plot_curves, plot_samples

if TYPE_CHECKING:
    from .train import RunData, RunLog, Trainer

HALF_PSNR_TOLERANCE = 0.02  # dB: fp16 weights are kept when no level loses more than this
HALF_BPP_TOLERANCE = 0.005  # relative
SAMPLE_LEVELS = (0, 2, 5)


def load_best(tr: Trainer, out: Path) -> int:
    """Load the best validated weights into the trainer (the last if none was saved); returns the step."""
    best = out / "best.pt"
    if not best.is_file():
        return tr.step
    st = torch.load(best, map_location=tr.device, weights_only=False)
    tr.model.load_state_dict(st["model"])
    tr.entropy.load_state_dict(st["entropy"])
    tr.lambdas = list(st["lambdas"])
    return int(st["step"])


def _half_loses_nothing(tr: Trainer, data: RunData, ref: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """Validate with the autoencoder's weights rounded through fp16; compare with the fp32 results."""
    saved = {k: v.clone() for k, v in tr.model.state_dict().items()}
    with torch.no_grad():
        for v in tr.model.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.half().float())
    res = tr.validate(data.val)
    tr.model.load_state_dict(saved)
    ok = True
    for name, levels in ref.items():
        if name == "objective":
            continue
        for a, b in zip(levels, res[name]):
            ok &= a["psnr"] - b["psnr"] <= HALF_PSNR_TOLERANCE
            ok &= abs(a["bpp"] - b["bpp"]) <= HALF_BPP_TOLERANCE * max(a["bpp"], 1e-6)
    return bool(ok), res


def engine_config(tr: Trainer, data: RunData, best_step: int, val: dict[str, Any], half: bool) -> dict[str, Any]:
    """The checkpoint 'config': model, typical training range, quality levels, and how it was trained."""
    cfg = tr.cfg
    model_cfg: dict[str, Any] = {"name": cfg.model, "latent_channels": tr.model.latent_channels}
    if hasattr(tr.model, "base_channels"):
        model_cfg["base_channels"] = int(tr.model.base_channels)
    return {
        "model": model_cfg,
        "preprocessing_params": {
            "vmin": data.vrange[0],
            "vmax": data.vrange[1],
            "percentiles": list(RANGE_PERCENTILES),
        },
        "quality": {
            "n_qualities": len(tr.lambdas),
            "lambdas": [float(v) for v in tr.lambdas],
            "val_bpp": {k: [lv["bpp"] for lv in v] for k, v in val.items() if k != "objective"},
        },
        "training": {
            "step": best_step,
            "steps_run": tr.step,
            "minutes": tr.elapsed / 60.0,
            "device": str(tr.device),
            "fp16_weights": half,
            "skipped_nonfinite": tr.skipped_nonfinite,
            "skipped_overflow": tr.skipped_overflow,
            "config": asdict(cfg),
        },
    }


def verify_export(path: Path, sample: torch.Tensor) -> dict[str, Any]:
    """Load the exported file with the engine and round-trip one image's symbols through the entropy coder."""
    from ..engine.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(path)
    with torch.no_grad():
        y = loaded.model.encode(sample[:1].float())[0]
    n_bytes = []
    for q in range(loaded.entropy.n_qualities):
        s = loaded.entropy.quantize(y, q)
        data = loaded.entropy.encode(s, q)
        if not np.array_equal(loaded.entropy.decode(data, q, s.shape), s):
            raise RuntimeError(f"entropy round trip failed for level {q + 1} of {path}")
        n_bytes.append(len(data))
    return {"sha256": loaded.sha256, "bytes_per_level": n_bytes, "file_bytes": path.stat().st_size}


def sample_rows(tr: Trainer, data: RunData) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """First image of each validation set at a few levels, for the reconstruction figure."""
    rows = []
    for name, xs in data.val.items():
        x = xs[:1]
        for q in SAMPLE_LEVELS:
            rec, bits = tr.evaluate(x, q)
            bpp = bits / float(x[0, 0].numel())
            rows.append((f"{name} q{q + 1}", x[0, 0].numpy(), rec[0, 0].cpu().numpy(), f"{bpp:.3f} bpp"))
    return rows


def export_run(tr: Trainer, data: RunData, out: Path, log: RunLog) -> Path:
    """Best weights -> engine checkpoint (fp16 if harmless, frozen tables), figures, summary.json."""
    from ..engine.models.checkpoint import save_checkpoint

    best_step = load_best(tr, out)
    val = tr.validate(data.val)
    half, val_half = _half_loses_nothing(tr, data, val)
    export = Path(tr.cfg.export or out / f"{tr.cfg.model}.pt")
    export.parent.mkdir(parents=True, exist_ok=True)
    tr.model.cpu().eval()
    tr.entropy.cpu().eval()
    save_checkpoint(export, tr.model, engine_config(tr, data, best_step, val, half), tr.entropy, half=half)
    tr.model.to(tr.device)
    tr.entropy.to(tr.device)
    check = verify_export(export, next(iter(data.val.values())))
    plot_curves(out / "log.jsonl", out / "curves.png")
    plot_samples(sample_rows(tr, data), out / "samples.png")
    summary = {
        "export": str(export),
        "best_step": best_step,
        "half": half,
        "val": val,
        "val_half": val_half,
        **check,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log.write(
        {"type": "export", **summary},
        f"exported {export} ({check['file_bytes'] / 1e6:.2f} MB, fp16={half}, best step {best_step})",
    )
    return export
