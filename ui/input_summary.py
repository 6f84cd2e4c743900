"""What the dock tells the user about the input before Run: kind (and why), data type, range, zero and nodata
shares, warnings and a refusal, all from the engine's own inspection (engine.inspect.inspect_input), the one the
Compress algorithm and the CLI run before they start."""

from __future__ import annotations

import html

from ..engine.inspect import InputSummary, inspect_input

KIND_TEXT = {
    "intensity": "linear intensity",
    "amplitude": "linear amplitude",
    "db": "dB",
    "complex": "complex SLC",
    "native": "native values",
}

__all__ = ["InputSummary", "summarize_input", "summary_html"]


def summarize_input(path: str, band: int) -> InputSummary:
    """The summary of band `band` of the raster file `path`, as compression with kind "auto" will see it."""
    return inspect_input(path, band, "auto")


def summary_html(summary: InputSummary) -> str:
    """The summary as the dock shows it (rich text): one line of facts, then the warnings."""
    kind = KIND_TEXT.get(summary.kind, summary.kind)
    value_range = "no valid value"
    if summary.vmin is not None:
        value_range = f"{summary.range_label} {summary.vmin:.4g} … {summary.vmax:.4g}"
    facts = (
        f"<b>{html.escape(kind)}</b> ({html.escape(summary.kind_reason)}), {html.escape(summary.dtype)}, "
        f"{summary.width} x {summary.height} px; {html.escape(value_range)}; "
        f"zeros {100 * summary.zero_fraction:.1f} %, nodata {100 * summary.nodata_fraction:.1f} %"
    )
    problems = summary.warnings + ([f"Refused: {summary.refusal}"] if summary.refusal else [])
    notes = "".join(f"<br><span style='color:#b42318'>⚠ {html.escape(note)}</span>" for note in problems)
    return facts + notes
