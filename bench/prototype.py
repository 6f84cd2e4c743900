"""The prototype design as a baseline: the same autoencoder, latents stored as raw float16 (fixed rate).

16 channels x 16 bits per 16x16 pixels = 1 bpp plus a small header, whatever the content; the gap to our
entropy-coded levels at equal quality is what the learned prior and quantization buy.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass

import numpy as np

from ..engine import preprocessing as pp

RANGE_PERCENTILES = (0.5, 99.9)  # the codec's default per-raster range


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
    latents = compressor.encode_strip(x01).astype(np.float16)
    header = json.dumps(
        {"shape": list(latents.shape), "height": db.shape[0], "width": db.shape[1], **rng.to_dict()}
    )
    blob = struct.pack("<I", len(header)) + header.encode() + latents.tobytes()
    restored = np.frombuffer(blob, dtype=np.float16, offset=4 + len(header)).reshape(latents.shape)
    x = compressor.decode_strip(restored.astype(np.float32))[: db.shape[0], : db.shape[1]]
    recon = np.where(valid, pp.denormalize(x, rng), np.nan)
    return PrototypeResult(recon, len(blob), 8.0 * len(blob) / db.size, time.perf_counter() - start)
