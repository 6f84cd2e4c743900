"""Benchmark outputs: the full JSON (strict: non-finite numbers become null) and a short markdown summary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np

from ..engine import json_text
from . import ablation, multiband

MB = 1024 * 1024


def write_json(results: dict, path: Path) -> Path:
    """The full results, strict JSON (non-finite figures null)."""
    return json_text.write_json(results, path, json_text.null)


FLAT = 1000.0
"""An ENL ratio above this means the codec flattened the homogeneous windows (variance ~0): shown as such."""


def number(value: Optional[float], digits: int = 2) -> str:
    """A figure for the reports: "–" where it is missing or not finite."""
    if value is None or not math.isfinite(value):
        return "–"
    return "> 1000 (flat)" if value > FLAT else f"{value:.{digits}f}"


def _pair(a: dict, b: Optional[dict], key: str, digits: int) -> str:
    other = number(b["metrics"][key], digits) if b is not None else "–"
    return f"{number(a['metrics'][key], digits)} / {other}"


def matched_j2k(entries: list[dict], bpp: float) -> Optional[dict]:
    """The JPEG 2000 entry closest in (log) bpp to `bpp`."""
    j2k = [e for e in entries if e["family"] == "jpeg2000"]
    return min(j2k, key=lambda e: abs(math.log(e["bpp"] / bpp)), default=None) if bpp > 0 else None


def markdown(results: dict) -> str:
    """Short summary: ours vs J2K at matched bpp per file, speed, memory; figures linked by file name."""
    lines = _heading("Benchmark", results)[:-1] + [
        "Metrics (engine.metrics): PSNR in dB over the original's 0.5-99.5 percentile dB range, SSIM on that "
        "range scaled to [0, 1], mean ratio in linear intensity (1 = unbiased), ENL ratio > 1 = smoother "
        "than the original. bpp counts the whole file. The same range is used for every codec.",
        "",
    ]
    lines += _rd_table(results)
    lines += _target_table(results)
    lines += products_table(results.get("products"))
    lines += ablation.markdown(results.get("ablation"))
    for key, label in (("rd", "Rate-distortion curves"), ("crop", "Equal-rate crop")):
        if results["figures"].get(key):
            lines += [f"![{label}]({results['figures'][key]})", ""]
    if results.get("multiband"):
        lines += multiband.markdown(results["multiband"])
    return "\n".join(lines + _performance_tables(results)).rstrip() + "\n"


def _performance_tables(results: dict) -> list[str]:
    """Speed, random access, memory and the run's notes."""
    lines = _speed_table(results.get("speed"))
    lines += _window_table(results.get("window"))
    lines += _memory_table(results.get("memory"))
    lines += _tall_table(results.get("memory_tall"))
    return lines + [f"- {note}" for note in results.get("notes", [])]


def performance_markdown(results: dict) -> str:
    """`--performance`: the speed, random-access and memory tables alone."""
    return "\n".join(_heading("Performance", results) + _performance_tables(results)).rstrip() + "\n"


def _heading(title: str, results: dict) -> list[str]:
    """The report's title, its machine and its duration, then a blank line."""
    m = results["machine"]
    return [
        f"# {title} {results['date']}" + (" (quick)" if results["quick"] else ""),
        "",
        f"{m['cpu_count']} CPU cores ({m.get('cpu_model') or 'unknown CPU'}), numpy {m['numpy']}; "
        f"{results['duration_s'] / 60:.1f} min in total.",
        "",
    ]


def _rd_table(results: dict) -> list[str]:
    lines = [
        "## Rate-distortion: ours vs JPEG 2000 at matched bpp",
        "",
        "| file | codec | bpp (ours / J2K) | PSNR dB | SSIM | mean ratio | ENL ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for ds in results["datasets"]:
        for e in ds["entries"]:
            if e["family"] == "jpeg2000":
                continue
            j = matched_j2k(ds["entries"], e["bpp"])
            codec = f"{e['codec']} q{e['quality']}" if e["family"] == "ours" else e["codec"]
            lines.append(
                f"| {ds['name']} | {codec} | {e['bpp']:.3f} / {j['bpp']:.3f} | {_pair(e, j, 'psnr_db', 2)} | "
                f"{_pair(e, j, 'ssim', 3)} | {_pair(e, j, 'mean_ratio', 3)} | {_pair(e, j, 'enl_ratio', 2)} |"
                if j is not None
                else f"| {ds['name']} | {codec} | {e['bpp']:.3f} | {number(e['metrics']['psnr_db'])} | "
                f"{number(e['metrics']['ssim'], 3)} | {number(e['metrics']['mean_ratio'], 3)} | "
                f"{number(e['metrics']['enl_ratio'])} |"
            )
    return lines + ["", "Each cell: ours / JPEG 2000.", ""]


TARGET_BPPS = (0.25, 0.5, 1.0)


def interpolate(entries: list[dict], bpp: float, key: str) -> Optional[float]:
    """A metric of a rate-distortion curve at `bpp`, linear in log(bpp); None outside the measured rates."""
    pts = sorted((e["bpp"], e["metrics"][key]) for e in entries if e["metrics"].get(key) is not None)
    if len(pts) < 2 or not pts[0][0] <= bpp <= pts[-1][0]:
        return None
    return float(np.interp(math.log(bpp), [math.log(b) for b, _ in pts], [v for _, v in pts]))


def _target_table(results: dict) -> list[str]:
    """The model card's target: ours (coded to each target bpp by rate control) vs JPEG 2000 interpolated at
    the same rate, on every dataset."""
    lines = [
        "## At 0.25 / 0.5 / 1 bpp (ours coded to the target by rate control vs JPEG 2000 at the same rate, "
        "its curve interpolated in log bpp)",
        "",
        "| file | target bpp | ours bpp | PSNR dB (ours / J2K) | difference | SSIM (ours / J2K) | "
        "mean ratio (ours / J2K) | multilooked PSNR dB, 5x5 (ours / J2K) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ds in results["datasets"]:
        j2k = [e for e in ds["entries"] if e["family"] == "jpeg2000"]
        coded = {e["target_bpp"]: e for e in ds["entries"] if e["family"] == "ours_target"}
        for target in TARGET_BPPS:
            ours = coded.get(target)
            theirs = [interpolate(j2k, ours["bpp"], k) for k in ("psnr_db", "ssim", "mean_ratio")] if ours else [None]
            if None in theirs:
                lines.append(f"| {ds['name']} | {target} | not measured or out of JPEG 2000's range | | | | | |")
                continue
            po, so, mo = (ours["metrics"][k] for k in ("psnr_db", "ssim", "mean_ratio"))
            pj, sj, mj = theirs
            ml_j = interpolate(j2k, ours["bpp"], "multilook_psnr_db")
            ml = f"{number(ours['metrics'].get('multilook_psnr_db'))} / {number(ml_j)}"
            lines.append(
                f"| {ds['name']} | {target} | {ours['bpp']:.4f} | {po:.2f} / {pj:.2f} | {po - pj:+.2f} | "
                f"{so:.4f} / {sj:.4f} | {mo:.3f} / {mj:.3f} | {ml} |"
            )
    return lines + [""]


CODECS = ("ours", "JPEG 2000")


def products_table(products: Optional[dict]) -> list[str]:
    """Simulated products as they come (bench.products): ours (rate control, flat base) vs JPEG 2000 at each
    target, in the domain the product's users measure."""
    if not products:
        return []
    lines = [
        f"## Products as they come ({products['size']}x{products['size']}, zero-filled rotated footprint, no "
        "nodata; fill excluded from the metrics)",
        "",
        "| product | domain | target bpp | bpp (ours / J2K) | PSNR dB (ours / J2K) | difference | SSIM (ours / J2K) |",
        "|---|---|---|---|---|---|---|",
    ]
    for product, rows in products["rows"].items():
        domain = products["domains"][product].split(",")[0]
        for target in products["targets"]:
            ours, j2k = (next(r for r in rows if r["codec"] == c and r["target_bpp"] == target) for c in CODECS)
            lines.append(
                f"| {product} | {domain} | {target} | {ours['bpp']:.4f} / {j2k['bpp']:.4f} | "
                f"{ours['psnr_db']:.2f} / {j2k['psnr_db']:.2f} | {ours['psnr_db'] - j2k['psnr_db']:+.2f} | "
                f"{ours['ssim']:.4f} / {j2k['ssim']:.4f} |"
            )
    return lines + [""]


def _window_table(win: Optional[dict]) -> list[str]:
    """Random access (issue 18): a full-resolution window and the coarsest overview >= 1000 px, cold reads."""
    if not win:
        return []
    ours, j2k = win["ours"], win["jpeg2000"]
    h, w = win["overview_shape"]
    return [
        f"## Random access ({win['size']}x{win['size']}, quality {win['quality']}, freshly opened files)",
        "",
        "| read | ours (s) | JPEG 2000 (s) |",
        "|---|---|---|",
        f"| {win['window'][2]}x{win['window'][3]} window | {ours['window_s']:.2f} | {j2k['window_s']:.2f} |",
        f"| whole raster at 1/{2 ** win['overview_level']} ({w}x{h}) | {ours['overview_s']:.2f} "
        f"| {j2k['overview_s']:.2f} |",
        f"| file bpp | {ours['bpp']:.3f} | {j2k['bpp']:.3f} |",
        "",
    ]


def _speed_table(speed: Optional[dict]) -> list[str]:
    if not speed:
        return []
    r = speed["raster"]
    j = speed["jpeg2000"]
    lines = [
        f"## Speed ({r['height']}x{r['width']} {r['kind']}, quality {speed['quality']}, file to file)",
        "",
        "| codec | compress Mpx/s | decompress Mpx/s | vs J2K (compress / decompress) |",
        "|---|---|---|---|",
    ]
    d = speed["ours"]
    lines.append(
        f"| ours | {d['compress_mpx_s']:.2f} | {d['decompress_mpx_s']:.2f} | "
        f"{d['compress_vs_jpeg2000']:.3f} / {d['decompress_vs_jpeg2000']:.3f} |"
    )
    lines.append(f"| JPEG 2000 (OpenJPEG) | {j['compress_mpx_s']:.2f} | {j['decompress_mpx_s']:.2f} | 1 / 1 |")
    return lines + [""]


def _tall_table(tall: Optional[dict]) -> list[str]:
    """Peak RSS against the height: flat means nothing is kept per strip."""
    if not tall or "skipped" in tall:
        return []
    peaks = ", ".join(f"{h} rows {b / MB:.0f} MiB" for h, b in tall["peak_rss_bytes"].items())
    return [
        f"## Memory against the raster's height ({tall['width']} pixels wide, float32, compression)",
        "",
        f"Peak RSS: {peaks}; {tall['growth_per_strip_mb']:+.1f} MiB per {tall['strip_rows']}-row strip.",
        "",
    ]


def _memory_table(memory: Optional[dict]) -> list[str]:
    if not memory:
        return []
    if "skipped" in memory:
        return ["## Memory", "", f"Skipped: {memory['skipped']}", ""]
    size, raster = memory["size"], memory["raster_bytes"]
    lines = [
        f"## Memory ({size}x{size} float32 = {raster / MB:.0f} MiB, subprocesses)",
        "",
        "| step | seconds | peak RSS MiB | RSS before MiB | peak - before MiB | peak / raster size |",
        "|---|---|---|---|---|---|",
    ]
    for step in ("compress", "decompress"):
        s = memory[step]
        before = s["rss_before_bytes"] or 0
        lines.append(
            f"| {step} | {s['seconds']:.1f} | {s['peak_rss_bytes'] / MB:.0f} | {before / MB:.0f} | "
            f"{(s['peak_rss_bytes'] - before) / MB:.0f} | {s['peak_rss_bytes'] / raster:.2f} |"
        )
    if memory.get("size_note"):
        lines += ["", memory["size_note"]]
    return lines + [""]
