"""Compression: the options checked, pass 1 (survey) fixing the layout, then pass 2 as a chunk generator.

Pass 2 reads each row of tiles, codes each tile's refinement layer over the flat base (the shared StripPass)
and measures against the original what the chunk must carry besides: the block means, the bright-target
residuals, the invalid pixels. The finished tiles can go to a sink too (in rows of tiles): the reconstruction
raster, equal to what decompression will produce.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ... import preprocessing as pp
from ...errors import InputError
from ...io.raster_io import RasterInfo, itemsize
from ...preprocessing import isolated_count
from ..entropy import refine
from ..entropy.ssim_weights import TUNES
from ..format.layout import MEAN_CORRECTIONS, Layout, block_for_tiles, bright_threshold, mean_log2_step, tile_size
from ..format.sarz_header import band_entry
from ..format.strip_payload import Strip, invalid_codes
from ..radiometry import (
    block_counts,
    block_sums,
    bright_contexts,
    bright_residuals,
    cell_sums,
    finalize_strip,
    global_gain_db,
    mean_code_prediction,
    mean_codes,
    predicted_codes,
    prediction_level,
    use_mask,
)
from ..restoration import loop_filter
from .interband import ReferenceBand
from .quality import N_QUALITIES, Quality, quality_level
from .strip_window import Cancel, Progress, Sink, StripPass, Work, check_cancel
from .survey import RowReader, Survey, declared, survey_band

Log = Optional[Callable[[str], None]]


@dataclass
class BandSource:
    """The band being compressed: its (single-band) info, its number in the input, a row reader."""

    info: RasterInfo
    band: int
    read: RowReader

    @property
    def raw_bytes(self) -> int:
        """Size of the band uncompressed: what the ratio is measured against."""
        return self.info.width * self.info.height * itemsize(self.info.dtype)


@dataclass
class EncodeOptions:
    """The user's coding choices, checked by `level`."""

    quality: int
    kind: str
    mean_correction: str
    tune: str = "ssim"
    """What the rate-distortion decisions weigh: "ssim" (errors where SSIM is sensitive count more:
    ssim_weights) or "psnr" (plain squared error). Encoder only: not in the file, any decoder reads both."""
    interband: bool = True
    """Predict bands from one another where the measurement says it pays (engine.codec.passes.interband)."""
    loop_filter: bool = True
    """Fit each tile's adaptive loop filter (engine.codec.restoration.loop_filter) where it pays; off: every tile's
    loop-filter stream stays empty (the ablation)."""
    interscale: bool = True
    """Predict each tile's finest levels from the level above where it pays (engine.codec.transform.interscale);
    off: no tile does (the ablation)."""
    sign_contexts: bool = False
    """Code each tile's second-phase signs under their neighbours' where it pays (engine.codec.entropy.
    sign_contexts); off by default: with phase prediction on they bought under 0.01 dB for 3-6 % of the encoding
    time (the bench's ablation, resources/models/MODELS.md), and the ablation measures them on."""
    phase_prediction: bool = True
    """Predict each subband's second phase from its first where it pays (engine.codec.entropy.phase_prediction);
    off: no subband is (the ablation)."""
    neighbour_bits: bool = True
    """Count, in the rate-distortion lowering, the bits a value costs its neighbours' contexts (engine.codec.
    entropy.rd_lowering.rdo_lower); off: each value on its own bits, as 0.5.0 (the ablation)."""
    refine_step: Optional[float] = None
    """A step between the ladder's (rate control); None: the quality's own."""

    def level(self) -> Quality:
        """What the quality means; InputError naming what is wrong."""
        level = quality_level(self.quality)
        _check_choice("mean correction", self.mean_correction, MEAN_CORRECTIONS)
        _check_choice("tune", self.tune, TUNES)
        return level if self.refine_step is None else replace(level, refine_step=self.refine_step)


def _check_choice(label: str, value: str, choices: tuple[str, ...]) -> None:
    """InputError naming the option, its choices and what was given."""
    if value not in choices:
        raise InputError(f"{label} must be one of {', '.join(choices)}, got {value!r}")


def band_mean_correction(survey: Survey, requested: str) -> str:
    """The mean correction the band is coded with: none for native values (no linear mean) and for a constant band
    (its flat base is its value: block means, coded in log2 steps, moved 0.1 to 0.10011); else the requested one."""
    return "none" if survey.kind == "native" or survey.constant else requested


@dataclass
class CodedTile:
    """What a tile's work measured for its band's figures, and its chunk."""

    squared_error: float
    filtered: bool = False
    """Whether the tile keeps a loop filter."""
    predicted: bool = False
    """Whether the tile predicts a detail level from the level above."""
    sum_o: float = 0.0
    sum_r: float = 0.0
    payload: bytes = b""


class EncodePass(StripPass):
    """Pass 2 of one band as a chunk generator (`strips()`, consumed by the container writer); `band_entry()`
    once it is exhausted, then `flush_deferred()`."""

    TOTALS = (
        *("n_valid", "n_clipped", "n_bright", "n_zero", "n_isolated_zero", "n_scattered", "n_filtered", "n_predicted"),
        *("sum_o", "sum_r", "squared_error"),
    )
    """The whole-raster statistics, each a sum over tiles (strip_tasks adds up those of tiles coded apart)."""

    def __init__(
        self,
        source: BandSource,
        layout: Layout,
        survey: Survey,
        options: EncodeOptions,
        progress: Progress,
        cancel: Cancel,
        reference: Optional[ReferenceBand] = None,
    ):
        super().__init__(layout, progress, cancel)
        self.source, self.survey, self.reference = source, survey, reference
        self.ssim = survey.ssim if options.tune == "ssim" else None
        self.options = options
        self.n_filtered = self.n_predicted = 0
        self.spool_dir: Optional[Path] = None
        self.sum_o = self.sum_r = 0.0
        self.n_valid = self.n_clipped = self.n_bright = self.n_zero = self.n_isolated_zero = self.n_scattered = 0
        self.deferred: list[tuple[Path, Strip]] = []
        self.refinements: Optional[list[bytes]] = None
        """Kept when another band is predicted from this one (its ReferenceBand decodes them)."""
        self.chunk_bytes = 0
        self.squared_error = 0.0
        self.coded: Optional[CodedTile] = None
        """The last refined tile's figures, until after_decode adds them up."""
        self.row_of_tiles: tuple[int, Optional[np.ndarray]] = (-1, None)
        """(first row, the rows) of the input under the current row of tiles: read once for all its tiles."""
        self.ceiling_db = pp.type_ceiling_db(layout.kind, layout.dtype, layout.scaling)
        """Where the output's integer type clips (bright residuals there round up: radiometry.bright_residuals)."""

    @classmethod
    def plan(
        cls,
        source: BandSource,
        options: EncodeOptions,
        progress: Progress = None,
        cancel: Cancel = None,
        log: Log = None,
        survey: Optional[Survey] = None,
        band_index: int = 0,
        reference: Optional[ReferenceBand] = None,
    ) -> EncodePass:
        """Options checked and pass 1 done (or its `survey` given: it does not depend on the step, so rate
        control's passes share one): a pass whose layout is fixed for every strip. `band_index`: the band's
        place in the file; `reference`: the band it is predicted from (engine.codec.passes.interband)."""
        level = options.level()
        pp.check_dtype(source.info.dtype)
        if survey is None:
            survey = survey_band(source.info, source.read, options.kind, ssim=options.tune == "ssim")
        source = replace(source, info=declared(source.info, survey))
        refine_step = max(level.refine_step, survey.step_floor)  # no step below the input's own quantization
        tile_width, tile_height = tile_size(source.info.width, source.info.height)
        block = block_for_tiles(tile_width, tile_height, source.info.width, source.info.height)
        layout = Layout(
            width=source.info.width,
            height=source.info.height,
            kind=survey.kind,
            dtype=source.info.dtype,
            nodata=source.info.nodata,
            rng=survey.rng,
            quality=int(options.quality),
            refine_step=refine_step,
            mean_correction=band_mean_correction(survey, options.mean_correction),
            bright_threshold=bright_threshold(survey.rng, refine_step),
            tile_width=tile_width,
            tile_height=tile_height,
            band_index=band_index,
            reference=None if reference is None else reference.layout.band_index,
            mean_log2_step=mean_log2_step(refine_step * survey.rng.span, block),
            block=block,
            scaling=survey.scaling,
        )
        if log is not None:
            unit = "" if layout.kind == "native" else " dB"
            log(
                f"band {source.band}: {layout.width}x{layout.height} {layout.dtype} as {layout.kind} "
                f"({survey.kind_reason}), range [{survey.rng.vmin:.2f}, {survey.rng.vmax:.2f}]{unit}, "
                f"quality {layout.quality}/{N_QUALITIES}"
            )
        return cls(source, layout, survey, options, progress, cancel, reference)

    @contextlib.contextmanager
    def reconstructing(self, sink: Sink, spool_parent: Optional[Path]) -> Iterator[None]:
        """Send the finished tiles to `sink` too. Under "global" correction they wait on disk (a temporary
        folder in `spool_parent`) until `flush_deferred`, as the gain is known only after the last tile."""
        self.sink = sink
        if self.layout.mean_correction != "global":
            yield
            return
        with tempfile.TemporaryDirectory(prefix=".sarz-spool-", dir=spool_parent) as spool:
            self.spool_dir = Path(spool)
            yield

    def _read(self, row0: int, rows: int, col0: int, cols: int) -> np.ndarray:
        """A tile of the input; its row of tiles is read once, when its first tile is loaded."""
        if self.row_of_tiles[0] != row0:
            self.row_of_tiles = (row0, None)  # the previous row's memory goes first
            self.row_of_tiles = (row0, self.source.read(row0, row0 + rows))
        return self.row_of_tiles[1][:, col0 : col0 + cols]

    def load(self, k: int) -> Strip:
        """Read tile k; keep what the refinement layer and the gains need; count the statistics."""
        layout = self.layout
        tile = layout.tile(k)
        raw = self._read(tile.row0, tile.rows, tile.col0, tile.cols)
        signal, scattered = pp.signal_and_scattered(raw, layout.kind, layout.dtype, layout.nodata)
        self.n_valid += int(signal.sum())  # what evaluate measures
        self.n_scattered += int(scattered.sum())
        valid = signal | scattered  # the scattered ones coded as data (at the signal around them: refine_target)
        orig_db = pp.to_db(raw, layout.kind, layout.scaling)
        keep_means = layout.kind != "native"  # native values have no linear intensity to keep
        residuals = bright_residuals(
            orig_db, valid, layout.bright_threshold, layout.bright_step_db, self.ceiling_db, keep_means
        )
        outside = (orig_db < layout.rng.vmin) | (orig_db > layout.rng.vmax)
        self.n_clipped += int(np.count_nonzero(valid & outside & ~scattered))
        self.n_bright += int(residuals.steps.size)
        invalid = ~valid
        zeros = invalid & (raw == 0) if layout.nodata != 0 else np.zeros_like(invalid)  # no-signal, not nodata
        self.n_zero += int(zeros.sum())
        self.n_isolated_zero += isolated_count(zeros)
        has_invalid = bool(invalid.any())
        strip = Strip.at(
            tile,
            bright=residuals,
            invalid=invalid if has_invalid else None,
            codes=invalid_codes(raw, invalid, layout.nodata) if has_invalid else np.zeros(0, np.uint8),
            orig_db=orig_db,
            scattered=scattered if scattered.any() else None,
        )
        strip.below_zero = self._below_zero(raw, valid)
        return strip

    def _below_zero(self, raw: np.ndarray, valid: np.ndarray) -> Optional[np.ndarray]:
        """Per gain block, the sum of a noise-subtracted intensity tile's negative values (None without any): the
        block means count them, where orig_db has them at the noise floor (counted as zero, a simulated sea whose
        signal is under the noise, 42 % of its values negative, decoded 64 % above its mean; with them, 1.3 %)."""
        if self.layout.kind != "intensity" or raw.dtype.kind not in "fi":
            return None
        scaling = self.layout.scaling
        values = raw if scaling == pp.IDENTITY else pp.scaled(raw, scaling)  # no copy of a float tile as it is
        negative = valid & (values < 0)
        if not negative.any():
            return None
        return cell_sums(np.where(negative, values, 0.0).astype(np.float64), self.layout.block)

    def refine_target(self, strip: Strip, base: float) -> np.ndarray:
        """What the refinement layer codes: the original clipped to the range, the base where pixels are
        invalid (their own section restores them: nothing to spend there), the mean of the signal around a
        scattered no-signal pixel there (pp.fill_scattered) but in native values, where a zero is a value like any
        other (a display product's clipped dark tail: evaluate scores it) and is coded as such, clipped to the
        range (a uint8 raster's 5 % scattered zeros among 100-199 decoded near 149)."""
        rng = self.layout.rng
        clipped = np.clip(strip.orig_db, rng.vmin, rng.vmax)
        if strip.scattered is not None and self.layout.kind != "native":
            signal = ~strip.scattered if strip.invalid is None else ~strip.scattered & ~strip.invalid
            clipped = pp.fill_scattered(clipped, strip.scattered, signal, rng.vmin)
        return (clipped if strip.invalid is None else np.where(strip.invalid, base, clipped)).astype(np.float32)

    def code_refinement(
        self, target: np.ndarray, base: refine.FlatBase, reference: Optional[np.ndarray], levels: tuple[int, ...]
    ) -> tuple[bytes, list[np.ndarray]]:
        """The refinement layer's (payload, refined image at each of `levels`) of a tile, its rate-distortion
        decisions weighted for SSIM unless tuned for PSNR, predicted from the reference band's tile when the band
        has one."""
        step, options = self.layout.refine_step_db, self.options
        return refine.encode_levels(
            target,
            base,
            step,
            levels,
            self.ssim,
            reference,
            options.interscale,
            options.sign_contexts,
            options.phase_prediction,
            options.neighbour_bits,
        )

    def prepare(self, strip: Strip, base: float) -> Work:
        """The tile's target and its reference band's tile (decoded in tile order), then the work (`_code`)."""
        target = self.refine_target(strip, base)
        strip.reference = reference = (
            None if self.reference is None else self.reference.deviation(strip.index, self.layout)
        )
        return lambda: self._code(strip, target, reference, base)

    def _code(self, strip: Strip, target: np.ndarray, reference: Optional[np.ndarray], base: float) -> CodedTile:
        """Code what the base missed against the original; the bright targets' contexts from the refinement
        layer's pixels (what the decoder has before its loop filter); the loop filter; measure the error left (the
        band's PSNR over its coded range, before the mean correction) and the block means of the original (over
        the pixels the decoder scales); then the chunk is complete. Touches nothing but the tile."""
        flat, coarse = refine.FlatBase(base, target.shape), prediction_level(strip)
        strip.refinement, (refined, approximation) = self.code_refinement(target, flat, reference, (0, coarse))
        strip.coarse_db = (coarse, approximation)  # what the block means are predicted from, as the decoder has it
        strip.raw_db = strip.refined_db = self.clip_refined(refined)
        bright = strip.bright.positions.size > 0
        contexts = bright_contexts(self.layout, strip.raw_db) if bright else None
        use = use_mask(strip)
        filtered = self._loop_filter(strip, target, use)
        error = (strip.raw_db - target).astype(np.float64) ** 2
        signal = np.ones(error.shape, bool) if strip.scattered is None else ~strip.scattered  # the band's PSNR
        if strip.invalid is not None:
            signal &= ~strip.invalid
        strip.scattered = None
        coded = CodedTile(float(error[signal].sum()), filtered)
        coded.predicted = refine.predicted_subbands(strip.refinement, reference is not None) > 0
        if self.layout.kind != "native":  # native values have no linear intensity to restore
            sum_o, sum_r = block_sums(strip.orig_db, strip.raw_db, use, self.layout.block)
            if strip.below_zero is not None:
                sum_o = sum_o + strip.below_zero
            coded.sum_o, coded.sum_r = float(sum_o.sum()), float(sum_r.sum())
            if self.layout.mean_correction == "block":
                strip.gain_prediction = mean_code_prediction(self.layout, strip)
                codes = mean_codes(sum_o, block_counts(use, self.layout.block), self.layout.mean_log2_step)
                strip.gains = predicted_codes(codes, strip.gain_prediction)
        strip.orig_db = strip.below_zero = None
        coded.payload = strip.payload(contexts)
        return coded

    def _loop_filter(self, strip: Strip, target: np.ndarray, use: np.ndarray) -> bool:
        """Fit the tile's loop filter against the original on `use` (the pixels the gains measure: valid, not
        bright targets); where it pays, keep it in the chunk and filter raw_db as the decoder will."""
        layout = self.layout
        if not self.options.loop_filter:
            return False
        span, tuned_ssim = layout.rng.span, self.options.tune == "ssim"
        fitted = loop_filter.fit(strip.raw_db, target, use, layout.flat_db, layout.refine_step_db, span, tuned_ssim)
        if fitted is None:
            return False
        strip.loop_filter = fitted[0].encode()
        strip.raw_db = self.clip_refined(fitted[1])
        return True

    def apply(self, strip: Strip, result: CodedTile) -> None:
        """Keep the refinement layer (for the bands predicted from this one); the figures wait for after_decode."""
        if self.refinements is not None:
            self.refinements.append(strip.refinement)
        self.coded = result

    def after_decode(self, strip: Strip) -> bytes:
        """The tile's figures added to the band's (in tile order: the same sums on any run); its chunk."""
        coded, self.coded = self.coded, None
        self.squared_error += coded.squared_error
        self.n_filtered += coded.filtered
        self.n_predicted += coded.predicted
        if self.layout.kind != "native":
            self.sum_o += coded.sum_o
            self.sum_r += coded.sum_r
        self.chunk_bytes += len(coded.payload)
        return coded.payload

    def finalize(self, strip: Strip) -> None:
        if self.sink is not None and self.layout.mean_correction == "global":
            self._defer(strip)
        else:
            super().finalize(strip)

    def _defer(self, strip: Strip) -> None:
        """Keep the decoded tile on disk until the global gain is known."""
        name = self.spool_dir / f"{strip.index}.npz"
        invalid = strip.invalid if strip.invalid is not None else np.zeros((0, 0), bool)
        np.savez(name, raw_db=strip.raw_db, invalid=invalid)
        light = replace(strip, raw_db=None, invalid=None)
        self.deferred.append((name, light))

    def flush_deferred(self) -> None:
        """Finish the tiles `_defer` kept, now that the global gain is known."""
        gain_db = global_gain_db(self.global_gain)
        for name, strip in self.deferred:
            check_cancel(self.cancel)
            with np.load(name) as saved:
                raw_db, invalid = saved["raw_db"], saved["invalid"]
            strip.invalid = invalid if invalid.size else None
            self.rows.add(strip, finalize_strip(self.layout, raw_db, gain_db, strip))
            name.unlink()
        self.deferred.clear()

    @property
    def global_gain(self) -> float:
        """To 7 significant digits: the header stores what the strips were finished with, in few bytes."""
        return float(f"{self.sum_o / self.sum_r:.7g}") if self.sum_o > 0 and self.sum_r > 0 else 1.0

    @property
    def clipped_fraction(self) -> float:
        return self.n_clipped / self.n_valid if self.n_valid else 0.0

    @property
    def psnr_db(self) -> Optional[float]:
        """PSNR of the refined dB against the original clipped to the coded range, over that range (valid
        pixels; before the mean correction, which moves it by hundredths of a dB); None when nothing was valid."""
        if self.n_valid == 0:
            return None
        mse = self.squared_error / self.n_valid
        return float("inf") if mse == 0 else float(10.0 * np.log10(self.layout.rng.span**2 / mse))

    def band_entry(self) -> dict[str, Any]:
        """The band's entry of the .sarz header, with the statistics of its run (once `strips()` is exhausted)."""
        self.row_of_tiles = (-1, None)
        layout = self.layout
        stats = {
            "pixels": layout.width * layout.height,
            "valid_pixels": self.n_valid,
            "input_bytes": self.source.raw_bytes,
            "clipped_fraction": _round(self.clipped_fraction),
            "n_bright_residuals": self.n_bright,
            "no_signal_pixels": self.n_zero,
            "isolated_zeros": self.n_isolated_zero,
            "kind_reason": self.survey.kind_reason,
            "warnings": self.survey.warnings,
            "linear_mean": _round(self.survey.linear_mean),
        }
        if self.n_scattered:  # a zero costs header bytes on every small file; `info` reads its absence as 0
            stats["scattered_no_signal"] = self.n_scattered
        if self.n_filtered:  # the same
            stats["loop_filtered_tiles"] = self.n_filtered
        if self.n_predicted:
            stats["interscale_tiles"] = self.n_predicted
        return band_entry(layout, self.source.info, self.source.band, self.global_gain, stats)


def _round(value: float) -> float:
    """Six significant digits: statistics for `info`, not decoder parameters (every digit costs header bytes)."""
    return float(f"{value:.6g}")
