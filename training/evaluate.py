"""Validation figures for a model card: the whole codec on real SAR rasters at every quality level.

    python -m sar_compressor.training.evaluate --model resources/models/baseline.pt --sar ../shared/sar-data

For each GeoTIFF (band 1) and level: bpp of the complete .sarz bytes, PSNR and SSIM in the dB domain over the
original's 0.5-99.5 percentile range (engine.metrics defaults, the JPEG 2000 reference's convention) and the
linear-intensity mean ratio. Prints a markdown table and writes JSON when asked.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any


def evaluate_model(model: str, folder: str | Path, qualities: list[int] | None = None) -> list[dict[str, Any]]:
    """One record per (file, quality): file, quality, bpp, psnr_db, ssim, mean_ratio, enl_ratio."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    from ..engine.codec import compress_array
    from ..engine.compressor import SARCompressor
    from ..engine.metrics import evaluate_arrays
    from ..engine.preprocessing import detect_kind
    from ..engine.quality import N_QUALITIES

    comp = SARCompressor(model, device="cpu")
    levels = qualities or list(range(1, N_QUALITIES + 1))
    rows = []
    for f in sorted(Path(folder).glob("*.tif")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(f) as ds:
                arr, desc = ds.read(1), ds.descriptions[0]
        kind = detect_kind(arr.dtype, arr, desc)
        for q in levels:
            res = compress_array(arr, quality=q, description=desc, compressor=comp)
            m = evaluate_arrays(arr, res.reconstruction, kind=kind)
            rows.append(
                {
                    "file": f.stem,
                    "quality": q,
                    "bpp": 8.0 * len(res.data) / arr.size,
                    "psnr_db": m["psnr_db"],
                    "ssim": m["ssim"],
                    "mean_ratio": m["mean_ratio"],
                    "enl_ratio": m["enl_ratio"],
                }
            )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """One line per file, one column per level: 'bpp / PSNR / SSIM / mean ratio'."""
    levels = sorted({r["quality"] for r in rows})
    head = "| file | " + " | ".join(f"q{q}: bpp / PSNR / SSIM / mean" for q in levels) + " |"
    lines = [head, "|---" * (len(levels) + 1) + "|"]
    for name in dict.fromkeys(r["file"] for r in rows):
        cells = []
        for q in levels:
            r = next(x for x in rows if x["file"] == name and x["quality"] == q)
            cells.append(f"{r['bpp']:.3f} / {r['psnr_db']:.1f} / {r['ssim']:.3f} / {r['mean_ratio']:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sar_compressor.training.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="bundled model name or checkpoint path")
    p.add_argument("--sar", required=True, help="folder of SAR GeoTIFFs")
    p.add_argument("--quality", type=int, nargs="*", default=None)
    p.add_argument("--json", default=None, help="also write the records here")
    a = p.parse_args(argv)
    rows = evaluate_model(a.model, a.sar, a.quality)
    print(markdown(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
