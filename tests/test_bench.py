"""Benchmark pieces: JPEG 2000 hits its rates, the JSON is strict, `--quick` runs end to end."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from sar_compressor.bench import cli_speed, jpeg2000, report
from sar_compressor.bench.datasets import shared_datasets
from sar_compressor.bench.rate_distortion import merged_targets
from sar_compressor.engine import metrics

pytestmark = pytest.mark.skipif(not jpeg2000.available(), reason="GDAL has no JP2OpenJPEG driver")


def _db_image(size: int = 384, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    smooth = -12 + 6 * np.sin(6 * xx) * np.cos(4 * yy)
    return smooth + 10 * np.log10(rng.gamma(4, 0.25, (size, size)))


def test_uint16_mapping_round_trips_within_one_step():
    db = _db_image(64)
    rng = (-30.0, 5.0)
    back = jpeg2000.uint16_to_db(jpeg2000.db_to_uint16(db, rng), rng)
    step = (rng[1] - rng[0]) / jpeg2000.LEVELS
    assert np.max(np.abs(back - np.clip(db, *rng))) <= step


@pytest.mark.parametrize("target", [0.25, 1.0])
def test_jpeg2000_hits_target_bpp(tmp_path, target):
    db = _db_image()
    rng = (float(np.percentile(db, 0.5)), float(np.percentile(db, 99.5)))
    path = tmp_path / "x.jp2"
    r = jpeg2000.compress_to_bpp(db, rng, target, path)
    assert r.hit and abs(r.bpp / target - 1) <= 0.05
    assert r.bpp == pytest.approx(8 * path.stat().st_size / db.size)  # whole file counted
    assert r.db.shape == db.shape
    psnr = metrics.evaluate_arrays(db, r.db, kind="db", rng=rng)["psnr_db"]
    assert 15 < psnr < 60


def test_jpeg2000_reproduces_reference_table(shared_sar_dir, tmp_path):
    """README of ../shared/sar-data: airsar_sf_T11 at 0.25 bpp -> 32.3 dB / 0.823."""
    ds = next(d for d in shared_datasets(shared_sar_dir)[0] if d.name.startswith("airsar_sf_T11"))
    r = jpeg2000.compress_to_bpp(ds.db, ds.rng, 0.25, tmp_path / "t11.jp2")
    m = metrics.evaluate_arrays(ds.db, r.db, kind="db", rng=ds.rng)
    assert m["psnr_db"] == pytest.approx(32.3, abs=0.3)
    assert m["ssim"] == pytest.approx(0.823, abs=0.01)


def test_merged_targets_drop_near_duplicates():
    assert merged_targets([0.25, 0.251, 0.5, 0.2, 0.0, 0.51]) == [0.2, 0.25, 0.5]


def test_json_is_strict(tmp_path):
    data = {"a": math.inf, "b": np.float32(1.5), "c": [np.int64(3), float("nan")], "d": (1, 2), "e": np.ones(3)}
    text = report.write_json(data, tmp_path / "r.json").read_text()
    assert json.loads(text) == {"a": None, "b": 1.5, "c": [3, None], "d": [1, 2], "e": [1.0, 1.0, 1.0]}


def test_missing_shared_folder_is_a_message(tmp_path):
    found, message = shared_datasets(tmp_path / "absent")
    assert found == [] and "skipped" in message


def test_quick_bench_writes_all_outputs(tmp_path):
    from sar_compressor.bench.run import main

    out = tmp_path / "results"
    assert main(["--quick", "--out", str(out)]) == 0
    json_files = [p for p in out.glob("*.json")]
    assert len(json_files) == 1
    results = json.loads(json_files[0].read_text())
    for key in (
        "date",
        "machine",
        "settings",
        "datasets",
        "speed",
        "memory",
        "ablation",
        "figures",
        "duration_s",
    ):
        assert key in results
    assert results["machine"]["cpu_count"] >= 1 and results["machine"]["numpy"]
    (ds,) = results["datasets"]
    families = {e["family"] for e in ds["entries"]}
    assert families == {"ours", "ours_target", "jpeg2000"}
    ours = [e for e in ds["entries"] if e["family"] == "ours"]
    assert [e["quality"] for e in ours] == results["settings"]["qualities"]
    coded = {e["target_bpp"]: e["bpp"] for e in ds["entries"] if e["family"] == "ours_target"}
    # within 1 % or the best of rate_control.MAX_PASSES: a 256x256 scene at 0.25 bpp lands 1.1 % below
    assert sorted(coded) == [0.25, 0.5, 1.0] and all(0.98 * t <= b <= t for t, b in coded.items())
    for e in ds["entries"]:
        assert e["bpp"] > 0 and "psnr_db" in e["metrics"] and "ssim" in e["metrics"]
    assert "the same for every codec" in ds["metric_domains"]["psnr_db"]
    variants = {(r["variant"], r["target_bpp"]) for r in results["ablation"]["rows"]}
    names = (
        "default",
        "no loop filter",
        "no inter-scale prediction",
        "with sign contexts",
        "no phase prediction",
        "no neighbour bits",
        "tune psnr",
        "tune psnr, no loop filter",
    )
    assert variants == {(v, 0.5) for v in names}
    assert "## Ablation" in (out / "latest.md").read_text()
    ours = results["speed"]["ours"]
    assert ours["compress_mpx_s"] > 0 and ours["compress_vs_jpeg2000"] > 0
    win = results["window"]
    assert win["size"] == 512 and win["overview_shape"] == [256, 256] and win["ours"]["window_s"] > 0
    assert (
        win["jpeg2000"]["overview_shape"] == [256, 256]
        and "## Random access (512x512" in (out / "latest.md").read_text()
    )
    mem = results["memory"]
    assert mem["size"] == 512 and mem["compress"]["peak_rss_bytes"] > mem["raster_bytes"]
    tall = results["memory_tall"]
    assert sorted(tall["peak_rss_bytes"]) == ["256", "512"] and "growth_per_strip_mb" in tall
    for name in results["figures"].values():
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    latest = (out / "latest.md").read_text()
    assert latest == (out / f"{results['date']}.md").read_text() and "JPEG 2000" in latest
    assert "## At 0.25 / 0.5 / 1 bpp" in latest and "rate control" in latest
    assert "## Memory against the raster's height" in latest


def test_interpolation_is_log_linear_and_refuses_to_extrapolate():
    curve = [{"bpp": b, "metrics": {"psnr_db": p}} for b, p in ((0.5, 30.0), (0.125, 20.0), (2.0, 40.0))]
    assert report.interpolate(curve, 0.25, "psnr_db") == pytest.approx(25.0)
    assert report.interpolate(curve, 1.0, "psnr_db") == pytest.approx(35.0)
    assert report.interpolate(curve, 3.0, "psnr_db") is None and report.interpolate(curve[:1], 0.5, "psnr_db") is None


@pytest.mark.skipif(shutil.which("gdal_translate") is None, reason="gdal_translate is not on PATH")
def test_cli_speed_section_runs_alone_and_matches_the_jpeg2000_size(tmp_path):
    from sar_compressor.bench.run import main

    out = tmp_path / "results"
    assert main(["--cli-speed", "--cli-size", "256", "--cli-runs", "1", "--out", str(out)]) == 0
    (json_file,) = out.glob("cli_speed_*.json")
    result = json.loads(json_file.read_text())
    assert abs(result["jpeg2000"]["size_vs_ours"] - 1.0) <= cli_speed.SIZE_TOLERANCE
    for step in ("ours_compress", "j2k_compress", "ours_decompress", "j2k_decompress"):
        assert len(result["seconds"][step]["runs_s"]) == 1 and result["seconds"][step]["median_s"] > 0
    assert result["compress_ratio"] == pytest.approx(
        result["seconds"]["ours_compress"]["median_s"] / result["seconds"]["j2k_compress"]["median_s"]
    )
    assert result["in_process"]["ours"]["compress_mpx_s"] > 0
    markdown = json_file.with_suffix(".md").read_text()
    assert "| compress |" in markdown and "| decompress |" in markdown and "<= 2" in markdown


def test_performance_sections_alone(tmp_path):
    """--performance: speed, memory and random access only, in performance_<date>.{json,md}."""
    from sar_compressor.bench.run import main

    out = tmp_path / "results"
    assert main(["--performance", "--quick", "--out", str(out)]) == 0
    (md,) = out.glob("performance_*.md")
    text = md.read_text()
    assert "## Speed" in text and "## Random access (512x512" in text and "## Memory" in text
    assert "## Rate-distortion" not in text
    (js,) = out.glob("performance_*.json")
    assert json.loads(js.read_text())["speed"]["ours"]["compress_mpx_s"] > 0
