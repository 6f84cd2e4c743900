"""Batch compression on a loopback Dask LocalCluster (2 single-threaded worker processes): bytes equal to serial
compress_file, a corrupt input reported while the others are written, a worker killed mid-run, resume, stale
temporary files, and one raster's strips coded on the workers equal to the serial file."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sar_compressor.engine.api import compress_file
from sar_compressor.engine.batch import compress_batch, expand_inputs, output_paths
from sar_compressor.engine.cli import main
from sar_compressor.engine.errors import InputError
from sar_compressor.engine.io import output_paths as output_paths_module
from sar_compressor.engine.simulate import write_scene

distributed = pytest.importorskip("distributed")
pytestmark = [pytest.mark.dask, pytest.mark.filterwarnings("ignore:Port 8787 is already in use")]

SIZE = 256
KILL_WAIT_S = 60.0  # bound on waiting for a task to start before killing its worker (never reached when healthy)


@pytest.fixture(scope="module")
def rasters(tmp_path_factory) -> dict[Path, bytes]:
    """Four simulated rasters and their serial .sarz bytes."""
    folder = tmp_path_factory.mktemp("rasters")
    serial = tmp_path_factory.mktemp("serial")
    found = {}
    for seed in range(4):
        src = write_scene(folder / f"scene{seed}.tif", SIZE, SIZE + 64 * seed, seed=seed)
        compress_file(src, serial / f"{src.stem}.sarz")
        found[src] = (serial / f"{src.stem}.sarz").read_bytes()
    return found


def _cluster(workers: int = 2):
    return distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )


@pytest.fixture(scope="module")
def client():
    with _cluster() as cluster, distributed.Client(cluster) as dask:
        yield dask


def _package_parent() -> str:
    """The folder the tested `sar_compressor` package sits in (a subprocess imports the same one)."""
    import sar_compressor

    return str(Path(sar_compressor.__file__).resolve().parent.parent)


def _assert_same(out: Path, rasters: dict[Path, bytes], sources=None) -> None:
    for src in sources or rasters:
        assert (out / f"{src.stem}.sarz").read_bytes() == rasters[src], src.name


def test_batch_bytes_equal_serial(client, rasters, tmp_path):
    seen = []
    folder = next(iter(rasters)).parent
    report = compress_batch([str(folder / "*.tif")], tmp_path, client=client, progress=lambda d, n: seen.append(d))
    assert report.ok and report.count("written") == 4 and len(client.scheduler_info()["workers"]) == 2
    assert seen[-1] == 4 and seen == sorted(seen)
    _assert_same(tmp_path, rasters)


def test_corrupt_input_reported_others_written(client, rasters, tmp_path, capsys):
    bad = tmp_path / "in" / "broken.tif"
    bad.parent.mkdir()
    bad.write_bytes(b"II*\0 not really a tiff")
    listing = tmp_path / "inputs.txt"
    good = list(rasters)[:3]
    listing.write_text("\n".join(["# three good, one broken", *map(str, good), "", str(bad)]) + "\n")
    out = tmp_path / "out"
    code = main(["batch", f"@{listing}", "--out-dir", str(out), "--scheduler", client.scheduler.address])
    assert code == 1
    captured = capsys.readouterr()
    assert "3 written" in captured.out and "1 failed" in captured.out
    assert f"failed: {bad}" in captured.err
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{p.stem}.sarz" for p in good)
    _assert_same(out, rasters, good)


def test_resume_skips_verified_outputs_and_refuses_damaged(client, rasters, tmp_path):
    sources = list(rasters)
    first = compress_batch([str(p) for p in sources[:2]], tmp_path, client=client)
    assert first.count("written") == 2
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.sarz")}
    damaged = tmp_path / f"{sources[3].stem}.sarz"
    damaged.write_bytes(rasters[sources[3]][:-9])  # someone's truncated copy: reported, not overwritten
    again = compress_batch([str(p) for p in sources], tmp_path, client=client)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped", "written", "failed"]
    assert "exists and is not a valid .sarz" in again.failed[0].error
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert damaged.read_bytes() == rasters[sources[3]][:-9]
    other = compress_batch([str(sources[0])], tmp_path, client=client, settings={"quality": 7})
    assert f"not coded from this input as asked (quality 5, not quality 7); remove it to code {sources[0]}" in (
        other.failed[0].error
    )
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # a resume skips only what was done as asked
    low = compress_batch([str(sources[2])], tmp_path / "t", client=client, settings={"target_bpp": 0.5})
    assert low.count("written") == 1  # then asked for more bits: not "already done"
    high = compress_batch([str(sources[2])], tmp_path / "t", client=client, settings={"target_bpp": 2.0})
    assert "not a target of 2" in high.failed[0].error
    assert compress_batch([str(sources[2])], tmp_path / "t", client=client, settings={"target_bpp": 0.5}).count(
        "skipped"
    )
    quality = compress_batch([str(sources[2])], tmp_path / "t", client=client, settings={"quality": 5})
    assert "(a target bit rate, not quality 5)" in quality.failed[0].error  # said "quality 5, not 5"


def test_a_terminals_ctrl_c_cancels_the_batch_not_its_workers(tmp_path):
    """Ctrl-C in a terminal signals the whole process group: the workers died of it mid-file (70 lines of
    KeyboardInterrupt tracebacks), their finished results were lost, and the message said "0 of 6 files" with 4
    written. The workers now ignore SIGINT: the batch cancels, finished files are counted and kept."""
    (tmp_path / "in").mkdir()
    inputs = [write_scene(tmp_path / "in" / f"s{i}.tif", 512, 512, seed=i) for i in range(8)]
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_package_parent(), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "sar_compressor", "batch", *map(str, inputs), "--out-dir", str(out)]
    run = subprocess.Popen(
        [*command, "--workers", "1"], env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + KILL_WAIT_S
    while not list(out.glob("*.sarz")) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGINT)  # what a terminal does
    _, err = run.communicate(timeout=120)
    written = sorted(out.glob("*.sarz"))
    assert run.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    said = int(re.search(r"after (\d+) of 8 files", err).group(1))
    assert said == len(written) >= 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_worker_killed_mid_run_job_completes(rasters, tmp_path):
    """SIGKILL one worker process while it codes a file: Dask runs the task again, every output is complete and
    equal to the serial bytes, and no temporary file is left (stale ones planted beforehand, named as writers name
    them, by a process that is gone, are removed too: the batch's own clean-up matched a name no writer made any
    more, and removed nothing)."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = dead.stdout.strip()
    stale = [tmp_path / f".scene0.sarz.sarz-tmp.{pid}.0123abcd", tmp_path / f"..scene1.sarz.sarz-tmp.{pid}.0a.tmp"]
    for path in stale:
        path.write_bytes(b"left by a killed writer")
    foreign = tmp_path / ".notes.tmp"
    foreign.write_bytes(b"not ours")
    with _cluster() as cluster, distributed.Client(cluster) as dask:
        result = {}
        runner = threading.Thread(
            target=lambda: result.update(report=compress_batch([str(p) for p in rasters], tmp_path, client=dask))
        )
        runner.start()
        deadline = time.monotonic() + KILL_WAIT_S
        busy = []
        while not busy and time.monotonic() < deadline and runner.is_alive():
            busy = [w for w, keys in dask.processing().items() if any(str(k).startswith("sarz-") for k in keys)]
            time.sleep(0.02)
        assert busy, "no task started"
        pid = dask.run(os.getpid, workers=busy[:1])[busy[0]]
        os.kill(pid, signal.SIGKILL)
        runner.join(timeout=300)
        assert not runner.is_alive()
    report = result["report"]
    assert report.ok and report.count("written") == 4
    _assert_same(tmp_path, rasters)
    assert not any(path.exists() for path in stale) and foreign.exists()
    assert sorted(p.name for p in tmp_path.glob(".*tmp*")) == [".notes.tmp"]


def test_default_local_cluster_and_cli_errors(rasters, tmp_path, capsys):
    """No client given: a LocalCluster of --workers processes is started and closed; bad inputs stop before."""
    src = next(iter(rasters))
    report = compress_batch([str(src)], tmp_path, workers=1)
    assert report.ok and (tmp_path / f"{src.stem}.sarz").read_bytes() == rasters[src]
    assert main(["batch", str(tmp_path / "missing*.tif"), "--out-dir", str(tmp_path)]) == 2
    assert "no file matches" in capsys.readouterr().err
    never = tmp_path / "never" / "out"  # a batch refused before any work made its --out-dir all the same
    with pytest.raises(InputError, match="cannot reach the Dask scheduler"):
        compress_batch([str(src)], never, scheduler="tcp://127.0.0.1:9")
    assert not (tmp_path / "never").exists()


def test_an_inputs_warnings_reach_the_report_and_the_command_line(client, tmp_path, capsys):
    """compress says when a mask cannot be kept or the bands' nodata values differ; batch said nothing."""
    import numpy as np
    import rasterio

    src = tmp_path / "dem.tif"
    valid = np.ones((64, 80), bool)
    valid[:, :10] = False
    profile = {"driver": "GTiff", "width": 80, "height": 64, "count": 1, "dtype": "int16"}
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(src, "w", **profile) as ds:
        ds.write(np.arange(64 * 80, dtype=np.int16).reshape(64, 80) % 900 - 400, 1)
        ds.write_mask(valid.astype(np.uint8) * 255)
    code = main(["batch", str(src), "--out-dir", str(tmp_path / "out"), "--scheduler", client.scheduler.address])
    assert code == 0 and f"warning: {src}: band 1: a GDAL mask" in capsys.readouterr().err


def test_inputs_and_output_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for path in (tmp_path / "a" / "x.tif", tmp_path / "b" / "x.tif", tmp_path / "a" / "y.tif"):
        path.write_bytes(b"")
    listing = tmp_path / "list.txt"
    listing.write_text("a/y.tif\n")
    found = expand_inputs([str(tmp_path / "a" / "*.tif"), str(listing), str(tmp_path / "a" / "y.tif")])
    assert [p.name for p in found] == ["x.tif", "y.tif"]
    with pytest.raises(InputError, match="would both be written"):
        output_paths(expand_inputs([str(tmp_path / "*" / "x.tif")]), tmp_path)
    with pytest.raises(InputError, match="would both be written"):  # one file on a case-insensitive disk
        output_paths([tmp_path / "a" / "Scene.tif", tmp_path / "b" / "scene.tif"], tmp_path)
    with pytest.raises(InputError, match="not found"):
        expand_inputs([str(tmp_path / "nope.tif")])
    for ours in ("x.sarz", "x.sarz.vrt", "x.sarz.ov1.vrt", "x.tif.aux.xml", "x.tif.ovr", "x.tif.msk", "x.tfw", "x.hdr"):
        (tmp_path / "a" / ours).write_bytes(b"")
    assert [p.name for p in expand_inputs([str(tmp_path / "a" / "*")])] == ["x.tif", "y.tif"]
    with pytest.raises(InputError, match="is a .sarz or its VRT, already compressed"):
        expand_inputs([str(tmp_path / "a" / "x.sarz")])
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"a/y.tif\n# caf\xe9\n")  # not UTF-8, and a raster named as a list: a traceback, exit 1
    (tmp_path / "a" / "z.tif").write_bytes(b"II*\x00\xff\xfe")
    for listed in (str(latin), "@" + str(tmp_path / "a" / "z.tif")):
        with pytest.raises(InputError, match="is not a list of input paths in UTF-8 text"):
            expand_inputs([listed])


def test_split_raster_equals_serial(client, tmp_path):
    """Five tiles (1024x1024, the last 256 rows) coded on two workers, assembled byte for byte."""
    from sar_compressor.engine.strip_tasks import compress_split

    src = write_scene(tmp_path / "tall.tif", 4096 + 256, 1024, seed=7, nodata=0.0, nodata_fraction=0.05)
    serial = compress_file(src, tmp_path / "serial.sarz")
    seen = []
    split = compress_split(src, tmp_path / "split.sarz", client, progress=lambda d, n: seen.append((d, n)))
    assert seen == [(k, 5) for k in range(1, 6)]
    assert (tmp_path / "split.sarz").read_bytes() == (tmp_path / "serial.sarz").read_bytes()
    assert split.output_bytes == serial.output_bytes and split.valid_pixels == serial.valid_pixels
    os.chmod(tmp_path / "split.sarz", 0o600)  # replaced as compress_file replaces: its mode kept, no temp left
    compress_split(src, tmp_path / "split.sarz", client, quality=2)
    assert (tmp_path / "split.sarz").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["serial.sarz", "split.sarz", "tall.tif"]


def test_split_raster_with_loop_filters_equals_serial(client, structured_scene, tmp_path):
    """Where tiles keep their loop filter, the split file (and its filtered-tile count) is the serial one too."""
    from sar_compressor.engine.api import read_header
    from sar_compressor.engine.strip_tasks import compress_split

    src = structured_scene(2048, 512)
    compress_file(src, tmp_path / "serial.sarz", quality=6)
    compress_split(src, tmp_path / "split.sarz", client, quality=6)
    assert (tmp_path / "split.sarz").read_bytes() == (tmp_path / "serial.sarz").read_bytes()
    assert read_header(tmp_path / "split.sarz")["bands"][0]["stats"]["loop_filtered_tiles"] >= 1


def test_scale_bench_runs_small(tmp_path):
    """bench --scale's measurement end to end on two tiny rasters and one worker."""
    from sar_compressor.bench import scale

    result = scale.measure(tmp_path, files=2, size=128, workers=(1,))
    [run] = result["runs"]
    assert run["workers"] == 1 and run["bytes_equal_serial"] and run["mpx_s"] > 0 and run["task_overhead_ms"] > 0
    assert "| Dask, 1 worker(s) |" in scale.markdown({**result, "date": "today", "machine": {}})


def test_cancel_keeps_finished_files_and_leaves_no_temp(rasters, tmp_path, capsys):
    """Cancel after the first finished file: CancelledError naming the count, the LocalCluster is closed, every
    .sarz left is complete and no temporary file remains."""
    from sar_compressor.engine.errors import CancelledError

    seen = []
    with pytest.raises(CancelledError, match=r"after \d of 4 files") as cancelled:
        compress_batch(
            [str(p) for p in rasters],
            tmp_path,
            workers=1,
            progress=lambda d, n: seen.append(d),
            cancel=lambda: bool(seen),
        )
    outputs = {p.name for p in tmp_path.glob("*.sarz")}
    said = int(re.search(r"after (\d) of", str(cancelled.value)).group(1))
    assert said >= seen[-1] >= 1  # the files done, those not yet collected too (it said 0 with 1 written)
    assert outputs and not list(tmp_path.glob(".*"))
    for src, data in rasters.items():
        if f"{src.stem}.sarz" in outputs:
            assert (tmp_path / f"{src.stem}.sarz").read_bytes() == data


def test_a_cancel_drops_the_files_not_started_and_waits_for_those_running():
    """README: Ctrl-C cancels, files running finish. The cancel cancelled them too, and closing the cluster killed a
    worker still busy 4 s later: a 2048x2048 file being coded was lost (a user's sweep). The files a worker holds
    are now waited for; only the others are dropped."""
    from sar_compressor.engine.batch import _let_running_finish

    class Future:
        def __init__(self, key: str, polls_left: int):
            self.key, self.polls_left = key, polls_left

        def done(self) -> bool:
            self.polls_left -= 1
            return self.polls_left < 0

    class Client:
        cancelled: list[str] = []

        def processing(self) -> dict:
            return {"tcp://worker": ["running"]}

        def cancel(self, futures) -> None:
            self.cancelled += [f.key for f in futures]

    running, queued = Future("running", 3), Future("queued", 10**6)
    client = Client()
    _let_running_finish(client, [running, queued])
    assert client.cancelled == ["queued"] and running.polls_left < 0


def test_cli_cancel_exit_130(rasters, tmp_path, capsys, monkeypatch):
    from sar_compressor.engine import cli

    monkeypatch.setattr(cli._Job, "cancel", lambda self: True)
    src = next(iter(rasters))
    assert main(["batch", str(src), "--out-dir", str(tmp_path), "--workers", "1"]) == 130
    left = list(tmp_path.iterdir())  # the task may have finished its file while the cluster closed: complete
    assert f"cancelled: cancelled by the user after {len(left)} of 1 files" in capsys.readouterr().err  # counted
    assert all(p.name == f"{src.stem}.sarz" and p.read_bytes() == rasters[src] for p in left)


def test_bad_settings_refused_before_any_work(rasters, tmp_path):
    src = str(next(iter(rasters)))
    for settings, workers, message in (
        ({"quality": 99}, None, "quality must be"),
        ({"target_bpp": 0.0}, None, "must be positive"),
        ({"band": 0}, None, "band 0 does not exist"),  # each file failed, on a cluster started for nothing
        ({}, 0, "at least 1"),
    ):
        with pytest.raises(InputError, match=message):
            compress_batch([src], tmp_path / "out", settings=settings, workers=workers)
    assert not (tmp_path / "out").exists()


def test_a_file_another_run_is_writing_is_waited_for_then_skipped_or_coded(client, rasters, tmp_path):
    """Another run (a command, a second batch over the same folder) writing two of the batch's outputs: the batch
    wrote them as well, and its clean-up removed the other run's temp file mid-write; then it reported both failed.
    Now it waits until that run lets go: the file the other run wrote is skipped, the one it gave up on is coded, and
    the other run's temp file is left alone while it runs."""
    sources = list(rasters)[:3]
    wrote, gave_up = (tmp_path / f"{src.stem}.sarz" for src in sources[:2])
    live = tmp_path / f".{wrote.name}.sarz-tmp.{os.getpid()}.0123abcd"
    waits, lines = threading.Event(), []

    def log(line: str) -> None:
        lines.append(line)
        if sum(text.startswith("waiting: ") for text in lines) == 2:
            waits.set()

    def other_run() -> None:
        with output_paths_module.guarded_outputs([], [wrote, gave_up], overwrite=False):
            live.write_bytes(b"being written")
            started.set()
            waits.wait(timeout=120)
            assert live.read_bytes() == b"being written" and not gave_up.exists()
            live.rename(wrote)
            wrote.write_bytes(rasters[sources[0]])  # what this run wrote: a valid file coded as asked

    started = threading.Event()
    other = threading.Thread(target=other_run)
    other.start()
    started.wait(timeout=30)
    try:
        report = compress_batch([str(p) for p in sources], tmp_path, client=client, log=log)
    finally:
        waits.set()
        other.join()
    assert [o.status for o in report.outcomes] == ["skipped", "written", "written"]
    assert all("is being written by another run" in line for line in lines if line.startswith("waiting: "))
    _assert_same(tmp_path, rasters, sources)


def test_a_lock_no_worker_can_judge_fails_its_file_instead_of_being_waited_for(client, rasters, tmp_path):
    """A lock of another host (or container) sharing the folder is never taken over, and nothing tells when it
    goes: waited for, the batch hung for ever. Its file fails, naming the lock to remove; the others are coded."""
    from sar_compressor.engine.io.write_lock import LOCK_SUFFIX

    sources = list(rasters)[:2]
    (tmp_path / f".{sources[0].stem}.sarz{LOCK_SUFFIX}").write_text("12345 otherhost pid:[4026531836] 0000")
    result = {}  # in a daemon thread: a wait for ever fails the test, not the suite

    def run() -> None:
        try:
            result["report"] = compress_batch([str(p) for p in sources], tmp_path, client=client)
        except Exception as exc:  # noqa: BLE001 (the test reports it)
            result["report"] = exc

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout=120)
    assert not runner.is_alive(), "the batch waited on a lock no worker can judge"
    report = result["report"]
    assert [o.status for o in report.outcomes] == ["failed", "written"]
    assert "is being written by another run" in report.failed[0].error and "remove it if no run" in (
        report.failed[0].error
    )


def test_a_busy_port_8787_says_nothing(rasters, tmp_path):
    """Another Dask (another user's batch) on port 8787: the batch's own cluster printed distributed's four-line
    "Port 8787 is already in use" warning; its HTTP routes now take a free loopback port."""
    import socket
    import warnings

    src = next(iter(rasters))
    with contextlib.ExitStack() as stack:
        busy = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # already taken by someone: busy all the same
            busy.bind(("127.0.0.1", 8787))
            busy.listen()
        said = stack.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always")
        assert compress_batch([str(src)], tmp_path, workers=1).ok
    assert not [w for w in said if "8787" in str(w.message)]


def test_a_file_whose_worker_died_after_it_was_written_is_not_failed():
    """A worker killed just after a file was written: its future was lost and computed again, and the batch, which
    read its status at once, reported the written file as "failed: NoneType: None" (exit 1). A task Dask cancelled
    (its scheduler lost) is a failed file, not a traceback that loses the report."""
    from sar_compressor.engine.batch import FileOutcome, _outcome

    written = FileOutcome("in.tif", "in.sarz", "written")

    class Recomputed:  # a distributed Future seen while it is computed again
        status = "lost"

        def result(self):
            return written  # waits, then: it ran without error

    class Cancelled:
        status = "cancelled"

        def exception(self):
            return None

        def result(self):
            raise RuntimeError("sarz-in-1 cancelled for reason: scheduler-connection-lost")

    assert _outcome(Recomputed(), "in.tif", "in.sarz") is written
    failed = _outcome(Cancelled(), "in.tif", "in.sarz")
    assert failed.status == "failed" and "scheduler-connection-lost" in failed.error


def test_a_batch_file_codes_two_tiles_at_once(rasters, tmp_path, monkeypatch):
    """A batch runs a file per core: each file's tiles in flight follow a single run's one per core no more (on 16
    cores, 16 workers x 4 tiles: four times the threads, 45 % more memory per worker); and the process's own runs
    keep theirs (a caller's in-process cluster had every later run lowered)."""
    from concurrent import futures

    from sar_compressor.engine.batch import TILES_PER_FILE, compress_one
    from sar_compressor.engine.codec.passes import strip_window

    monkeypatch.setattr(strip_window, "LOOKAHEAD", 4)
    pools = []
    real = futures.ThreadPoolExecutor

    def recorded(max_workers=None, **kwargs):
        pools.append(max_workers)
        return real(max_workers=max_workers, **kwargs)

    monkeypatch.setattr(strip_window, "ThreadPoolExecutor", recorded)
    src = next(iter(rasters))
    assert compress_one(str(src), str(tmp_path / "one.sarz"), {}).status == "written"
    assert set(pools) == {TILES_PER_FILE} and strip_window.tiles_at_once() == 4


def test_resume_sees_a_replaced_raster_links_keep_their_names_and_done_files_need_no_lock(client, tmp_path):
    """A sweep: a 37x100 output was skipped as done for a 400x500 raster of the same name; links were coded under
    their targets' names (one of two links to a file vanished, two links to a/image.tif and b/image.tif collided);
    a rerun over done files in a folder it could not write into (read-only, full) failed every one at its lock."""
    (tmp_path / "in").mkdir()
    src = write_scene(tmp_path / "in" / "scene.tif", 37, 100, seed=2)
    out = tmp_path / "out"
    assert compress_batch([str(src)], out, client=client).count("written") == 1
    write_scene(src, 40, 50, seed=3)
    again = compress_batch([str(src)], out, client=client)
    assert "not coded from this input as asked (a 100x37 raster, not this 50x40 one)" in again.failed[0].error
    same_size = write_scene(tmp_path / "in" / "other.tif", 40, 50, seed=5)
    assert compress_batch([str(same_size)], out, client=client).count("written") == 1
    write_scene(same_size, 40, 50, seed=6)  # another raster of the same size copied over it: kept as done
    written = (out / "other.sarz").stat().st_mtime_ns
    os.utime(same_size, ns=(written + 10**9,) * 2)  # within MTIME_SLACK_S (FAT's 2 s, clocks drifting): as coded
    assert compress_batch([str(same_size)], out, client=client).count("skipped") == 1
    os.utime(same_size, ns=(written + 3 * 10**9,) * 2)
    changed = compress_batch([str(same_size)], out, client=client)
    assert "an earlier other.tif: the input was modified after it was written" in changed.failed[0].error
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        write_scene(tmp_path / folder / "image.tif", 24, 32, seed=4)
    links = tmp_path / "links"
    links.mkdir()
    for name, target in (("scene1.tif", "a"), ("scene2.tif", "b")):
        (links / name).symlink_to(tmp_path / target / "image.tif")
    assert [p.name for p in expand_inputs([str(links / "*.tif")])] == ["scene1.tif", "scene2.tif"]
    (links / "into_a").symlink_to(tmp_path / "a")  # a '..' after a linked folder is the link target's parent
    assert expand_inputs([str(links / "into_a" / ".." / "b" / "image.tif")]) == [tmp_path.resolve() / "b" / "image.tif"]
    named = compress_batch([str(links / "*.tif")], tmp_path / "named", client=client)
    assert named.count("written") == 2 and sorted(p.name for p in (tmp_path / "named").iterdir()) == [
        "scene1.sarz",
        "scene2.sarz",
    ]
    taken = []
    real_guard = output_paths_module.guarded_outputs
    with pytest.MonkeyPatch.context() as patch:  # no lock is taken for a file already done
        patch.setattr(
            "sar_compressor.engine.batch.guarded_outputs", lambda *a, **k: taken.append(a) or real_guard(*a, **k)
        )
        from sar_compressor.engine.batch import compress_one

        done = tmp_path / "named" / "scene1.sarz"
        assert compress_one(str(links / "scene1.tif"), str(done), {}).status == "skipped" and not taken


def test_the_batch_cluster_keeps_its_workers_memory_allocator_fast(rasters, tmp_path):
    """distributed sets MALLOC_TRIM_THRESHOLD_=65536 in its workers: a batch of 40 1024x1024 files took 37.3 s
    instead of 16.3 s on 2 workers (a sweep). The batch's own cluster leaves it out, and keeps single-threaded BLAS."""
    from sar_compressor.engine.batch import dask_client

    os.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"  # an earlier cluster's (a notebook's), in this process
    try:
        with dask_client(workers=1) as local:
            environ = next(iter(local.run(lambda: dict(os.environ)).values()))
            local.restart()  # a worker started again (after a kill) inherits this process's environment then
            again = next(iter(local.run(lambda: dict(os.environ)).values()))
        assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"  # this process's own is given back
    finally:
        os.environ.pop("MALLOC_TRIM_THRESHOLD_")
    for env in (environ, again):
        assert "MALLOC_TRIM_THRESHOLD_" not in env and env.get("OPENBLAS_NUM_THREADS") == "1"


def test_an_interrupted_close_kills_only_this_processs_workers():
    """A second Ctrl-C cut the cluster's close short: its workers went on writing, and the temp files they held were
    left behind (said removed). Those still running are killed before the clean-up; nothing that is not a
    descendant of this process is touched."""
    import psutil

    from sar_compressor.engine import batch

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = time.monotonic()
    try:
        batch._kill_children([child.pid, 1])  # 1: init, not ours
        assert not psutil.pid_exists(child.pid) and time.monotonic() - started < 30  # killed (and reaped)
    finally:
        child.kill()
    assert psutil.pid_exists(1)


def test_an_interrupted_batch_leaves_no_cluster_for_distributed_to_close_at_exit(rasters, monkeypatch):
    """Two Ctrl-Cs said "stop at once", then waited 10 s in distributed's exit hook, closing again the cluster whose
    workers were killed (a third Ctrl-C printed a traceback)."""
    from distributed.deploy.spec import SpecCluster

    from sar_compressor.engine import batch

    before = set(SpecCluster._instances)  # the other tests' clusters
    with pytest.raises(KeyboardInterrupt), batch.dask_client(None, None, 1):
        clusters = set(SpecCluster._instances) - before
        assert len(clusters) == 1
        raise KeyboardInterrupt  # as a second Ctrl-C cuts the close short
    assert not clusters & set(SpecCluster._instances)


def test_a_zipped_product_is_an_input_by_its_gdal_name(client, rasters, tmp_path):
    """`compress /vsizip//.../product.zip/scene.tif` worked, `batch` with the same name said "input not found" (it
    wanted a file, and a Path folded /vsizip//abs into /vsizip/abs): on the command line and in a list."""
    import zipfile

    src = next(iter(rasters))
    archive = tmp_path / "product.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(src, f"measurement/{src.name}")
    name = f"/vsizip/{archive}/measurement/{src.name}"
    assert name.startswith("/vsizip//")
    listing = tmp_path / "list.txt"
    listing.write_text(name + "\n")
    assert expand_inputs([name]) == expand_inputs([str(listing)]) == [name]
    report = compress_batch([name], tmp_path / "out", client=client)
    assert report.ok and report.count("written") == 1
    assert (tmp_path / "out" / f"{src.stem}.sarz").read_bytes() == rasters[src]
    assert compress_batch([name], tmp_path / "out", client=client).count("skipped") == 1
    with pytest.raises(InputError, match="cannot be read"):
        expand_inputs([f"/vsizip/{archive}/missing.tif"])


def test_lists_globs_and_links_users_make(tmp_path):
    """A list saved by Notepad (a UTF-8 byte-order mark) refused the whole batch; two links back up the tree made
    `dir/**/*.tif` expand forever (walked once each, a linked archive folder is still searched); a glob's broken
    link vanished without a word (a folder, even one named like a raster or a product's .SAFE, is no input)."""
    folder = tmp_path / "d"
    (folder / "sub").mkdir(parents=True)
    for path in (folder / "a.tif", folder / "sub" / "b.tif"):
        path.write_bytes(b"")
    listing = tmp_path / "bom.txt"
    listing.write_bytes("\ufeffd/a.tif\n".encode("utf-8"))
    assert expand_inputs([str(listing)]) == [folder / "a.tif"]
    (folder / "sub" / "parent").symlink_to("..")
    (folder / "sub" / "self").symlink_to(".")
    (tmp_path / "disk2" / "2023").mkdir(parents=True)
    (tmp_path / "disk2" / "2023" / "c.tif").write_bytes(b"")
    (folder / "2023").symlink_to(tmp_path / "disk2" / "2023")  # an archive spread over disks
    start = time.monotonic()
    assert [p.name for p in expand_inputs([str(folder / "**" / "*.tif")])] == ["c.tif", "a.tif", "b.tif"]
    assert time.monotonic() - start < 10
    assert [p.name for p in expand_inputs([str(folder / "**.tif")])] == ["a.tif"]  # `**` within a name: a `*`
    (folder / "gone.tif").symlink_to(tmp_path / "unmounted" / "gone.tif")
    (folder / "x.tif").mkdir()
    (folder / "S1A_X.SAFE").mkdir()
    found = [p.name for p in expand_inputs([str(folder / "*")])]
    assert found == ["a.tif", "gone.tif"]  # the broken link fails in the report by name


def test_a_system_error_is_said_in_words_naming_its_file(tmp_path):
    """A broken link in a batch was reported as 'FileNotFoundError: [Errno 2] No such file or directory: ...'."""
    from sar_compressor.engine import batch

    link = tmp_path / "broken.tif"
    link.symlink_to(tmp_path / "unmounted" / "x.tif")
    with pytest.raises(OSError) as caught:
        os.stat(link)
    assert batch._describe(caught.value) == f"{link}: a broken link (to {tmp_path / 'unmounted' / 'x.tif'})"
    with pytest.raises(OSError) as caught:
        os.stat(tmp_path / "absent.tif")
    assert batch._describe(caught.value) == f"{tmp_path / 'absent.tif'}: No such file or directory"
    assert batch._describe(ValueError("x")) == "ValueError: x"  # a bug keeps its type
    loop = tmp_path / "loop.tif"
    loop.symlink_to(loop)
    with pytest.raises(OSError) as caught:
        os.stat(loop)
    assert "broken link" not in batch._describe(caught.value)  # a loop, a refused target: their own words
    moved = OSError(18, "Invalid cross-device link", str(tmp_path / ".x.tmp"), None, str(tmp_path / "x.sarz"))
    assert batch._describe(moved) == f"{tmp_path / '.x.tmp'} and {tmp_path / 'x.sarz'}: Invalid cross-device link"
    assert batch._describe(OSError(9, "Bad file descriptor", 3)) == "OSError: [Errno 9] Bad file descriptor: 3"


def test_an_input_changed_while_coded_fails_and_leaves_no_output(rasters, tmp_path, monkeypatch):
    """An input rewritten while it was coded left a .sarz of the old data that every resume then skipped as done
    (its time stamp is later than the change)."""
    from sar_compressor.engine import api, batch

    src = tmp_path / "scene.tif"
    src.write_bytes(next(iter(rasters)).read_bytes())
    real = api.compress_file

    def rewritten_meanwhile(*args, **kwargs):
        stats = real(*args, **kwargs)
        write_scene(src, SIZE, SIZE, seed=9)
        return stats

    monkeypatch.setattr(api, "compress_file", rewritten_meanwhile)
    outcome = batch.compress_one(str(src), str(tmp_path / "scene.sarz"), {})
    assert outcome.status == "failed" and "changed while it was coded" in outcome.error
    assert not (tmp_path / "scene.sarz").exists()


def test_resume_compares_the_mean_correction(client, rasters, tmp_path):
    """A second run asking for mean_correction="none" skipped the files the first had coded with "block"."""
    src = next(iter(rasters))
    assert compress_batch([str(src)], tmp_path, client=client).ok
    report = compress_batch([str(src)], tmp_path, client=client, settings={"mean_correction": "none"})
    assert report.count("failed") == 1 and "mean correction block, not none" in report.failed[0].error
