"""The prototype design as a baseline: the same autoencoder on overlapping 256x256 tiles (stride 192, cosine
blended), each tile's latents stored as raw float16 (fixed rate).

16 channels x 16 bits per 16x16 pixels = 1 bpp per tile, times the overlap cost (tile/stride)^2, plus a small
header, whatever the content; the gap to our entropy-coded levels at equal quality is what the contiguous latent
grid, quantization and the learned prior buy.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from ..engine import preprocessing as pp
from ..engine.compressor import DOWNSAMPLE
from ..engine.survey import RANGE_PERCENTILES  # the codec's default per-raster range
from ..engine.tiling import pad_to_multiple, process_array, tile_grid

TILE, OVERLAP = 256, 64
BYTES_PER_LATENT = 2  # float16


@dataclass
class PrototypeResult:
    db: np.ndarray
    nbytes: int
    bpp: float
    seconds: float


def roundtrip(compressor, db: np.ndarray) -> PrototypeResult:
    """Encode dB (NaN = invalid) with `compressor`'s network, keep float16 latents, decode back to dB."""
    start = time.perf_counter()
    valid = np.isfinite(db)
    rng = pp.robust_range(db[valid], *RANGE_PERCENTILES)
    x01 = pp.normalize(np.where(valid, db, rng.vmin), rng)
    x = process_array(x01, compressor.autoencode_tiles, tile=TILE, overlap=OVERLAP, batch_size=compressor.batch_size)
    padded = pad_to_multiple(x01, DOWNSAMPLE).shape
    windows = tile_grid(*padded, tile=TILE, overlap=OVERLAP)
    latent_values = sum(
        compressor.latent_channels * (w.height // DOWNSAMPLE) * (w.width // DOWNSAMPLE) for w in windows
    )
    header = json.dumps({"height": db.shape[0], "width": db.shape[1], "tiles": len(windows), **rng.to_dict()})
    nbytes = 4 + len(header) + BYTES_PER_LATENT * latent_values
    recon = np.where(valid, pp.denormalize(x, rng), np.nan)
    return PrototypeResult(recon, nbytes, 8.0 * nbytes / db.size, time.perf_counter() - start)
