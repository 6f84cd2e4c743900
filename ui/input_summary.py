"""What the dock tells the user about the input before Run: kind, data type, range, zero and nodata shares, warnings.

ADAPTER: the engine's own summary (engine.inspect.inspect_input, written in parallel) is the intended source;
until it lands, `summarize_input` builds the same facts from a decimated read and preprocessing.detect_kind.
The integrator swaps the body of `summarize_input` for a call to inspect_input; the dock only uses the
InputSummary fields below.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from ..algorithms.preview import read_preview

SUMMARY_SIDE = 1024  # the summary reads at most this many pixels a side (nearest decimation)
KIND_TEXT = {
    "intensity": "linear intensity",
    "amplitude": "linear amplitude",
    "db": "dB",
    "complex": "complex SLC",
    "native": "native values",
}


@dataclass
class InputSummary:
    """Facts about one band, measured on a decimated read (fractions are of the sampled pixels)."""

    kind: str
    dtype: str
    width: int
    height: int
    vmin: float | None
    vmax: float | None
    zero_fraction: float
    nodata_fraction: float
    warnings: list[str] = field(default_factory=list)


def summarize_input(path: str, band: int) -> InputSummary:
    """The summary of band `band` of the raster file `path` (adapter, see the module text)."""
    import numpy as np

    from ..engine.preprocessing import detect_kind

    preview = read_preview(path, band, SUMMARY_SIDE)
    data = preview.data
    valid = ~np.isnan(data)
    values = np.abs(data[valid]) if np.iscomplexobj(data) else data[valid].real
    kind = detect_kind(preview.dtype, data, preview.description, preview.tags)
    total = max(data.size, 1)
    summary = InputSummary(
        kind=kind,
        dtype=preview.dtype,
        width=preview.width,
        height=preview.height,
        vmin=float(values.min()) if values.size else None,
        vmax=float(values.max()) if values.size else None,
        zero_fraction=float(np.count_nonzero(values == 0)) / total,
        nodata_fraction=1.0 - float(values.size) / total,
    )
    summary.warnings = _warnings(summary, values, preview)
    return summary


def _warnings(summary: InputSummary, values, preview) -> list[str]:
    """What looks wrong for a SAR band: negative linear values, an 8-bit display product, a colour image."""
    import numpy as np

    notes = []
    if not values.size:
        notes.append("No valid pixel in the sampled band: everything is nodata.")
        return notes
    if summary.kind in ("intensity", "amplitude") and float(np.mean(values < 0)) > 0.001:
        notes.append(
            f"{100 * float(np.mean(values < 0)):.1f} % of the values are negative, impossible for linear "
            f"{summary.kind}: is it a dB or a filtered product? Set the input kind."
        )
    if summary.dtype == "uint8":
        notes.append("8-bit data: a display product (stretched, maybe a photo), not calibrated backscatter.")
    if summary.dtype == "uint8" and preview.band_count in (3, 4):
        notes.append("This looks like a colour (RGB) image: only the chosen band is compressed.")
    if summary.zero_fraction > 0.05:
        notes.append(
            f"{100 * summary.zero_fraction:.0f} % of the pixels are exactly 0 (no-signal fill?): they cost bits "
            "and bias the statistics unless the raster declares them nodata."
        )
    return notes


def summary_html(summary: InputSummary) -> str:
    """The summary as the dock shows it (rich text): one line of facts, then the warnings."""
    kind = KIND_TEXT.get(summary.kind, summary.kind)
    value_range = "no valid value" if summary.vmin is None else f"{summary.vmin:.4g} … {summary.vmax:.4g}"
    facts = (
        f"<b>{html.escape(kind)}</b> (detected), {html.escape(summary.dtype)}, "
        f"{summary.width} x {summary.height} px; range {html.escape(value_range)}; "
        f"zeros {100 * summary.zero_fraction:.1f} %, nodata {100 * summary.nodata_fraction:.1f} %"
    )
    notes = "".join(f"<br><span style='color:#b42318'>⚠ {html.escape(note)}</span>" for note in summary.warnings)
    return facts + notes
