"""The refinement layer: what a tile's base (a flat image; optionally with an already decoded band as a
reference) misses, at the quality's quantizer step.

Both the target (the original in dB) and the base go through the CDF 9/7 wavelet. Each subband of the target
is predicted by the same subband of the base times a weight the encoder picks (an eighth-step code per
subband) and, for a band predicted from another, by the reference band's same subband times a signed weight
(inter-band prediction), and the prediction error is quantized with
a dead-zone scalar quantizer whose step is the quality's step over the subband's synthesis norm, then (encoder
only) values whose bits are worth more than their error, weighted where SSIM is sensitive (ssim_weights), are
lowered. The integers are entropy-coded with constriction's ANS coder under quantized-Laplace tables chosen
per context: subbands go coarse to fine, each in two checkerboard phases, and a coefficient's context is the
activity (weighted magnitudes) of its already-decoded parent's 3x3 neighbourhood, its siblings and, in the
second phase, its four neighbours, cut into buckets at the edges of the file version's `Contexts`. The encoder
picks each group's table from a fixed bank by the exact code length of its symbols plus that of its index, and
sends the index in the ANS stream ahead of the group, as the difference from a prediction (the scale of the group
below it in the same subband and phase, else of the parent's group), under a fixed discrete Laplace (format 7's
cost ~4 bits a group, where a deflated table of every context had taken ~7; format 8's is narrower).

Format 9 adds a predict step (transform.interscale): coarse to fine over the two finest levels, once the coarser
subbands are settled, a level's LH and HL may each be predicted from the image those decode to, by a filter the
encoder fits on the tile and keeps where the bits it saves outweigh its own (INTERSCALE_KEEP); what is left of the
subband is quantized and lowered as any other (the finer levels again after it), and the decoder adds the same
prediction, level by level, before inverting.

Format 10 codes signs (sign_contexts): in a detail subband whose second phase has a sign law (fitted by the encoder
on the tile, kept where it saves more than its two bytes), that phase's magnitudes go under the tables folded and
their signs follow, each under a probability from its four first-phase neighbours' signs; everywhere else a sign
costs a bit inside the two-sided tables, as before. It also predicts (phase_prediction): a detail subband's second
phase may take an offset in steps from its four first-phase neighbours' decoded integers, by a law the encoder fits
per subband (after its level's inter-scale prediction), quantizing what is left; the decoder adds the offsets to the
symbols before dequantizing.

Every probability the decoder uses comes from integers (decoded symbols -> context -> a table index sent
in the stream), so decoding is bit-exact on any machine even though the predictions it adds to are float.
The stream runs coarse to fine, so `decode_level` stops after the subbands of a reduced resolution (an overview)
without reading the fine ones; a flat base's subbands are constants (FlatBase), so neither side transforms it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional, Union

import numpy as np

from ...errors import ContainerError
from ..transform import interscale, wavelet
from . import phase_prediction, sign_contexts, ssim_weights
from .codes import inflate, split_pairs, zigzag_decode, zigzag_encode
from .contexts import CONTEXTS, CONTEXTS_7, Contexts, Phase, ScalePrediction, phase_cells, traverse
from .rd_lowering import RDO_LAMBDA, RDO_PASSES, error_weights, lower_second_phases, rdo_lower
from .tables import ALPHABET, N_SCALES, categorical, in_tables, index_delta_model, quantize, table_bits, table_indices

LEVELS = 8
"""Wavelet levels at most (fewer where a side would drop below 2 samples: 8 on 512-row strips). More levels code
the coarse structure under parent contexts instead of as one flat low band: 8 instead of 5 measured +0.02 to
+0.05 dB at 0.25-1 bpp on the 900x1024 crops, within +-0.015 dB on the 256-512 pixel crops and the simulated
scenes."""

ALPHA_DENOMINATOR = 8
ALPHA_MAX_CODE = 12
"""Prediction weights 0, 1/8, ..., 1.5 of the base's subband."""
BETA_DENOMINATOR = 32
BETA_MAX_CODE = 127
"""Inter-band prediction weights -127/32 .. 127/32 (a signed byte per subband) of the reference band's subband."""
BETA_MIN_GAIN = 0.01
"""A subband is predicted from the reference band only where that removes at least 1 % of its residual energy;
elsewhere its weight is 0 (the reference's decoded subband is mostly its own quantization noise there)."""

_HEAD = struct.Struct("<BBI")


@dataclass(frozen=True)
class Syntax:
    """What a format version's refinement layer holds and how it is read: its contexts, whether each tile's side
    information carries inter-scale predictors (transform.interscale), and whether it carries sign laws
    (sign_contexts) after them."""

    contexts: Contexts
    interscale: bool
    signs: bool


SYNTAX = Syntax(CONTEXTS, interscale=True, signs=True)
"""Format 10's, what the encoder writes."""
SYNTAX_9 = Syntax(CONTEXTS, interscale=True, signs=False)
SYNTAX_8 = Syntax(CONTEXTS, interscale=False, signs=False)
SYNTAX_7 = Syntax(CONTEXTS_7, interscale=False, signs=False)
"""Formats 6 and 7's."""
INTERSCALE_LEVELS = 2
"""The detail levels the encoder tries to predict, from the finest (the format allows interscale.LEVELS). The
second measured, against the finest alone (8 real crops coded to 0.25 / 0.5 / 1 bpp by rate control): AIRSAR
T11 and T33 +0.005 to +0.014 dB, T22 -0.004 to +0.006 (each keeps some level-2 predictors), the others unchanged;
an ideally 4x oversampled scene 10-22 % fewer bytes, where the finest level alone had saved 0-0.1 %."""
INTERSCALE_PRICED = 65536
"""Values of a subband the keep rule prices a predictor on (rows spread evenly): a 1024x1024 tile's finest subbands
on one row in four, the level above whole. Pricing every value cost a 4-look 1024x1024 tile's refinement layer 40 %
more encoding time where no predictor was kept (now 30 %, best of 6: 133 against 103 ms; single-look 118 against
113); pricing the level above on one row in four too moved T22 by -0.010 / +0.016 / -0.021 dB at 0.25 / 0.5 / 1 bpp
against format 8, where the whole subband gives +0.006 / -0.000 / -0.004."""
PHASE_KEEP = 1.5
"""A subband keeps its phase law where the bits it saves (its second phase quantized with and without the offsets,
under their best single table), less this many times the law's own (as INTERSCALE_KEEP), are worth more than the
error they add (`_phase_law_pays`). Measured by rate control on the 8 real crops against pricing the bits alone:
multilooked crops +0.004 / +0.004 / +0.003 dB, multilooked PSNR +0.010 / +0.011 / +0.014; the error weighed half
or twice as much moved them under 0.01 dB."""
INTERSCALE_KEEP = 1.5
"""A subband keeps its inter-scale predictor where the bits it saves (the subband's values, quantized with and
without it, under their best single table) are at least this many times the predictor's own (before deflate: its
contexts would code both for less). Measured by rate control on GEFOLKI and Sen1Floods11, PSNR against format 8's
files: 1 kept GEFOLKI's at 0.25 bpp and lost 0.043 dB there (the loop filter already restores much of what the
prediction adds to coefficients quantized to 0), Sen1Floods11 +0.048 at 0.5 bpp; 1.5 -0.015 (none kept: rate
control lands elsewhere) and +0.030; 2 -0.015 and -0.005; 3 and 5 no better. At 1 bpp all agree: +0.285 / +0.129."""


def levels_for(shape: tuple[int, int]) -> int:
    return wavelet.max_levels(shape, LEVELS)


@dataclass(frozen=True)
class FlatBase:
    """A base of one value over a shape (the codec's base): every subband of a constant image is a constant (each
    sample goes through the same arithmetic, edges mirrored), so its transform is that of a small array."""

    value: float
    shape: tuple[int, int]


Base = Union[np.ndarray, FlatBase]


@dataclass
class _Bands:
    """A wavelet decomposition as a flat list in coding order (LL, then LH/HL/HH coarse to fine)."""

    levels: int
    bands: list[np.ndarray]

    @classmethod
    def of(cls, x: np.ndarray, levels: int) -> _Bands:
        ll, details = wavelet.forward(x.astype(np.float64), levels)
        return cls(levels, [ll] + [b for trio in details for b in trio])

    @classmethod
    def of_base(cls, base: Base, levels: int) -> _Bands:
        """The base's decomposition; a FlatBase's as read-only constant views, equal to the full transform's."""
        if not isinstance(base, FlatBase):
            return cls.of(base, levels)
        shapes = wavelet.band_shapes(base.shape, levels)
        return cls(levels, [np.broadcast_to(v, shape) for v, shape in zip(_flat_bands(base.value, levels), shapes)])

    def image(self, levels: Optional[int] = None) -> np.ndarray:
        """The image, or with `levels` detail levels only (from the coarsest): the approximation that many levels
        finer than LL."""
        b = self.bands
        n = self.levels if levels is None else levels
        return wavelet.inverse(b[0], [tuple(b[1 + 3 * i : 4 + 3 * i]) for i in range(n)])

    def steps(self, step: float) -> list[float]:
        ll_norm, per_level = wavelet.synthesis_norms(self.levels)
        return [step / ll_norm] + [step / n for trio in per_level for n in trio]


@lru_cache(maxsize=64)
def _flat_bands(value: float, levels: int) -> tuple[np.float64, ...]:
    """The constant of each subband of a flat image of `value` (from a small one: every sample goes through
    the same arithmetic), cached: every tile of a file has the same base."""
    n = 2 ** (levels + 1)
    return tuple(b[0, 0] for b in _Bands.of(np.full((n, n), value, dtype=np.float32), levels).bands)


def _alpha_code(target: np.ndarray, base: np.ndarray) -> int:
    energy = float(np.sum(base * base))
    if energy <= 0.0:
        return 0
    alpha = float(np.sum(target * base)) / energy
    return int(np.clip(np.rint(alpha * ALPHA_DENOMINATOR), 0, ALPHA_MAX_CODE))


def _beta_code(residual: np.ndarray, reference: np.ndarray) -> int:
    """The least-squares weight of the reference's subband against what the base left, in 1/32 steps; 0 where
    it removes under BETA_MIN_GAIN of the residual's energy."""
    energy = float(np.sum(reference * reference))
    total = float(np.sum(residual * residual))
    if energy <= 0.0 or total <= 0.0:
        return 0
    cross = float(np.sum(residual * reference))
    if cross * cross / energy < BETA_MIN_GAIN * total:
        return 0
    return int(np.clip(np.rint(cross / energy * BETA_DENOMINATOR), -BETA_MAX_CODE, BETA_MAX_CODE))


def _predictions(base: _Bands, alphas: list[int], reference: Optional[_Bands], betas: list[int]) -> list[np.ndarray]:
    """Each subband's prediction: the base's times its weight, plus the reference band's times its own."""
    out = [b * (a / ALPHA_DENOMINATOR) for b, a in zip(base.bands, alphas)]
    if reference is not None:
        out = [p + r * (c / BETA_DENOMINATOR) if c else p for p, r, c in zip(out, reference.bands, betas)]
    return out


def _rebuild(
    levels: int,
    predictions: list[np.ndarray],
    symbols: list[np.ndarray],
    steps: list[float],
    detail_levels: Optional[int] = None,
) -> np.ndarray:
    """Prediction plus dequantized error, back in the image domain: the one formula both sides use
    (`detail_levels`: only the coarsest detail levels, as many as `symbols` holds)."""
    out = [p + q * st for p, q, st in zip(predictions, symbols, steps)]
    return _Bands(levels, out).image(detail_levels)


Predictors = list[Optional[interscale.Predictor]]
"""Each (level, orientation)'s inter-scale predictor at index interscale.slot(level, orientation), None where
that subband is not predicted."""


def _level_start(levels: int, level: int) -> int:
    """The coding-order index of a detail level's first subband (its LH; level 1 is the finest): also how many
    subbands rebuild the approximation at that level's resolution (level 0: the whole image's)."""
    return 1 + 3 * (levels - level)


def _predicted_levels(levels: int, predictors: Predictors, finest: int) -> list[int]:
    """The levels from the coarsest down to `finest` that have a predictor, coarse to fine (the order both sides add
    the predictions in: a level's approximation holds the coarser levels' predictions)."""
    top = min(levels, interscale.LEVELS)
    return [j for j in range(top, finest - 1, -1) if any(predictors[interscale.slot(j, o)] for o in interscale.BANDS)]


def _add_interscale(
    levels: int,
    predictions: list[np.ndarray],
    symbols: list[np.ndarray],
    steps: list[float],
    predictors: Predictors,
    finest: int = 1,
) -> None:
    """Adds the inter-scale predictions of the levels down to `finest` to `predictions` (decoder): each level's from
    the approximation the coarser subbands decode to, those coarser levels' own predictions included."""
    for level in _predicted_levels(levels, predictors, finest):
        start = _level_start(levels, level)
        approx = _rebuild(levels, predictions[:start], symbols[:start], steps[:start], levels - level)
        for o in interscale.BANDS:
            predictor = predictors[interscale.slot(level, o)]
            if predictor is not None:
                predictions[start + o] = predictions[start + o] + predictor.apply(approx, symbols[start + o].shape)


def _fit_interscale(
    level: int,
    approx: np.ndarray,
    predictions: list[np.ndarray],
    residuals: list[np.ndarray],
    steps: list[float],
    start: int,
    predictors: Predictors,
) -> bool:
    """A level's LH and HL predictors where they pay (INTERSCALE_KEEP: the bits of their quantized values with and
    without one, on about INTERSCALE_PRICED of them, times the sampling), each kept one's prediction added to the
    subband's and taken from its residual (encoder); whether any was kept."""
    kept = False
    for o in interscale.BANDS:
        k = start + o
        predictor = interscale.fit(approx, residuals[k])
        if predictor is None:
            continue
        rows = max(1, residuals[k].size // INTERSCALE_PRICED)
        sample = residuals[k][::rows]
        left = sample - predictor.apply(approx, residuals[k].shape, rows)
        saved = rows * (table_bits(quantize(sample, steps[k])) - table_bits(quantize(left, steps[k])))
        if saved >= INTERSCALE_KEEP * interscale.PREDICTOR_BITS:
            predicted = predictor.apply(approx, residuals[k].shape)
            residuals[k], predictions[k] = residuals[k] - predicted, predictions[k] + predicted
            predictors[interscale.slot(level, o)], kept = predictor, True
    return kept


@dataclass
class _Settled:
    """What the encoder's level-by-level predictions decided: the inter-scale predictors, the phase laws, each
    subband's second-phase offsets in steps (at its second phase's cells, in their order; None: none), and the
    approximation above the finest level where the inter-scale pass made it (the tile's final image is made from
    it)."""

    predictors: Predictors
    phase_laws: phase_prediction.Laws
    offsets: list[Optional[np.ndarray]]
    approx: Optional[np.ndarray] = None


def _units(symbols: list[np.ndarray], offsets: list[Optional[np.ndarray]]) -> list[np.ndarray]:
    """What each subband's values are in steps from its prediction: its symbols, plus its second phase's offsets
    where it has a phase law (exact in float64: integers plus multiples of 2**-SHIFT)."""
    return [q if u is None else _offset(q, u) for q, u in zip(symbols, offsets)]


def _offset(q: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Symbols `q` in float64 with the offsets `u` added at their second phase's cells (one copy of the subband)."""
    out = q.astype(np.float64)
    out.reshape(-1)[phase_cells(q.shape)[1]] += u
    return out


def _settle_levels(
    levels: int,
    predictions: list[np.ndarray],
    residuals: list[np.ndarray],
    symbols: list[np.ndarray],
    steps: list[float],
    band_weights: list[Any],
    predict_scales: bool,
    predict_phases: bool,
    neighbour_bits: bool = True,
) -> _Settled:
    """The encoder's predictions, coarse to fine over the detail levels, each level settled before anything finer is
    predicted from it: on the levels it tries (INTERSCALE_LEVELS), inter-scale prediction fitted on the
    approximation the coarser subbands decode to (where a level keeps a predictor its subbands and the finer ones
    are quantized and lowered again); then each subband's phase law (its second phase re-quantized after the
    offsets and lowered again, the first phase as it was)."""
    settled = _Settled([None] * interscale.SLOTS, [None] * (len(symbols) - 1), [None] * len(symbols))
    for level in range(levels, 0, -1):
        start = _level_start(levels, level)
        if predict_scales and level <= INTERSCALE_LEVELS:
            units = _units(symbols[:start], settled.offsets[:start])
            settled.approx = _rebuild(levels, predictions[:start], units, steps[:start], levels - level)
            if _fit_interscale(level, settled.approx, predictions, residuals, steps, start, settled.predictors):
                symbols[start:] = [quantize(r, st) for r, st in zip(residuals[start:], steps[start:])]
                for _ in range(RDO_PASSES):
                    rdo_lower(symbols, residuals, steps, band_weights, start, neighbour_bits)
        if predict_phases:
            _predict_phases(range(start, start + 3), residuals, symbols, steps, band_weights, settled)
    return settled


def _predict_phases(
    subbands: range,
    residuals: list[np.ndarray],
    symbols: list[np.ndarray],
    steps: list[float],
    band_weights: list[Any],
    settled: _Settled,
) -> None:
    """Each of a level's subbands' phase law where it pays, its offsets taken from the second phase's residuals, that
    phase quantized again and lowered (encoder; the first phase, which the offsets come from, stays as it is)."""
    kept: set[int] = set()
    for k in subbands:
        second = phase_cells(symbols[k].shape)[1]
        residual = residuals[k].reshape(-1)[second] / steps[k]
        sums = phase_prediction.second_phase_sums(symbols[k], second)
        law = phase_prediction.fit(residual, *sums)
        u = None if law is None else law.offsets(*sums)
        if u is None or not _phase_law_pays(residual, u):
            continue
        residuals[k].reshape(-1)[second] -= u * steps[k]
        symbols[k].reshape(-1)[second] = quantize(residuals[k].reshape(-1)[second], steps[k])
        settled.offsets[k], settled.phase_laws[k - 1] = u, law
        kept.add(k)
    if kept:
        lower_second_phases(symbols, residuals, steps, band_weights, kept)


def _phase_law_pays(residual: np.ndarray, u: np.ndarray) -> bool:
    """Whether a second phase (`residual` in steps) is cheaper coded after the offsets `u`: the bits it saves, under
    the best single table and less PHASE_KEEP times the law's own, at the lowering's price (RDO_LAMBDA squared steps
    a bit), against the squared error the quantizer's rounding adds."""
    before, after = quantize(residual, 1.0), quantize(residual - u, 1.0)
    saved = table_bits(before) - table_bits(after) - PHASE_KEEP * phase_prediction.LAW_BITS
    added = float(np.sum((residual - u - after) ** 2) - np.sum((residual - before) ** 2))
    return RDO_LAMBDA * saved > added


def _side(
    alphas: list[int],
    betas: Optional[list[int]],
    predictors: Predictors,
    laws: sign_contexts.Laws,
    phase_laws: phase_prediction.Laws,
) -> bytes:
    """The per-subband weights (a byte each for the base, a signed byte each for the reference band), then the
    inter-scale predictors, the sign laws and the phase laws."""
    out = bytes(alphas) + (np.array(betas, dtype=np.int8).tobytes() if betas is not None else b"")
    return out + interscale.encode(predictors) + sign_contexts.encode(laws) + phase_prediction.encode(phase_laws)


def _law_of(laws: sign_contexts.Laws, ph: Phase) -> Optional[sign_contexts.SignLaw]:
    """A phase's sign law: only a detail subband's second phase has decoded neighbours to take one from."""
    return laws[ph.k - 1] if ph.k and ph.phase else None


def _neighbour_sums_at(sub: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The horizontal and vertical sums of the first-phase neighbours' signs of the cells at flat positions `at` of
    subband values `sub`; escaped neighbours count 0 (the decoder learns their signs after the walk)."""
    return phase_prediction.second_phase_sums(np.where(np.abs(sub) <= ALPHABET, np.sign(sub), 0), at, np.int8)


def _fit_signs(symbols: list[np.ndarray]) -> sign_contexts.Laws:
    """Each detail subband's sign law, where one pays (encoder): fitted on its second phase's coded signs."""
    laws: sign_contexts.Laws = []
    for sub in symbols[1:]:
        cells = phase_cells(sub.shape)[1]
        values = sub.reshape(-1)[cells]
        coded = in_tables(values)
        laws.append(sign_contexts.fit(*_neighbour_sums_at(sub, cells[coded]), values[coded] > 0))
    return laws


def _sign_groups(
    sub: np.ndarray, at: np.ndarray, law: sign_contexts.SignLaw
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The coding order of the signs at flat positions `at` of subband values `sub` (their first phase known) and
    their groups (sign_contexts.groups): the same on both sides."""
    return sign_contexts.groups(law.contexts(*_neighbour_sums_at(sub, at)))


# --------------------------------------------------------------------------- public API


def predicted_subbands(payload: bytes, reference: bool) -> int:
    """How many subbands a format 9 or 10 tile predicts from the level above them (its statistics)."""
    _, n_bands, side_len = _HEAD.unpack_from(payload)
    side = _inflate_side(payload[_HEAD.size : _HEAD.size + side_len], n_bands)
    return sum(p is not None for p in interscale.decode(interscale.split(side[n_bands * (2 if reference else 1) :])[0]))


def encode(
    target: np.ndarray,
    base: Base,
    step: float,
    ssim: Optional[ssim_weights.SsimScale] = None,
    reference: Optional[np.ndarray] = None,
    predict_scales: bool = True,
    model_signs: bool = False,
    predict_phases: bool = True,
    neighbour_bits: bool = True,
) -> tuple[bytes, np.ndarray]:
    """(payload, refined image): `target` coded against the decoder's `base` at quantizer `step` (units of
    the arrays). With `ssim` (the raster's scale, from pass 1) its rate-distortion decisions weigh each
    pixel's error where SSIM is sensitive (ssim_weights), else plain squared error. With `reference` (an
    already decoded band, in the target's units, that the decoder has too) each subband is also predicted from
    the reference's same subband, with a least-squares weight per subband (inter-band prediction: JPEG 2000
    Part 2's multi-component transforms decorrelate bands linearly too). With `predict_scales` the two finest
    levels' LH and HL may be predicted from the approximation above them where that pays (transform.interscale);
    with `model_signs` each detail subband's second-phase signs may be coded under their neighbours' where that
    pays (sign_contexts: off by default, since phase prediction takes what they found). With `neighbour_bits` the
    rate-distortion lowering counts the bits a value costs its neighbours' contexts (`rdo_lower`). The refined image
    is what `decode(payload, base, step, reference)` returns: the decoder needs no SSIM weights."""
    payload, (refined,) = encode_levels(
        target, base, step, (0,), ssim, reference, predict_scales, model_signs, predict_phases, neighbour_bits
    )
    return payload, refined


def encode_levels(
    target: np.ndarray,
    base: Base,
    step: float,
    wanted: tuple[int, ...],
    ssim: Optional[ssim_weights.SsimScale] = None,
    reference: Optional[np.ndarray] = None,
    predict_scales: bool = True,
    model_signs: bool = False,
    predict_phases: bool = True,
    neighbour_bits: bool = True,
) -> tuple[bytes, list[np.ndarray]]:
    """`encode`, with the refined image at each of `wanted` levels (0: the refined image in the target's dtype;
    k: what `decode_level(payload, base, step, k, reference)` gives, to the bit) made from the encoder's own
    symbols instead of decoding the payload again."""
    levels = levels_for(target.shape)
    t, b = _Bands.of(target, levels), _Bands.of_base(base, levels)
    alphas = [_alpha_code(tb, bb) for tb, bb in zip(t.bands, b.bands)]
    steps = b.steps(step)
    residuals = [tb - bb * (a / ALPHA_DENOMINATOR) for tb, bb, a in zip(t.bands, b.bands, alphas)]
    del t  # peak memory: a tile's bands are several times its pixels
    ref, betas = None, None
    if reference is not None:
        ref = _Bands.of(reference, levels)
        betas = [_beta_code(res, rb) for res, rb in zip(residuals, ref.bands)]
        residuals = [res - rb * (c / BETA_DENOMINATOR) if c else res for res, rb, c in zip(residuals, ref.bands, betas)]
    symbols = [quantize(r, s) for r, s in zip(residuals, steps)]
    band_weights = error_weights(target, ssim, [s.shape for s in symbols])  # after del t: peak memory
    for _ in range(RDO_PASSES):
        rdo_lower(symbols, residuals, steps, band_weights, 0, neighbour_bits)
    predictions = list(_predictions(b, alphas, ref, betas))
    settled = _settle_levels(
        levels, predictions, residuals, symbols, steps, band_weights, predict_scales, predict_phases, neighbour_bits
    )
    del residuals, band_weights
    laws = _fit_signs(symbols) if model_signs else [None] * (len(symbols) - 1)
    items: list[Union[_Group, _Signs]] = []  # what the stream holds, in walk order
    escapes: list[np.ndarray] = []

    def visit(ph: Phase) -> np.ndarray:
        values = symbols[ph.k].reshape(-1)[ph.order]
        indices = table_indices(values)
        law = _law_of(laws, ph)
        items.extend(_Group(ph.k, ctx, indices[a:b], law is not None) for ctx, a, b in ph.groups())
        if law is not None:
            coded = in_tables(values)
            order, groups = _sign_groups(symbols[ph.k], ph.order[coded], law)
            positive = (values[coded][order] > 0).astype(np.int32)
            items.extend(_Signs(z, positive[a:b]) for z, a, b in groups)
        escapes.append(_escapes(values))
        return values

    traverse([s.shape for s in symbols], visit, CONTEXTS)
    words = _encode_groups(items, len(symbols))
    side = zlib.compress(_side(alphas, betas, settled.predictors, laws, settled.phase_laws), 9)
    payload = (
        _HEAD.pack(levels, len(symbols), len(side))
        + side
        + struct.pack("<I", len(words))
        + words.tobytes()
        + zigzag_encode(np.concatenate(escapes) if escapes else np.zeros(0, np.int64))
    )
    units = _units(symbols, settled.offsets)
    return payload, _level_images(levels, predictions, units, steps, wanted, target.dtype, settled.approx)


def _level_images(
    levels: int,
    predictions: list[np.ndarray],
    symbols: list[np.ndarray],
    steps: list[float],
    wanted: tuple[int, ...],
    dtype: Any = np.float32,
    approx: Optional[np.ndarray] = None,
) -> list[np.ndarray]:
    """The refined image at each of `wanted` levels, from the coarsest subbands that far (level 0 in `dtype`, the
    approximations in float32 and in the image's units): what both sides compute, `predictions` holding the
    inter-scale predictions. `approx`: the approximation above the finest level where the encoder has it already
    (the whole image is then its last inverse level: the same pixels, without the coarser levels again)."""
    images = []
    for k in wanted:
        n = _level_start(levels, k)
        if k == 0 and approx is not None:
            fine = _level_start(levels, 1)
            trio = [p + q * st for p, q, st in zip(predictions[fine:], symbols[fine:], steps[fine:])]
            image = wavelet.inverse(approx, [(trio[0], trio[1], trio[2])])
        else:
            image = _rebuild(levels, predictions[:n], symbols[:n], steps[:n], levels - k)
        images.append(image.astype(dtype) if k == 0 else (image / wavelet.dc_gain(k)).astype(np.float32))
    return images


def decode(
    payload: bytes,
    base: Base,
    step: float,
    reference: Optional[np.ndarray] = None,
    syntax: Syntax = SYNTAX,
) -> np.ndarray:
    """The refined image (float32); ContainerError for anything that does not fit `base`'s shape or is corrupt.
    `reference`: what the encoder was given (the file says whether a band is predicted); `syntax`: that of the
    file's format version."""
    return decode_level(payload, base, step, 0, reference, syntax)


def coarse_levels(shape: tuple[int, int]) -> int:
    """The coarsest approximation `decode_level` can give for an image of `shape` (its wavelet levels)."""
    return levels_for(shape)


def decode_level(
    payload: bytes,
    base: Base,
    step: float,
    level: int,
    reference: Optional[np.ndarray] = None,
    syntax: Syntax = SYNTAX,
) -> np.ndarray:
    """The refined image at 1 / 2**level of its resolution (level <= coarse_levels: ceil(h / 2**level) x
    ceil(w / 2**level), in the image's units: a local mean), decoding only the subbands that coarse; level 0 is
    `decode`. ContainerError for anything that does not fit `base`'s shape or is corrupt."""
    return decode_levels(payload, base, step, (level,), reference, syntax)[0]


def decode_levels(
    payload: bytes,
    base: Base,
    step: float,
    levels: tuple[int, ...],
    reference: Optional[np.ndarray] = None,
    syntax: Syntax = SYNTAX,
) -> list[np.ndarray]:
    """`decode_level` at each of `levels` from one pass over the stream (down to the finest asked for); each
    image is the one `decode_level` gives at its level, to the bit."""
    import constriction  # noqa: F401  (a missing dependency is an ImportError, not a corrupt file)

    top = levels_for(base.shape)
    if not all(0 <= level <= top for level in levels):
        raise ValueError(f"levels {levels} are not all between 0 and the image's {top} wavelet levels")
    try:
        return _decode(bytes(payload), base, step, levels, reference, syntax)
    except ContainerError:
        raise
    except Exception as exc:  # constriction raises plain exceptions for garbage input
        raise ContainerError(f"corrupt refinement layer: {exc}") from exc


@dataclass(frozen=True)
class _Group:
    """One context's values of a phase (their table indices); `folded`: their magnitudes, their signs follow."""

    k: int
    ctx: int
    indices: np.ndarray
    folded: bool


@dataclass(frozen=True)
class _Signs:
    """Signs in one sign context z (1: positive), after their phase's magnitudes."""

    z: int
    positive: np.ndarray


def _magnitudes(indices: np.ndarray) -> np.ndarray:
    """Table indices folded onto the magnitudes' tables (the escape stays last)."""
    return np.where(indices == 2 * ALPHABET + 1, ALPHABET + 1, np.abs(indices - ALPHABET)).astype(np.int32)


def _encode_groups(items: list[Union[_Group, _Signs]], n_bands: int) -> np.ndarray:
    """Each group's table (as a difference from its prediction, `ScalePrediction.choose`, by the whole symbols'
    cost: folded or not, a group's best table is the same but for rounding) then its symbols, and each sign
    context's signs, in one ANS stream (format 8's contexts, CONTEXTS)."""
    import constriction

    prediction = ScalePrediction(n_bands, CONTEXTS)
    coded: list[tuple[np.ndarray, Any]] = []  # (symbols, model) in decoding order
    for item in items:
        if isinstance(item, _Signs):
            coded.append((item.positive, sign_contexts.model(item.z)))
            continue
        scale, delta = prediction.choose(item.k, item.ctx, item.indices)
        coded.append((np.array([delta], dtype=np.int32), index_delta_model(CONTEXTS.delta_scale)))
        coded.append((_magnitudes(item.indices) if item.folded else item.indices, categorical(scale, item.folded)))
    coder = constriction.stream.stack.AnsCoder()
    for symbols, model in reversed(coded):  # a stack: what is decoded first is pushed last
        coder.encode_reverse(symbols, model)
    return coder.get_compressed().astype("<u4", copy=False)


def _escapes(values: np.ndarray) -> np.ndarray:
    """Signed distance beyond the table of each escaped symbol (never 0)."""
    out = values[np.abs(values) > ALPHABET]
    return out - np.sign(out) * ALPHABET


def _decode(
    data: bytes,
    base_image: Base,
    step: float,
    wanted: tuple[int, ...],
    reference: Optional[np.ndarray],
    syntax: Syntax,
) -> list[np.ndarray]:
    import constriction

    levels = levels_for(base_image.shape)
    level = min(wanted)
    n_decoded = _level_start(levels, level)
    if len(data) < _HEAD.size:
        raise ContainerError("refinement layer is truncated")
    got_levels, n_bands, side_len = _HEAD.unpack_from(data)
    if got_levels != levels or n_bands != 1 + 3 * levels:
        raise ContainerError("refinement layer does not match the strip's size")
    side = _inflate_side(data[_HEAD.size : _HEAD.size + side_len], n_bands)
    alphas, betas, predictors, laws, phase_laws = _parse_side(side, n_bands, reference is not None, syntax)
    pos = _HEAD.size + side_len
    if len(data) < pos + 4:
        raise ContainerError("refinement layer is truncated")
    (n_words,) = struct.unpack_from("<I", data, pos)
    if len(data) < pos + 4 + 4 * n_words:
        raise ContainerError("refinement layer is truncated")
    words = np.frombuffer(data, dtype="<u4", count=n_words, offset=pos + 4).astype(np.uint32)
    coder = constriction.stream.stack.AnsCoder(words)
    base = _Bands.of_base(base_image, levels)
    symbols = [np.zeros(b.shape, dtype=np.int64) for b in base.bands[:n_decoded]]
    escaped: list[tuple[int, np.ndarray]] = []
    contexts = syntax.contexts
    prediction = ScalePrediction(n_bands, contexts)
    delta_model = index_delta_model(contexts.delta_scale)

    def visit(ph: Phase) -> np.ndarray:
        values = np.empty(ph.order.size, dtype=np.int64)
        law = _law_of(laws, ph)
        for ctx, a, b in ph.groups():
            scale = prediction.predict(ph.k, ctx) + int(coder.decode(delta_model, 1)[0]) - (N_SCALES - 1)
            if not 0 <= scale < N_SCALES:
                raise ContainerError("refinement layer table index out of range")
            prediction.update(ph.k, ctx, scale)
            decoded = np.asarray(coder.decode(categorical(scale, law is not None), b - a), dtype=np.int64)
            values[a:b] = decoded if law is not None else decoded - ALPHABET
        if law is not None:
            _decode_signs(coder, symbols[ph.k], ph.order, values, law)
        escaped.append((ph.k, ph.order[values > ALPHABET]))
        symbols[ph.k].reshape(-1)[ph.order] = values
        return values

    traverse([b.shape for b in base.bands], visit, contexts, n_decoded)
    if level == 0 and not coder.is_empty():
        raise ContainerError("refinement layer has trailing or corrupt data")
    _restore_escapes(symbols, escaped, data[pos + 4 + 4 * n_words :], level == 0)
    symbols = _units(symbols, _phase_offsets(symbols, phase_laws))
    ref = None if reference is None else _Bands.of(reference, levels)
    coarse = _Bands(levels, base.bands[:n_decoded])  # an overview computes no fine subband's prediction
    predictions, steps = list(_predictions(coarse, alphas, ref, betas)), base.steps(step)
    if predictors is not None:
        if any(
            predictors[interscale.slot(j, o)]
            for j in range(levels + 1, interscale.LEVELS + 1)
            for o in interscale.BANDS
        ):
            raise ContainerError("refinement layer side information: a predictor for a level the tile does not have")
        _add_interscale(levels, predictions, symbols, steps, predictors, level + 1)
    return _level_images(levels, predictions, symbols, steps, wanted)


def _inflate_side(data: bytes, n_bands: int) -> bytes:
    """A tile's side information, inflated to no more than it can hold: two weights per subband, the inter-scale
    predictors' flags and slots, and two sets of per-subband pairs (signs, phases) with their flags."""
    pairs = (n_bands + 7) // 8 + 2 * n_bands
    limit = 2 * n_bands + 1 + interscale.SLOTS * interscale.PREDICTOR_BYTES + 2 * pairs
    return inflate(data, "refinement layer side information", limit)


def _parse_side(
    side: bytes, n_bands: int, reference: bool, syntax: Syntax
) -> tuple[list[int], list[int], Optional[Predictors], sign_contexts.Laws, phase_prediction.Laws]:
    """A tile's side information: the base's and the reference's weights per subband, its inter-scale predictors
    (None before format 9), its sign laws and its phase laws (all None before format 10)."""
    weights = n_bands * (2 if reference else 1)
    if len(side) < weights or (len(side) > weights and not syntax.interscale):
        raise ContainerError("refinement layer side information has the wrong size")
    alphas = list(side[:n_bands])
    betas = np.frombuffer(side[n_bands:weights], dtype=np.int8).astype(int).tolist()
    if max(alphas) > ALPHA_MAX_CODE or any(abs(c) > BETA_MAX_CODE for c in betas):
        raise ContainerError("refinement layer side information is out of range")
    predictors, laws, phase_laws = None, [None] * (n_bands - 1), [None] * (n_bands - 1)
    if syntax.signs:
        own, rest = interscale.split(side[weights:])
        signs, phases = split_pairs(rest, n_bands - 1)
        predictors, laws = interscale.decode(own), sign_contexts.decode(signs, n_bands - 1)
        phase_laws = phase_prediction.decode(phases, n_bands - 1)
    elif syntax.interscale:
        predictors = interscale.decode(side[weights:])
    return alphas, betas, predictors, laws, phase_laws


def _phase_offsets(symbols: list[np.ndarray], phase_laws: phase_prediction.Laws) -> list[Optional[np.ndarray]]:
    """Each decoded subband's second-phase offsets (decoder; once the escapes are back: they count at their
    value), None where it has no phase law."""
    offsets: list[Optional[np.ndarray]] = [None] * len(symbols)
    for k in range(1, len(symbols)):
        law = phase_laws[k - 1]
        if law is not None:
            second = phase_cells(symbols[k].shape)[1]
            offsets[k] = law.offsets(*phase_prediction.second_phase_sums(symbols[k], second))
    return offsets


def _decode_signs(
    coder: Any, sub: np.ndarray, order: np.ndarray, values: np.ndarray, law: sign_contexts.SignLaw
) -> None:
    """Signs the non-zero magnitudes `values` (a second phase's, at `order` in subband `sub`, whose first phase is
    decoded) from the stream, in place; escapes keep theirs for later."""
    coded = in_tables(values)
    sign_order, groups = _sign_groups(sub, order[coded], law)
    negative = np.zeros(coded.size, dtype=bool)
    for z, a, b in groups:
        negative[sign_order[a:b]] = np.asarray(coder.decode(sign_contexts.model(z), b - a)) == 0
    values[coded[negative]] *= -1


def _restore_escapes(
    symbols: list[np.ndarray], escaped: list[tuple[int, np.ndarray]], side: bytes, whole: bool
) -> None:
    """Escaped symbols, in walk order, from the side stream of signed distances beyond the table (`whole`: the
    walk covered every subband, so the stream must be used up; else only its first values are read)."""
    count = sum(p.size for _, p in escaped)
    if not whole:
        ends = np.flatnonzero((np.frombuffer(side, dtype=np.uint8) & 0x80) == 0)
        side = side[: int(ends[count - 1]) + 1] if count else b""  # too few values: IndexError, a ContainerError
    dist = zigzag_decode(side, count, "refinement layer")
    if np.any(dist == 0):
        raise ContainerError("corrupt escape value in the refinement layer")
    values = dist + np.sign(dist) * ALPHABET
    if np.any(np.abs(values) > np.iinfo(np.int32).max):  # the encoder's symbols are int32
        raise ContainerError("escape value out of range in the refinement layer")
    i = 0
    for k, positions in escaped:
        symbols[k].reshape(-1)[positions] = values[i : i + positions.size]
        i += positions.size
