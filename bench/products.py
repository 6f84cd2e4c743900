"""Products as they come (issue 16): simulated GRD-like uint16 DN and uint8 display products, zero-filled
outside a rotated footprint and without a nodata value, against JPEG 2000 at equal rates, each in the domain
its users measure it in: dB for the DN product (JPEG 2000 on dB scaled to uint16, as the other bench rows),
native values for the display product (JPEG 2000 on its own 8 bits). Fill pixels are outside every metric
(engine.metrics excludes no-signal zeros). Our rows go through compress_file with rate control and the flat
base (the codec without a network)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..engine.api import compress_file
from ..engine.metrics import evaluate_arrays, evaluate_files
from ..engine.simulate import write_product
from . import jpeg2000

TARGETS = (0.25, 0.5, 1.0)
PRODUCTS = {"grd": "amplitude", "display": "uint8"}
"""Product -> the metric kind its users judge it in (engine.metrics kinds)."""
Log = Callable[[str], None]


def run(workdir: Path, size: int, log: Log = print, targets: tuple[float, ...] = TARGETS) -> dict:
    """Rows {product: [{codec, target_bpp, bpp, psnr_db, ssim}]} and the metrics' domains."""
    rows, domains = {}, {}
    for i, (product, kind) in enumerate(PRODUCTS.items()):
        path = write_product(Path(workdir) / f"product_{product}_{size}.tif", size, size, product, seed=200 + i)
        with _raster(path) as orig:
            rows[product] = []
            for target in targets:
                ours = _ours(path, kind, target, workdir)
                theirs = _jpeg2000(orig, kind, target, workdir / f"product_{product}.jp2")
                for row in (ours, theirs):
                    domains[product] = row.pop("domain")
                    rows[product].append(row)
                log(
                    f"  {product} at {target} bpp: ours {ours['bpp']:.4f} bpp {ours['psnr_db']:.2f} dB, "
                    f"JPEG 2000 {theirs['bpp']:.4f} bpp {theirs['psnr_db']:.2f} dB ({kind})"
                )
    return {"size": size, "targets": list(targets), "rows": rows, "domains": domains}


def _raster(path: Path):
    import rasterio

    return rasterio.open(path)


def _row(codec: str, target: float, bpp: float, metrics: dict, **extra) -> dict:
    return {
        "codec": codec,
        "target_bpp": target,
        "bpp": bpp,
        "psnr_db": metrics["psnr_db"],
        "ssim": metrics["ssim"],
        "valid_pixels": metrics["valid_pixels"],
        "domain": metrics["domain"]["psnr_db"],
        **extra,
    }


def _ours(path: Path, kind: str, target: float, workdir: Path) -> dict:
    sarz, recon = workdir / "product.sarz", workdir / "product_recon.tif"
    stats = compress_file(path, sarz, target_bpp=target, reconstruction=recon)
    metrics = evaluate_files(path, recon, kind=kind)
    sarz.unlink()
    recon.unlink()
    return _row("ours", target, stats.bpp, metrics, coded_kind=stats.kind, no_signal_pixels=stats.no_signal_pixels)


def _jpeg2000(orig, kind: str, target: float, jp2: Path) -> dict:
    """JPEG 2000 of the product in its users' domain, decoded back to the product's values."""
    values = orig.read(1)
    if kind == "uint8":
        r = jpeg2000.integers_to_bpp(values, target, jp2)
        decoded = r.db
    else:  # dB of the DN over the valid pixels' range, as the other rows code real crops
        from ..engine.metrics import metric_range, to_domains

        db, _ = to_domains(values, kind)
        rng = metric_range(values, kind)
        r = jpeg2000.compress_to_bpp(db, rng, target, jp2)
        decoded = np.power(10.0, r.db.astype(np.float64) / 20.0)
    jp2.unlink()
    metrics = evaluate_arrays(values, np.where(values == 0, 0, decoded), kind=kind)
    return _row("JPEG 2000", target, r.bpp, metrics, hit=r.hit)
