"""Decompression: the model the header names (checked by sha256), the header validated into a Layout, then
the shared StripPass window over strips rebuilt from the file's chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from . import refine
from .compressor import SARCompressor
from .container import ContainerReader
from .errors import ContainerError, ModelError
from .layout import Layout
from .radiometry import bright_contexts
from .raster_io import RasterInfo
from .sarz_header import MODEL_ID_HEX, layout_from_header, model_identity
from .strip_payload import BrightResiduals, Strip
from .strip_window import Cancel, Progress, Sink, StripPass, check_cancel

ModelArg = Union[str, Path, Any, None]
"""A bundled model name, a checkpoint path or a LoadedModel."""


def decoder_for(
    header: dict[str, Any], model: ModelArg, device: str, compressor: Optional[SARCompressor]
) -> SARCompressor:
    """The model named in the header (or the one given), verified by sha256."""
    want_name, want_sha = model_identity(header)
    if compressor is None:
        try:
            compressor = SARCompressor(model if model is not None else want_name, device=device)
        except ModelError as exc:
            raise ModelError(
                f"file was made with model {want_name} (sha256 {want_sha[:12]}...), which cannot be loaded: "
                f"{exc}. Pass the model file with --model."
            ) from exc
    got = compressor.loaded
    if len(want_sha) < MODEL_ID_HEX or not got.sha256.startswith(want_sha):
        raise ModelError(
            f"file was made with model {want_name} (sha256 {want_sha[:12]}...), got {got.name} "
            f"(sha256 {got.sha256[:12]}..., {got.path}); pass the matching model file with --model"
        )
    return compressor


def _check_model_fits(layout: Layout, comp: SARCompressor) -> None:
    if layout.latent_channels != comp.latent_channels or not 0 <= layout.level < comp.n_qualities:
        raise ModelError(
            f"the model {comp.loaded.name} ({comp.latent_channels} channels, {comp.n_qualities} qualities) "
            f"cannot decode this file ({layout.latent_channels} channels, quality {layout.level + 1})"
        )


class DecodePass(StripPass):
    """The decode pass: strips come from the file's chunks, the global gain from its header."""

    def __init__(
        self,
        reader: ContainerReader,
        comp: SARCompressor,
        layout: Layout,
        info: RasterInfo,
        progress: Progress,
        cancel: Cancel,
    ):
        super().__init__(comp, layout, progress, cancel)
        self.reader, self.info = reader, info
        self._global_gain = float(reader.header["gain"]["global"])

    @classmethod
    def open(
        cls,
        reader: ContainerReader,
        model: ModelArg,
        device: str,
        compressor: Optional[SARCompressor],
        progress: Progress = None,
        cancel: Cancel = None,
    ) -> DecodePass:
        """Model loaded and checked, header validated, chunk count checked: nothing decoded yet."""
        comp = decoder_for(reader.header, model, device, compressor)
        layout, info = layout_from_header(reader.header)
        _check_model_fits(layout, comp)
        if reader.n_chunks != layout.n_strips:
            raise ContainerError(f"the file has {reader.n_chunks} chunks, its header implies {layout.n_strips}")
        return cls(reader, comp, layout, info, progress, cancel)

    @property
    def global_gain(self) -> float:
        return self._global_gain

    def load(self, k: int) -> Strip:
        check_cancel(self.cancel)
        return Strip.from_payload(self.reader.read_chunk(k), k, self.layout, self._latents)

    def refine(self, strip: Strip) -> None:
        """The refinement layer applied, then the bright targets read (their contexts come from the result)."""
        strip.raw_db = self.clip_refined(refine.decode(strip.refinement, strip.raw_db, self.layout.refine_step_db))
        contexts = bright_contexts(self.layout, strip.raw_db) if strip.bright_section else None
        strip.bright = BrightResiduals.decode(strip.bright_section, contexts)

    def _latents(self, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        if self.layout.uses_network:
            return self.y_hat(self.comp.entropy.decode(data, self.layout.level, shape))
        if data:
            raise ContainerError("a chunk carries network latents but the header says the base is flat")
        return np.zeros((0,) + shape[1:], dtype=np.float32)

    def run(self, sink: Sink) -> None:
        """Every strip, finished, into `sink`."""
        self.sink = sink
        for _ in self.strips():
            pass
