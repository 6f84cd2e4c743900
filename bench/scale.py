"""`bench --scale`: batch throughput on Dask (engine.batch) for 1, 2, ... local workers, and the scheduler's cost
per task, on a set of simulated rasters -> bench/results/scale_<date>.{json,md}.

    python -m sar_compressor.bench.run --scale [--scale-files 8] [--scale-size 2048] [--scale-workers 1 2]

Each worker count gets a fresh LocalCluster whose workers have imported the engine and loaded the model before
the clock starts (what a long archive run amortises), and writes into an empty folder. The serial row is the same
files through compress_file in this process, one after another. The task overhead is the wall time per trivial
task (submit to result, through the same scheduler) over many tasks: what each file pays on top of its coding.
"""

from __future__ import annotations

import datetime
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Optional

from ..engine.api import compress_file
from ..engine.batch import compress_batch, dask_client
from ..engine.json_text import null, write_json
from ..engine.simulate import write_scene

OVERHEAD_TASKS = 200
Log = Callable[[str], None]


def warm_worker() -> str:
    """Import the codec on a worker (done before timing)."""
    from ..engine import api

    return api.__name__


def _noop(i: int) -> int:
    return i


def task_overhead_ms(client, n: int = OVERHEAD_TASKS) -> float:
    """Milliseconds of wall time per trivial task, submit to gathered result, over `n` tasks."""
    start = time.perf_counter()
    client.gather(client.map(_noop, range(n), pure=False))
    return 1000.0 * (time.perf_counter() - start) / n


def measure(
    workdir: Path, files: int = 8, size: int = 2048, workers: Sequence[int] = (1, 2), log: Optional[Log] = None
) -> dict:
    """Throughput (Mpx/s of input) of serial compression and of compress_batch on each worker count."""
    say = log or (lambda message: None)
    load_before = load_average()
    sources = [write_scene(workdir / f"scale{i}.tif", size, size, seed=100 + i) for i in range(files)]
    mpx = files * size * size / 1e6
    result: dict = {"files": files, "size": size, "mpx": mpx, "runs": []}
    serial_dir = workdir / "serial"
    serial_dir.mkdir()
    warm_worker()
    start = time.perf_counter()
    for src in sources:
        compress_file(src, serial_dir / f"{src.stem}.sarz")
    serial_s = time.perf_counter() - start
    result["serial"] = {"seconds": serial_s, "mpx_s": mpx / serial_s}
    say(f"scale: serial {files}x{size}^2 in {serial_s:.1f} s ({mpx / serial_s:.2f} Mpx/s)")
    for n in workers:
        out = workdir / f"workers{n}"
        with dask_client(workers=n) as client:
            client.run(warm_worker)
            report = compress_batch([str(p) for p in sources], out, client=client)
            overhead = task_overhead_ms(client)
        if not report.ok:
            raise RuntimeError(f"scale: {len(report.failed)} files failed: {report.failed[0].error}")
        same = all((out / p.name).read_bytes() == (serial_dir / p.name).read_bytes() for p in out.glob("*.sarz"))
        run = {
            "workers": n,
            "seconds": report.seconds,
            "mpx_s": mpx / report.seconds,
            "speedup_vs_serial": serial_s / report.seconds,
            "task_overhead_ms": overhead,
            "bytes_equal_serial": same,
        }
        result["runs"].append(run)
        say(
            f"scale: {n} worker(s) {report.seconds:.1f} s, {run['mpx_s']:.2f} Mpx/s, x{run['speedup_vs_serial']:.2f} "
            f"vs serial, {overhead:.2f} ms per trivial task, bytes equal serial: {same}"
        )
        shutil.rmtree(out)
    result["load_average"] = {"before": load_before, "after": load_average()}
    return result


def load_average() -> Optional[float]:
    """The machine's 1-minute load average: other jobs on the same cores make the speed-up meaningless."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def markdown(result: dict) -> str:
    lines = [
        f"# Batch scaling: {result['files']} simulated {result['size']}x{result['size']} rasters "
        f"({result['mpx']:.1f} Mpx), {result['date']}",
        "",
        f"Machine: {result['machine'].get('cpu_count')} CPUs, {result['machine'].get('cpu_model')}; 1-minute load "
        f"average {result['load_average']['before']} before, {result['load_average']['after']} after (other jobs "
        "on the same cores slow the workers down)",
        "",
        "| run | seconds | Mpx/s | speed-up vs serial | scheduler ms/task | bytes = serial |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
        f"| serial (compress_file, one process) | {result['serial']['seconds']:.1f} | "
        f"{result['serial']['mpx_s']:.2f} | 1.00 | | |",
    ]
    for run in result["runs"]:
        lines.append(
            f"| Dask, {run['workers']} worker(s) | {run['seconds']:.1f} | {run['mpx_s']:.2f} | "
            f"{run['speedup_vs_serial']:.2f} | {run['task_overhead_ms']:.2f} | {run['bytes_equal_serial']} |"
        )
    return "\n".join(lines) + "\n"


def run(out: Path, files: int, size: int, workers: Sequence[int], machine: dict, log: Log) -> dict:
    """Measure in a temporary folder, write scale_<date>.json and .md into `out`."""
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sar-scale-") as tmp:
        result = measure(Path(tmp), files, size, workers, log)
    result.update(date=datetime.date.today().isoformat(), machine=machine)
    stem = out / f"scale_{result['date']}"
    write_json(result, stem.with_suffix(".json"), null, indent=2)
    stem.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    log(f"wrote {stem}.json and .md")
    return result
