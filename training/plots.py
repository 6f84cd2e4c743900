"""Run figures: training curves (loss, bpp, PSNR per level vs step) and sample reconstructions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _figure(**kwargs):
    """A figure on its own Agg canvas: no pyplot, no global backend switch (the plugin shares QGIS's process)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def read_log(path: Path) -> list[dict[str, Any]]:
    """Records of a run's log.jsonl (a resumed run appends, so later records of a step win when plotting)."""
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def _last_per_step(records) -> list[dict[str, Any]]:
    """One record per step, the latest written (a resumed run repeats the steps after its last checkpoint)."""
    by_step = {r["step"]: r for r in records}
    return [by_step[k] for k in sorted(by_step)]


def plot_curves(log_path: Path, png: Path) -> None:
    """Train loss and bpp vs step; validation bpp and PSNR per level vs step for every validation set."""
    recs = read_log(log_path)
    train = _last_per_step(r for r in recs if r["type"] == "train" and "loss" in r)
    vals = _last_per_step(r for r in recs if r["type"] == "val")
    sets = [k for k in (vals[-1] if vals else {}) if isinstance(vals[-1][k], list) and k != "lambdas"]
    fig = _figure(figsize=(4.5 * (1 + max(1, len(sets))), 7))
    axes = fig.subplots(2, 1 + max(1, len(sets)), squeeze=False)
    steps = [r["step"] for r in train]
    axes[0, 0].plot(steps, [r["loss"] for r in train])
    axes[0, 0].set(title="train RD loss", xlabel="step", yscale="log")
    axes[1, 0].plot(steps, [r["bpp"] for r in train], lw=0.6)
    axes[1, 0].set(title="train bpp (level drawn per step)", xlabel="step", yscale="log")
    for j, name in enumerate(sets, start=1):
        vsteps = [r["step"] for r in vals]
        n_levels = len(vals[-1][name])
        for q in range(n_levels):
            axes[0, j].plot(vsteps, [r[name][q]["psnr"] for r in vals], label=f"q{q + 1}")
            axes[1, j].plot(vsteps, [r[name][q]["bpp"] for r in vals], label=f"q{q + 1}")
        axes[0, j].set(title=f"val PSNR [0,1] dB: {name}", xlabel="step")
        axes[1, j].set(title=f"val bpp: {name}", xlabel="step", yscale="log")
        axes[0, j].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(png, dpi=90)


def plot_samples(rows: list[tuple[str, np.ndarray, np.ndarray, str]], png: Path) -> None:
    """One row per (label, original, reconstruction, caption): original | reconstruction | |error|."""
    fig = _figure(figsize=(9, 3 * len(rows)))
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for i, (label, orig, rec, caption) in enumerate(rows):
        axes[i, 0].imshow(orig, cmap="gray", vmin=0, vmax=1)
        axes[i, 0].set_title(f"{label}: original", fontsize=8)
        axes[i, 1].imshow(rec, cmap="gray", vmin=0, vmax=1)
        axes[i, 1].set_title(f"reconstruction {caption}", fontsize=8)
        axes[i, 2].imshow(np.abs(orig - rec), cmap="magma", vmin=0, vmax=0.5)
        axes[i, 2].set_title("|error| (0..0.5)", fontsize=8)
        for ax in axes[i]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
