"""The network side of the codec: a loaded model on a device, run over strips of tiles in batches.

Encoding is seamless: each 256x256 tile is encoded with a 32-pixel halo of real (or reflected) context and
only its central 16x16 latents are kept, so the file holds one contiguous latent grid (no overlap cost).
Decoding runs latent tiles with a 2-latent halo and keeps the central 256x256 pixels. Every tile has the same
shape (strips are reflect-padded to whole tiles), so batches are uniform and deterministic.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import numpy as np

from .errors import CancelledError, InputError

if TYPE_CHECKING:
    import torch

    from .models.checkpoint import LoadedModel

TILE = 256
HALO = 32
DOWNSAMPLE = 16
LATENT_TILE = TILE // DOWNSAMPLE
LATENT_HALO = HALO // DOWNSAMPLE
CPU_BATCH = 4
MAX_BATCH = 64
GPU_MEMORY_SHARE = 0.7

Cancel = Optional[Callable[[], bool]]
OnBatch = Optional[Callable[[int], None]]


def resolve_device(device: str = "auto") -> torch.device:
    """ "auto" -> CUDA when torch sees one, else CPU; an explicit "cuda" without one is an InputError."""
    import torch

    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise InputError(f"unknown device {device!r}; expected auto, cpu or cuda")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError("CUDA was requested but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(device)


def _pad(arr: np.ndarray, pads: list[tuple[int, int]]) -> np.ndarray:
    """Reflect padding (mirror without repeating the edge; repeated reflection for pads wider than the array,
    edge value for 1-wide axes): the same virtual extension of the raster on every strip."""
    return np.pad(arr, [(0, 0)] * (arr.ndim - len(pads)) + pads, mode="reflect")


def _on_device(loaded: LoadedModel, device: torch.device) -> LoadedModel:
    """The model on `device`; a copy when it lives elsewhere (loaded models are shared through a cache)."""
    current = next(loaded.model.parameters()).device
    if current.type == device.type and (device.index is None or current.index == device.index):
        return loaded
    moved = copy.deepcopy(loaded)
    moved.model.to(device)
    return moved


class SARCompressor:
    """A model, its entropy tables and a device; encodes/decodes strips tile-batch by tile-batch.

    `seconds_network` accumulates the time spent in the network's forward passes (synchronised on CUDA), for
    the benchmark's "share of time outside the network".
    """

    def __init__(
        self,
        model: Union[str, Path, LoadedModel, None] = "default",
        device: str = "auto",
        batch_size: Optional[int] = None,
    ):
        from .models.checkpoint import LoadedModel, load_checkpoint, resolve_model

        self.device = resolve_device(device)
        if isinstance(model, LoadedModel):
            self.loaded = _on_device(model, self.device)
        else:
            self.loaded = load_checkpoint(resolve_model(None if model is None else str(model)), device=self.device)
        self.model = self.loaded.model.eval()
        self.entropy = self.loaded.entropy
        self.latent_channels = int(self.model.latent_channels)
        self.seconds_network = 0.0
        if batch_size is not None and batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size) if batch_size else self._auto_batch_size()

    @property
    def device_name(self) -> str:
        import torch

        if self.device.type == "cuda":
            return f"CUDA: {torch.cuda.get_device_name(self.device)}"
        return "CPU"

    @property
    def n_qualities(self) -> int:
        return int(self.entropy.n_qualities) if self.entropy is not None else 0

    # ------------------------------------------------------------------ network calls

    def _forward(self, fn: Callable[[Any], Any], batch: np.ndarray) -> np.ndarray:
        """One batch through `fn` under inference mode (fp16 autocast on CUDA only); float32 numpy out."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        with torch.inference_mode():
            start = time.perf_counter()
            if self.device.type == "cuda":
                with torch.autocast(device_type="cuda", dtype=torch.float16):
                    y = fn(x)
                torch.cuda.synchronize(self.device)
            else:
                y = fn(x)
            self.seconds_network += time.perf_counter() - start
            return y.float().cpu().numpy()

    def _run_tiles(
        self, fn: Callable[[Any], Any], tiles: list[np.ndarray], cancel: Cancel, on_batch: OnBatch
    ) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for i in range(0, len(tiles), self.batch_size):
            if cancel is not None and cancel():
                raise CancelledError("cancelled by the user")
            part = tiles[i : i + self.batch_size]
            out.extend(self._forward(fn, np.stack(part)))
            if on_batch is not None:
                on_batch(len(part))
        return out

    def _auto_batch_size(self) -> int:
        """CPU: a small fixed batch. CUDA: ~70 % of free memory over the measured peak of one tile."""
        import torch

        if self.device.type != "cuda":
            return CPU_BATCH
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        tile = np.zeros((1, 1, TILE + 2 * HALO, TILE + 2 * HALO), dtype=np.float32)
        latents = self._forward(self.model.encode, tile)
        self._forward(self.model.decode, _pad(latents[:, :, :LATENT_TILE, :LATENT_TILE], [(2, 2), (2, 2)]))
        per_tile = max(torch.cuda.max_memory_allocated(self.device) - base, 1)
        free, _ = torch.cuda.mem_get_info(self.device)
        self.seconds_network = 0.0
        return int(min(MAX_BATCH, max(1, GPU_MEMORY_SHARE * free // per_tile)))

    # ------------------------------------------------------------------ strips

    def tiles_per_strip(self, width: int, rows: int = TILE) -> int:
        """Network calls per strip of `rows` core rows (the progress unit)."""
        return math.ceil(max(rows, 1) / TILE) * math.ceil(max(width, 1) / TILE)

    def encode_strip(
        self,
        x01: np.ndarray,
        halo_top: int = 0,
        halo_bottom: int = 0,
        cancel: Cancel = None,
        on_batch: OnBatch = None,
    ) -> np.ndarray:
        """Latents (C, ceil(core/16), ceil(W/16)) of a [0, 1] strip whose first `halo_top` and last
        `halo_bottom` rows are context from the neighbouring strips (0 at the raster's top/bottom edge)."""
        x01 = np.asarray(x01, dtype=np.float32)
        core, width = x01.shape[0] - halo_top - halo_bottom, x01.shape[1]
        if core < 1 or width < 1 or min(halo_top, halo_bottom) < 0 or max(halo_top, halo_bottom) > HALO:
            raise InputError(f"bad strip: shape {x01.shape} with halos {halo_top}/{halo_bottom}")
        ny, nx = math.ceil(core / TILE), math.ceil(width / TILE)
        padded = _pad(
            x01,
            [
                (HALO - halo_top, ny * TILE - core + HALO - halo_bottom),
                (HALO, nx * TILE - width + HALO),
            ],
        )
        step, size = TILE, TILE + 2 * HALO
        tiles = [
            padded[None, ty * step : ty * step + size, tx * step : tx * step + size]
            for ty in range(ny)
            for tx in range(nx)
        ]
        results = self._run_tiles(self.model.encode, tiles, cancel, on_batch)
        out = np.empty((self.latent_channels, ny * LATENT_TILE, nx * LATENT_TILE), dtype=np.float32)
        inner = slice(LATENT_HALO, LATENT_HALO + LATENT_TILE)
        for i, y in enumerate(results):
            ty, tx = divmod(i, nx)
            out[:, ty * LATENT_TILE : (ty + 1) * LATENT_TILE, tx * LATENT_TILE : (tx + 1) * LATENT_TILE] = y[
                :, inner, inner
            ]
        return out[:, : math.ceil(core / DOWNSAMPLE), : math.ceil(width / DOWNSAMPLE)]

    def decode_strip(
        self,
        y: np.ndarray,
        halo_top: int = 0,
        halo_bottom: int = 0,
        cancel: Cancel = None,
        on_batch: OnBatch = None,
    ) -> np.ndarray:
        """[0, 1] pixels (16*core, 16*w) of latents (C, h, w) whose first/last `halo_*` rows are context."""
        y = np.asarray(y, dtype=np.float32)
        core, width = y.shape[1] - halo_top - halo_bottom, y.shape[2]
        if core < 1 or width < 1 or min(halo_top, halo_bottom) < 0 or max(halo_top, halo_bottom) > LATENT_HALO:
            raise InputError(f"bad latent strip: shape {y.shape} with halos {halo_top}/{halo_bottom}")
        ny, nx = math.ceil(core / LATENT_TILE), math.ceil(width / LATENT_TILE)
        padded = _pad(
            y,
            [
                (LATENT_HALO - halo_top, ny * LATENT_TILE - core + LATENT_HALO - halo_bottom),
                (LATENT_HALO, nx * LATENT_TILE - width + LATENT_HALO),
            ],
        )
        step, size = LATENT_TILE, LATENT_TILE + 2 * LATENT_HALO
        tiles = [
            padded[:, ty * step : ty * step + size, tx * step : tx * step + size]
            for ty in range(ny)
            for tx in range(nx)
        ]
        results = self._run_tiles(self.model.decode, tiles, cancel, on_batch)
        out = np.empty((ny * TILE, nx * TILE), dtype=np.float32)
        inner = slice(HALO, HALO + TILE)
        for i, x in enumerate(results):
            ty, tx = divmod(i, nx)
            out[ty * TILE : (ty + 1) * TILE, tx * TILE : (tx + 1) * TILE] = x[0, inner, inner]
        return out[: core * DOWNSAMPLE, : width * DOWNSAMPLE]

    def autoencode_tiles(self, tiles: np.ndarray, latent_dtype: Any = np.float16) -> np.ndarray:
        """Independent tiles [N, t, t] in [0, 1] -> encoded, latents stored as `latent_dtype`, decoded.

        The prototype's fixed-rate design (no entropy coding, tiles blended by tiling.process_array): kept as the
        benchmark's baseline for what the contiguous latent grid and the learned prior buy.
        """
        latents = self._forward(self.model.encode, np.asarray(tiles, dtype=np.float32)[:, None])
        restored = latents.astype(latent_dtype).astype(np.float32)
        return self._forward(self.model.decode, restored)[:, 0]

    # ------------------------------------------------------------------ arrays

    def compress_array(self, arr: np.ndarray, quality: int = 3, **kwargs: Any):
        """A numpy raster -> `codec.ArrayResult` (.data: .sarz bytes, .reconstruction, .stats); see
        `codec.compress_array` for the keyword arguments."""
        from .codec import compress_array

        return compress_array(arr, quality=quality, compressor=self, **kwargs)

    def decompress_array(self, data: bytes, **kwargs: Any) -> np.ndarray:
        """.sarz bytes -> the raster array (the input's dtype; complex input comes back as intensity)."""
        from .codec import decompress_array

        return decompress_array(data, compressor=self, **kwargs)
