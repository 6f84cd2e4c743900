"""`make demo`: simulate (or take) a SAR raster, compress, decompress, evaluate, and draw a side-by-side PNG.

python -m sar_compressor.bench.demo [--input TIF] [--out out/demo] [--quality N]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from ..engine.codec.passes.quality import DEFAULT_QUALITY
from ..engine.errors import SARCompressorError
from ..engine.json_text import null, write_json

DEMO_SIZE = 1024
PNG_CROP = 1024  # the picture shows a central crop at full resolution (speckle texture stays visible)


def _central_crop_db(path: Path, kind: str, band: int = 1, size: int = PNG_CROP) -> np.ndarray:
    """dB of a central window of one band (NaN where nodata), read without loading the whole raster."""
    import rasterio

    from ..engine.metrics import to_domains
    from ..engine.preprocessing import valid_mask

    with rasterio.open(path) as ds:
        h, w = min(ds.height, size), min(ds.width, size)
        row0, col0 = (ds.height - h) // 2, (ds.width - w) // 2
        arr = ds.read(band, window=((row0, row0 + h), (col0, col0 + w)))
        nodata = ds.nodata
    db, _ = to_domains(arr, kind)
    return np.where(valid_mask(arr, nodata), db, np.nan)


def run(
    out: Path,
    input_path: Optional[Path] = None,
    quality: int = DEFAULT_QUALITY,
    size: int = DEMO_SIZE,
    band: int = 1,
) -> dict:
    """The whole demo; returns the figures it prints (also written to out/demo.json)."""
    from ..engine.api import compress_file, decompress_file
    from ..engine.metrics import evaluate_files, render_side_by_side
    from ..engine.simulate import write_scene

    out.mkdir(parents=True, exist_ok=True)
    if input_path is None:
        input_path = write_scene(out / "scene.tif", size, size, looks=1, seed=0, kind="intensity")
        print(f"simulated a georeferenced {size}x{size} single-look intensity scene: {input_path}")
    sarz, recon = out / f"{input_path.stem}.sarz", out / f"{input_path.stem}_reconstruction.tif"
    cstats = compress_file(input_path, sarz, quality=quality, band=band, log=print)
    dstats = decompress_file(sarz, recon, log=print)
    metrics = evaluate_files(input_path, recon, band=band, reconstruction_band=1)
    png = render_side_by_side(
        _central_crop_db(input_path, metrics["kind"], band),
        _central_crop_db(recon, metrics["kind"]),
        out / "side_by_side.png",
        (metrics["range"]["vmin"], metrics["range"]["vmax"]),
        title=f"{input_path.name}: quality {cstats.quality}, {cstats.bpp:.3f} bpp, "
        f"PSNR {metrics['psnr_db']:.2f} dB (central crop, same dB stretch)",
    )
    report = {
        "input": str(input_path),
        "sarz": str(sarz),
        "reconstruction": str(recon),
        "png": str(png),
        "compress": cstats.to_dict(),
        "decompress": dstats.to_dict(),
        "metrics": metrics,
    }
    write_json(report, out / "demo.json", null, indent=2)
    print(
        f"\nratio {cstats.ratio:.1f}:1 | {cstats.bpp:.4f} bpp | PSNR {metrics['psnr_db']:.2f} dB | "
        f"SSIM {metrics['ssim']:.4f} | mean ratio {metrics['mean_ratio']:.4f} | "
        f"compress {cstats.seconds:.1f} s, decompress {dstats.seconds:.1f} s"
    )
    print(f"picture: {png}")
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sar_compressor.bench.demo", description=__doc__.splitlines()[0])
    p.add_argument("--input", type=Path, default=None, help="raster to use instead of a simulated scene")
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.add_argument("--quality", type=int, default=DEFAULT_QUALITY)
    p.add_argument("--size", type=int, default=DEMO_SIZE, help="side of the simulated scene")
    p.add_argument("--band", type=int, default=1, help="band of a multi-band --input (default 1)")
    args = p.parse_args(argv)
    try:
        run(args.out, args.input, args.quality, args.size, args.band)
    except SARCompressorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
