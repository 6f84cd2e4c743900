"""The sar-compressor command line: every subcommand through main([...]), exit codes, honest printed bpp,
the installed console script, `python -m sar_compressor`, and Ctrl-C leaving no output."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sar_compressor.engine.cli import main
from sar_compressor.engine.errors import CancelledError, InputError
from sar_compressor.engine.simulate import write_scene

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"


SCENE = (300, 200, 4)
"""The conftest's `scene` and `sarz`: rows, columns, seed."""


def test_simulate(scene, capsys, tmp_path):
    with rasterio.open(scene) as ds:
        assert (ds.height, ds.width, ds.dtypes[0]) == (300, 200, "float32") and ds.crs is not None
    path = tmp_path / "dn.tif"
    assert main(["simulate", str(path), "--size", "40", "50", "--kind", "amplitude", "--dtype", "uint16"]) == 0
    with rasterio.open(path) as ds:
        assert ds.dtypes[0] == "uint16"
    assert "simulated 40x50 amplitude uint16" in capsys.readouterr().out


def test_compress_reads_the_input_twice_not_three_times(scene, tmp_path, monkeypatch):
    """Pass 1 and the coding read every row once each; the warnings and refusals come from pass 1 itself (the
    CLI does not survey the input first)."""
    from sar_compressor.engine.io.raster_io import RasterReader

    rows = []
    real = RasterReader.read_rows
    monkeypatch.setattr(
        RasterReader, "read_rows", lambda self, band, r0, r1: rows.append(r1 - r0) or real(self, band, r0, r1)
    )
    assert main(["-q", "compress", str(scene), str(tmp_path / "twice.sarz")]) == 0
    assert sum(rows) == 2 * 300


def test_compress_prints_honest_bpp_and_psnr(scene, tmp_path, capsys):
    out, rec = tmp_path / "q2.sarz", tmp_path / "rec.tif"
    args = ["compress", str(scene), str(out), "--quality", "2"]
    args += [
        "--reconstruction",
        str(rec),
        "--mean-correction",
        "global",
    ]
    assert main(["-q", *args]) == 0
    line = capsys.readouterr().out
    bpp = float(re.search(r"([0-9.]+) bpp", line).group(1))
    assert bpp == pytest.approx(8 * out.stat().st_size / (300 * 200), abs=1e-4)
    ratio = float(re.search(r"ratio ([0-9.]+):1", line).group(1))
    assert ratio == pytest.approx(300 * 200 * 4 / out.stat().st_size, abs=0.05)
    assert "PSNR" in line and "quality 2" in line
    assert rec.exists()


def test_compress_to_a_target_bpp(scene, tmp_path, capsys):
    out = tmp_path / "t.sarz"
    args = ["compress", str(scene), str(out)]
    assert main(["-q", *args, "--target-bpp", "0.8"]) == 0
    assert 0.99 * 0.8 <= 8 * out.stat().st_size / (300 * 200) <= 0.8
    assert main(["-q", *args, "--target-bpp", "0.00001", "--overwrite"]) == 2
    assert "below what this raster can be coded in" in capsys.readouterr().err


def test_compress_tuned_for_psnr(scene, tmp_path, capsys):
    """--tune psnr leaves the SSIM weights out: a different file at the same quality; a bad choice exits 2."""
    sizes = {}
    for tune in ("ssim", "psnr"):
        out = tmp_path / f"{tune}.sarz"
        args = ["compress", str(scene), str(out), "--quality", "4"]
        assert main(["-q", *args, "--tune", tune]) == 0
        sizes[tune] = out.stat().st_size
    assert sizes["psnr"] != sizes["ssim"]
    assert main(["-q", *args, "--tune", "mse"]) == 2
    assert "invalid choice: 'mse'" in capsys.readouterr().err


def test_decompress_info_evaluate(sarz, scene, tmp_path, capsys):
    out = tmp_path / "dec.tif"
    assert main(["-q", "decompress", str(sarz), str(out), "--cog"]) == 0
    with rasterio.open(out) as ds, rasterio.open(scene) as src:
        assert ds.crs == src.crs and ds.transform == src.transform and ds.dtypes == src.dtypes
    capsys.readouterr()
    assert main(["info", str(sarz)]) == 0
    text = capsys.readouterr().out
    assert "EPSG:32631" in text and "quality 5" in text and "refinement, quality 5, step 0.2" in text
    assert "flat base" in text and "200x300 tiles" in text and "file id" in text
    assert "block: 256x256 block means to 1/128 log2 (0.024 dB)" in text  # quality 5's step on this scene
    assert main(["info", str(Path(__file__).parent / "data" / "format6.sarz")]) == 0
    old = capsys.readouterr().out  # a format 6 file: one step for every band, in its gain_blocks
    assert ".sarz v6" in old and "block means to 1/32 log2" in old and "loop filter" in old
    assert main(["info", str(sarz), "--json"]) == 0
    header = json.loads(capsys.readouterr().out)
    assert header["file_bytes"] == sarz.stat().st_size and header["raster"]["width"] == 200
    assert main(["evaluate", str(scene), str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert np.isfinite(metrics["psnr_db"]) and "ssim" in metrics
    assert main(["evaluate", str(scene), str(out)]) == 0
    assert "mean_ratio" in capsys.readouterr().out


def _strict(text: str):
    """json.loads refusing NaN and Infinity, as strict parsers (JavaScript's JSON.parse) do."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"not strict JSON: {name}"))


def test_json_outputs_are_strict(tmp_path, capsys):
    """inspect wrote "nodata": NaN and evaluate "psnr_db": Infinity (identical files): no strict parser takes them;
    they are strings, as in .sarz headers."""
    scene = write_scene(tmp_path / "nan.tif", 64, 80, seed=2, nodata=float("nan"), nodata_fraction=0.1)
    assert main(["inspect", str(scene), "--json"]) == 0
    assert _strict(capsys.readouterr().out)["nodata"] == "nan"
    assert main(["evaluate", str(scene), str(scene), "--json"]) == 0
    assert _strict(capsys.readouterr().out)["psnr_db"] == "inf"


def test_info_names_the_gcps_of_a_gcp_georeferenced_raster(tmp_path, capsys):
    """A raster georeferenced by GCPs alone (Sentinel-1 GRD style) has no CRS or transform: `info` printed
    "crs none, transform None", as if it were not georeferenced."""
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    gcps = [GroundControlPoint(row=r, col=c, x=2.0 + c * 1e-4, y=48.0 - r * 1e-4) for r in (0, 39) for c in (0, 49)]
    src, out = tmp_path / "gcps.tif", tmp_path / "gcps.sarz"
    profile = {"driver": "GTiff", "width": 50, "height": 40, "count": 1, "dtype": "float32"}
    with rasterio.open(src, "w", gcps=gcps, crs=CRS.from_epsg(4326), **profile) as ds:
        ds.write(np.random.default_rng(0).exponential(size=(1, 40, 50)).astype(np.float32))
    assert main(["-q", "compress", str(src), str(out)]) == 0
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "georef        4 GCPs (ground control points), crs EPSG:4326" in text
    assert "crs           none" not in text and "transform     None" not in text


def test_errors_are_one_line_with_exit_code_2(tmp_path, sarz, capsys):
    two = tmp_path / "two.tif"
    profile = {"driver": "GTiff", "width": 20, "height": 20, "count": 2, "dtype": "float32"}
    with rasterio.open(two, "w", **profile) as ds:
        ds.write(np.ones((2, 20, 20), np.float32))
    assert main(["compress", str(two), str(tmp_path / "x.sarz"), "--band", "3"]) == 2
    err = capsys.readouterr().err
    assert "error: band 3 does not exist: the raster has 2 band(s)" in err and "Traceback" not in err
    rec = tmp_path / "band2.tif"
    args = [
        "-q",
        "compress",
        str(two),
        str(tmp_path / "b2.sarz"),
        "--band",
        "2",
        "--reconstruction",
        str(rec),
    ]
    assert main(args) == 0
    assert "PSNR" in capsys.readouterr().out
    assert main(["compress", str(tmp_path / "none.tif"), str(tmp_path / "x.sarz")]) == 2
    assert "error: input raster not found" in capsys.readouterr().err
    junk = tmp_path / "junk.sarz"
    junk.write_bytes(b"not a sarz file at all")
    assert main(["info", str(junk)]) == 2
    assert "not a .sarz file" in capsys.readouterr().err
    assert main(["-q", "compress", str(two), str(tmp_path / "x.sarz"), "--model", "m.pt"]) == 2
    assert "unrecognized arguments: --model" in capsys.readouterr().err
    assert not (tmp_path / "x.sarz").exists() and not (tmp_path / "d.tif").exists()


def test_help_and_usage(capsys):
    assert main(["--help"]) == 0
    assert "compress" in capsys.readouterr().out
    for bad in (["compress"], ["frobnicate"], ["compress", "a.tif", "b.sarz", "--quality", "abc"], ["bench", "--no"]):
        assert main(bad) == 2  # one line, as every other error (argparse printed its usage block first)
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "--help" in err, err
    for retired in ("models", "train"):  # the autoencoder's commands are gone
        assert main([retired]) == 2


def test_console_script_and_module(sarz):
    script = VENV_BIN / "sar-compressor"
    if not script.exists():
        pytest.skip("console script not installed (run make setup)")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "decompress" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "sar_compressor", "info", str(sarz)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "file id" in done.stdout, done.stderr


@pytest.mark.parametrize(("given", "kept"), [(None, "1"), ("3", "3")])
def test_the_command_line_holds_openblas_to_one_thread_unless_told(given, kept):
    """Both entry points load numpy through sar_compressor.__main__, which sets the variable first (numpy's
    OpenBLAS reads it when it loads: asked on Linux, where its library shows in /proc/self/maps)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    code = (
        "import ctypes, os, sar_compressor.__main__\n"
        "libs = {l.split()[-1] for l in open('/proc/self/maps') if 'libopenblas' in l}\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'], *[ctypes.CDLL(p).openblas_get_num_threads() for p in libs])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    printed = done.stdout.split()
    threads = str(min(int(kept), os.cpu_count() or 1))  # OpenBLAS uses no more threads than cores
    assert printed[0] == kept and set(printed[1:]) <= {threads}, done.stderr  # what numpy's OpenBLAS itself uses


@pytest.mark.parametrize("sig", [signal.SIGINT, getattr(signal, "SIGHUP", signal.SIGINT)])
def test_ctrl_c_cancels_cleanly(tmp_path, sig):
    """Ctrl-C, and SIGHUP (a closed terminal, a dropped SSH session: it left the temp and lock files behind)."""
    src = tmp_path / "big.tif"
    assert main(["simulate", str(src), "--size", "2560", "2048"]) == 0  # two 2048-row strips
    out = tmp_path / "big.sarz"
    cmd = [sys.executable, "-m", "sar_compressor", "compress", str(src), str(out)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # the log line printed once pass 2 starts
        assert "quality" in line, line
        time.sleep(0.1)
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert "cancel" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif"]


def test_demo_runs_end_to_end(tmp_path, capsys):
    from sar_compressor.bench.demo import main as demo_main

    out = tmp_path / "demo"
    assert demo_main(["--out", str(out), "--size", "256"]) == 0
    printed = capsys.readouterr().out
    for word in ("ratio", "bpp", "PSNR", "SSIM", "mean ratio"):
        assert word in printed
    assert (out / "side_by_side.png").stat().st_size > 10_000
    report = json.loads((out / "demo.json").read_text())
    assert report["compress"]["bpp"] == pytest.approx(8 * (out / "scene.sarz").stat().st_size / 256**2)
    assert demo_main(["--out", str(tmp_path / "d2"), "--input", str(tmp_path / "absent.tif")]) == 2
    assert "error: input raster not found" in capsys.readouterr().err


def test_reconstruction_report_skips_bands_without_valid_pixels(tmp_path, capsys):
    """A band that is all nodata compresses to its mask: the report measures the other bands, and a raster with
    none says PSNR n/a instead of failing after both files were written (it exited 2 with them on disk)."""
    rng = np.random.default_rng(3)
    data = np.stack([np.full((40, 30), np.nan, np.float32), rng.gamma(1.0, 1.0, (40, 30)).astype(np.float32)])
    profile = {"driver": "GTiff", "width": 30, "height": 40, "dtype": "float32"}
    for name, bands in (("mixed.tif", data), ("empty.tif", data[:1])):
        with rasterio.open(tmp_path / name, "w", count=len(bands), **profile) as ds:
            ds.write(bands)
    rec = str(tmp_path / "mixed_rec.tif")
    assert main(["-q", "compress", str(tmp_path / "mixed.tif"), str(tmp_path / "m.sarz"), "--reconstruction", rec]) == 0
    out = capsys.readouterr().out
    assert re.search(r"PSNR \d+\.\d+ dB", out) and "band 2" in out
    rec = str(tmp_path / "empty_rec.tif")
    assert main(["-q", "compress", str(tmp_path / "empty.tif"), str(tmp_path / "e.sarz"), "--reconstruction", rec]) == 0
    assert "PSNR n/a (no valid pixel)" in capsys.readouterr().out


def test_no_interscale_and_info(oversampled_scene, tmp_path, capsys):
    """--no-interscale reaches the engine; `info` says on how many tiles the finest level is predicted."""
    src = oversampled_scene(256, 256)
    for flag, expected in (([], "inter-scale on 1 of 1 tiles"), (["--no-interscale"], "inter-scale on 0 of 1 tiles")):
        out = tmp_path / f"x{len(flag)}.sarz"
        assert main(["-q", "compress", str(src), str(out), "--quality", "7", *flag]) == 0
        capsys.readouterr()
        assert main(["info", str(out)]) == 0
        assert expected in capsys.readouterr().out


def test_evaluate_of_rasters_without_georeferencing_says_nothing_about_it(tmp_path, capsys):
    """rasterio's NotGeoreferencedWarning (two lines with its source line) was printed on every evaluation of an
    AIRSAR crop: evaluate_bands opened both files outside the filter evaluate_files has."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    scene = write_scene(tmp_path / "plain.tif", 48, 64, seed=1, georef=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        assert main(["evaluate", str(scene), str(scene)]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("failure", "code", "said"),
    [
        (CancelledError("cancelled"), 130, "cancelled: {out} and {rec} are written; their metrics were not measured"),
        (KeyboardInterrupt(), 130, "cancelled: {out} and {rec} are written; their metrics were not measured"),
        (InputError("in.tif: No such file"), 0, "warning: {out} and {rec} are written; their metrics could not be"),
    ],
)
def test_a_compression_whose_metrics_fail_says_its_outputs_are_written(
    scene, tmp_path, capsys, monkeypatch, failure, code, said
):
    """A cancel (or a second Ctrl-C) in the metrics said "no output was written", and an input removed meanwhile
    exited 2, while the .sarz and the reconstruction were written and valid."""
    from sar_compressor.engine import metrics

    def fails(*args, cancel=None, **kwargs):
        assert cancel is not None  # the run's cancel reaches the metrics
        raise failure

    monkeypatch.setattr(metrics, "evaluate_bands", fails)
    out, rec = tmp_path / "c.sarz", tmp_path / "r.tif"
    assert main(["-q", "compress", str(scene), str(out), "--reconstruction", str(rec)]) == code
    assert said.format(out=out, rec=rec) in capsys.readouterr().err
    assert out.exists() and rec.exists()


def test_evaluate_hears_the_cancel(scene, capsys, monkeypatch):
    """A SIGTERM during evaluate printed "cancelling" and then finished with exit 0: its metrics had no cancel."""
    from sar_compressor.engine import metrics

    def cancelled(*args, cancel=None, **kwargs):
        assert cancel is not None
        raise CancelledError("cancelled")

    monkeypatch.setattr(metrics, "evaluate_bands", cancelled)
    assert main(["evaluate", str(scene), str(scene)]) == 130


def test_the_progress_bar_is_in_percent(capsys, monkeypatch):
    """Rate control and several bands report thousandths of the whole: the bar read "11/1000 tile" on a 24-tile
    file."""
    from sar_compressor.engine import cli

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    job = cli._Job("compress", False)
    job.progress(11, 1000)
    job.progress(500, 1000)
    job._bar.refresh()
    text = capsys.readouterr().err
    assert "compress:  50%|" in text and "/1000" not in text and "tile" not in text, text


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP (Windows)")
def test_a_hangup_ends_quietly_and_nohup_is_obeyed(monkeypatch):
    """After SIGHUP a terminal's writes fail (EIO): the run's last words ('cancelled: ...') ended it in a traceback
    with exit 1 instead of 129. And a run under nohup (SIGHUP ignored) was cancelled by the hangup it was meant to
    survive."""
    import errno

    from sar_compressor.engine import cli
    from sar_compressor.engine.errors import CancelledError

    class HungUp(io.StringIO):
        dead = False

        def write(self, text: str) -> int:
            if HungUp.dead:
                raise OSError(errno.EIO, "Input/output error")
            return super().write(text)

        def isatty(self) -> bool:
            return True

    def long_run(args, job):
        HungUp.dead = True
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(200):
            if job.cancel():
                raise CancelledError("cancelled by the user")
            time.sleep(0.01)
        return 0

    monkeypatch.setattr(sys, "stderr", HungUp())
    monkeypatch.setitem(cli.COMMANDS, "info", long_run)
    assert cli.main(["info", "x.sarz"]) == 128 + signal.SIGHUP
    HungUp.dead = False
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert cli.main(["info", "x.sarz"]) == 0  # nohup: the run goes on
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    """`info --json | head` ended with 'error: [Errno 32] Broken pipe' once head had what it wanted."""
    from sar_compressor.engine import cli

    def closed(args, job):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setitem(cli.COMMANDS, "info", closed)
    monkeypatch.setattr(cli, "_stdout_closed", lambda: True)
    assert cli.main(["info", "x.sarz"]) == 141
    assert "error" not in capsys.readouterr().err
    monkeypatch.setattr(cli, "_stdout_closed", lambda: False)  # another pipe (a worker's): an error like any other
    assert cli.main(["info", "x.sarz"]) == 2
    assert "error: [Errno 32] Broken pipe" in capsys.readouterr().err
    monkeypatch.undo()
    read, write = os.pipe()
    os.close(read)
    with open(write, "w") as gone:
        monkeypatch.setattr(sys, "stdout", gone)
        assert cli._stdout_closed()
