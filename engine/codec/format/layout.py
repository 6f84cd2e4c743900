"""Where everything of a .sarz sits: tiles, gain blocks, and the coding parameters.

The encoder builds a Layout from its survey of the input, the decoder from the file header; both then walk the
same tiles (one chunk each, in rows of tiles), so every size they compare (chunk rows and columns, gain blocks)
comes from one place. Every tile is coded on its own: a window of the raster decodes from the tiles covering it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ... import preprocessing as pp
from ..entropy.refine import SYNTAX, SYNTAX_7, SYNTAX_8, SYNTAX_9, Syntax
from .container import FORMAT_VERSION

STRIP_ROWS = 512
"""Rows pass 1 (the survey) reads at a time."""
TILE = 1024
"""Side of the square tiles (the last row and column of tiles may be smaller; a raster narrower or shorter than a
tile has tiles as wide or tall as the raster). Every tile is transformed and gain-corrected on its own, so tiles
cost bits: forced 512-pixel tiles on the 900x1024 crops (four instead of one) cost +5.7 to +5.9 % bpp at quality
5 and +19 to +21 % at quality 2, 256-pixel tiles +24 to +26 % and +78 to +85 % (docs/FORMAT.md). A window
decodes the tiles it touches: 1024 keeps a 1024x1024 window to at most 4 tiles, and overviews to 1/1024 per
tile."""
BLOCK = 256
"""Side of the square blocks that each get one mean-correction gain, in the files this version writes (format 11;
the header's `gain_blocks.block_size` says it). Measured against format 10's 64 on the 8 real crops coded to 0.25 /
0.5 / 1 bpp by rate control (PSNR over JPEG 2000, same J2K curves): 128 +0.024 / +0.017 / +0.018 dB on the
multilooked and oversampled crops, 256 +0.033 / +0.024 / +0.026 (every cell up, +0.019 to +0.040), multilooked
PSNR +0.012 / -0.002 / +0.025 and SSIM up; single-look +0.017 / +0.019 / +0.014 with multilooked PSNR -0.011 /
+0.006 / +0.003; the mean ratio within 0.9977-1.0050. A block's code costs bits whatever the rate, and the
linear-intensity bias a dB codec leaves is smooth: at 64 the codes were 1 % of an AIRSAR file at 0.25 bpp
(resources/models/MODELS.md, "Format 11")."""
BLOCK_SIDES = (BLOCK, 128, 64)
"""The block sides format 11 allows (the header says which), largest first: the encoder takes the largest that its
tiles hold whole (`block_for_tiles`), BLOCK but for tiles narrower than it."""
LEGACY_BLOCK = 64
"""The block side of formats 6 to 10."""
MEAN_CORRECTIONS = ("block", "global", "none")
MEAN_LOG2_STEPS = (1.0 / 32.0, 1.0 / 64.0, 1.0 / 128.0, 1.0 / 256.0)
"""The log2 steps a block's mean may be coded in (an int16 code, engine.codec.radiometry); format 6 knew only
the first."""


def mean_log2_step(refine_step_db: float, block: int = BLOCK) -> float:
    """The log2 step of a band's block-mean codes, from its refinement step (dB). A finer step costs about one
    bit per block per halving and cuts the code's squared error by four: with the refinement layer's own price
    of a bit (2 ln 2 s**2 / 12 of squared dB error per bit, a uniform quantizer of step s), the sum of both is
    least where the code's step in dB is s / sqrt(pixels per block), s / `block`. Rounded (in log2) to
    MEAN_LOG2_STEPS. Measured on the 8 real crops (band 1, rate control): a fixed 1/128 gained multilooked PSNR
    +0.33 dB at 1 bpp on the multilooked crops but lost PSNR at 0.25 bpp (single-look -0.011 dB: the bits);
    this rule kept the gain and lost nothing; twice or half its step moved the means by under 0.07 dB
    (resources/models/MODELS.md)."""
    ideal = refine_step_db / (block * 10.0 * math.log10(2.0))  # block: sqrt(pixels per block)
    halvings = round(math.log2(MEAN_LOG2_STEPS[0] / ideal)) if ideal > 0 else len(MEAN_LOG2_STEPS) - 1
    return MEAN_LOG2_STEPS[min(max(halvings, 0), len(MEAN_LOG2_STEPS) - 1)]


BRIGHT_STEP_DB = (0.05, 1.0)
"""Range of the quantizer step of bright-target residuals."""
BRIGHT_STEP_FRACTION = 8
"""Bright-target residuals are kept to 1/8 of the refinement step, within 0.05-1 dB: finer than the rest of
the raster at every quality, but not 0.05 dB everywhere (at low qualities that cost ~10 % of the file on
urban scenes). A uniform error of even 1 dB biases a target's linear intensity by only 0.2 %."""

BRIGHT_MARGIN = (0.5, 3.0)
"""Pixels up to half a refinement step (at most 3 dB) above the range are clipped to it like any error of that
size (the block gains make up their linear intensity); only those beyond are bright targets with their own
residuals. The cap: a wider margin left a few far-clipped pixels to dominate a block's gain, which the gain
field's interpolation then failed to keep (mean ratio 0.94-0.96 at quality 1, measured; 0.99-1.00 with it)."""


def tile_size(width: int, height: int) -> tuple[int, int]:
    """(tile width, tile height) the encoder uses for a width x height raster."""
    return min(max(width, 1), TILE), min(max(height, 1), TILE)


@dataclass(frozen=True)
class TileGeometry:
    """Where tile `index` sits in the raster (pixels)."""

    index: int
    row0: int
    col0: int
    rows: int
    cols: int


def bright_threshold(rng: pp.Range, refine_step: float) -> float:
    """Where bright-target residuals start (dB), to 1e-4 dB (a short number in the header); to four more digits
    than the range's order where the range is narrower than 1 (native values in small units: only format 12's
    native ranges are)."""
    fraction, cap_db = BRIGHT_MARGIN
    decimals = max(4, 4 - math.floor(math.log10(rng.span)))
    return round(rng.vmax + min(fraction * refine_step * rng.span, cap_db), decimals)


STREAMS = ("refinement", "block_means", "bright", "mask", "mask_codes", "loop_filter")
"""The streams of a chunk, in order; the header lists them, and a reader refuses a list it does not know (a
later version may add a stream, e.g. a learned model's side information, without moving the others)."""


@dataclass
class Layout:
    """Geometry and coding parameters shared by encoder and decoder (the decoder's come from the header)."""

    width: int
    height: int
    kind: str
    dtype: str
    nodata: Optional[float]
    rng: pp.Range
    quality: int
    """The user's quality (engine.codec.passes.quality)."""
    refine_step: float
    """Refinement quantizer step as a fraction of the dB range."""
    mean_correction: str
    bright_threshold: float
    tile_width: int = TILE
    tile_height: int = TILE
    band_index: int = 0
    """The band's place in the file's `bands` list (its coding order): its chunks follow those of the bands
    before it (chunk order "band, tile row, tile column")."""
    reference: Optional[int] = None
    """The place of the band it is predicted from (engine.codec.passes.interband), None when coded on its own."""
    n_streams: int = len(STREAMS)
    """Streams per chunk: STREAMS, or its first five in files written before the loop filter."""
    mean_log2_step: float = MEAN_LOG2_STEPS[0]
    """The log2 step of the block-mean codes (mean_log2_step)."""
    format_version: int = FORMAT_VERSION
    """The file's .sarz format version: what the encoder writes, or what the file says (its rules below)."""
    block: int = BLOCK
    """The side of the gain blocks (the header's gain_blocks.block_size: LEGACY_BLOCK before format 11)."""
    scaling: pp.Scaling = pp.IDENTITY
    """The band's GDAL scale and offset, applied to its raw values before coding and undone after decoding (format
    13; none before: files of format 12 and below coded the raw values)."""

    @property
    def legacy_means(self) -> bool:
        """A format 6 file's block means: their offsets interpolated between block centres (engine.codec.
        radiometry.offset_field), so that its files decode as they did."""
        return self.format_version == 6

    @property
    def caps_offsets(self) -> bool:
        """Format 12 on: no block offset lifts a pixel above the bright threshold (engine.codec.radiometry
        ._cap_band); earlier files decode as they did."""
        return self.format_version >= 12

    @property
    def syntax(self) -> Syntax:
        """How the refinement layer reads (engine.codec.entropy.refine.Syntax): formats 10 to 13's, 9's, 8's, or
        formats 6 and 7's."""
        syntaxes = {8: SYNTAX_8, 9: SYNTAX_9, 10: SYNTAX, 11: SYNTAX, 12: SYNTAX, 13: SYNTAX}
        return SYNTAX_7 if self.format_version < 8 else syntaxes[self.format_version]

    @property
    def out_dtype(self) -> str:
        return pp.output_dtype(self.kind, self.dtype)

    @property
    def tile_rows(self) -> int:
        """Rows of tiles."""
        return math.ceil(self.height / self.tile_height)

    @property
    def tile_cols(self) -> int:
        """Tiles per row of tiles."""
        return math.ceil(self.width / self.tile_width)

    @property
    def n_tiles(self) -> int:
        return self.tile_rows * self.tile_cols

    def chunk_number(self, k: int) -> int:
        """The file's chunk that holds tile k of this band."""
        return self.band_index * self.n_tiles + k

    def tile(self, k: int) -> TileGeometry:
        """Tile k (chunk order: tile row, then tile column); the last row and column may be smaller."""
        r, c = divmod(k, self.tile_cols)
        row0, col0 = r * self.tile_height, c * self.tile_width
        return TileGeometry(
            k, row0, col0, min(self.tile_height, self.height - row0), min(self.tile_width, self.width - col0)
        )

    def tiles_covering(self, row0: int, col0: int, rows: int, cols: int) -> list[int]:
        """The tiles a window of the raster touches, in chunk order."""
        r = range(row0 // self.tile_height, (row0 + rows - 1) // self.tile_height + 1)
        c = range(col0 // self.tile_width, (col0 + cols - 1) // self.tile_width + 1)
        return [i * self.tile_cols + j for i in r for j in c]

    @property
    def refine_step_db(self) -> float:
        return self.refine_step * self.rng.span

    @property
    def bright_step_db(self) -> float:
        lo, hi = (limit * self._native_scale for limit in BRIGHT_STEP_DB)
        return float(min(max(self.refine_step_db / BRIGHT_STEP_FRACTION, lo), hi))

    @property
    def _native_scale(self) -> float:
        """How the bright step's limits scale: with a native range narrower than 1 (values in small units), from
        format 12, whose native ranges may be that narrow (survey._native_min_span); 1 otherwise, as before."""
        native = self.kind == "native" and self.format_version >= 12
        return min(1.0, self.rng.span) if native else 1.0

    @property
    def flat_db(self) -> float:
        """The base the refinement layer codes over: mid-range, computed from the header's numbers, so both sides
        add to the same."""
        return float(np.float32(0.5 * (self.rng.vmin + self.rng.vmax)))


def tile_blocks(rows: int, cols: int, block: int) -> tuple[int, int]:
    """Gain blocks (rows, cols) of a tile of rows x cols pixels."""
    return math.ceil(rows / block), math.ceil(cols / block)


def tiles_hold(block: int, tile_width: int, tile_height: int, width: int, height: int) -> bool:
    """Do the tiles hold whole blocks of this side (the blocks' grid is the raster's), a tile as wide or tall as
    the raster excepted?"""
    return all(tile % block == 0 or tile == size for tile, size in ((tile_width, width), (tile_height, height)))


def block_for_tiles(tile_width: int, tile_height: int, width: int, height: int) -> int:
    """The gain blocks' side the encoder writes: the largest of BLOCK_SIDES the tiles hold whole (1024 x 512k tiles
    hold BLOCK; smaller tiles, as tests force, a smaller side)."""
    return next((s for s in BLOCK_SIDES if tiles_hold(s, tile_width, tile_height, width, height)), LEGACY_BLOCK)
