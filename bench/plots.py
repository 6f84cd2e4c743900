"""Benchmark figures: rate-distortion curves per dataset and an equal-rate crop comparison (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

STYLE = {"ours": ("o", "-"), "ours_target": ("*", "none"), "jpeg2000": ("^", "--")}


def _figure(**kwargs):
    """A figure on its own Agg canvas: no pyplot, no global backend switch (the plugin shares QGIS's process)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def rd_figure(datasets: list[dict], path: Path) -> Path:
    """One row per dataset: PSNR (dB domain) and SSIM vs whole-file bpp, one curve per codec."""
    rows = max(len(datasets), 1)
    fig = _figure(figsize=(11, 3.1 * rows), constrained_layout=True)
    axes = fig.subplots(rows, 2, squeeze=False)
    codecs = sorted({e["codec"] for ds in datasets for e in ds["entries"]})
    colors = {codec: f"C{i % 10}" for i, codec in enumerate(codecs)}  # one colour per codec in every panel
    for (ax_p, ax_s), ds in zip(axes, datasets):
        for codec, entries in _curves(ds["entries"]).items():
            marker, line = STYLE[entries[0]["family"]]
            bpp = [e["bpp"] for e in entries]
            for ax, key in ((ax_p, "psnr_db"), (ax_s, "ssim")):
                values = [np.nan if e["metrics"][key] is None else e["metrics"][key] for e in entries]
                ax.plot(bpp, values, marker=marker, linestyle=line, label=codec, markersize=4, color=colors[codec])
        for ax, label in ((ax_p, "PSNR (dB, over range)"), (ax_s, "SSIM")):
            ax.set_xscale("log")
            ax.set_xlabel("bits per pixel (whole file)")
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
        ax_p.set_title(f"{ds['name']} ({ds['height']}x{ds['width']}, {ds['kind']})", fontsize=9, loc="left")
        ax_s.legend(fontsize=7, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def _curves(entries: list[dict]) -> dict[str, list[dict]]:
    curves: dict[str, list[dict]] = {}
    for e in sorted(entries, key=lambda e: e["bpp"]):
        curves.setdefault(e["codec"], []).append(e)
    return curves


def crop_figure(
    panels: list[tuple[str, np.ndarray]],
    rng: tuple[float, float],
    path: Path,
    title: str = "",
    crop: int = 384,
    centre: Optional[tuple[int, int]] = None,
) -> Path:
    """Side by side crops (dB, the same grey scale over rng) of the original and reconstructions."""
    h, w = panels[0][1].shape
    ch, cw = min(crop, h), min(crop, w)
    cy, cx = centre if centre is not None else (h // 2, w // 2)
    r0, c0 = int(np.clip(cy - ch // 2, 0, h - ch)), int(np.clip(cx - cw // 2, 0, w - cw))
    fig = _figure(figsize=(4.2 * len(panels), 4.6), constrained_layout=True)
    axes = fig.subplots(1, len(panels))
    for ax, (label, img) in zip(np.atleast_1d(axes), panels):
        ax.imshow(img[r0 : r0 + ch, c0 : c0 + cw], cmap="gray", vmin=rng[0], vmax=rng[1], interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title}  crop {ch}x{cw} at ({r0}, {c0}), grey = [{rng[0]:.1f}, {rng[1]:.1f}] dB", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
