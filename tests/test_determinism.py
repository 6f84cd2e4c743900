"""A file is the same to the byte, and decodes to the same pixels, whatever the machine's thread settings: BLAS/OpenMP
threads (OMP/OPENBLAS/MKL_NUM_THREADS) and the tiles coded at once (strip_window.LOOKAHEAD), each run in a fresh
process (the thread counts are read when numpy loads); the tiles in flight cost a bounded amount of memory."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from sar_compressor.engine import api
from sar_compressor.engine.codec.format import layout as layout_module
from sar_compressor.engine.codec.passes import strip_window, survey
from sar_compressor.engine.simulate import write_scene

RUN = """
import sys
import numpy as np
from sar_compressor.engine import api
from sar_compressor.engine.codec.format import layout
from sar_compressor.engine.codec.passes import strip_window

layout.TILE = int(sys.argv[5])  # twelve tiles: several in flight at once
strip_window.LOOKAHEAD = int(sys.argv[4])
api.compress_file(sys.argv[1], sys.argv[2], quality=int(sys.argv[6]))
np.save(sys.argv[3], api.decompress_array(sys.argv[2]))
"""


def _code(tmp_path, src, threads: int, lookahead: int, tile: int = 128, quality: int = 5) -> tuple[bytes, np.ndarray]:
    """The .sarz bytes and decoded pixels of `src` from a process with `threads` BLAS/OpenMP threads."""
    sarz, pixels = tmp_path / f"t{threads}_{lookahead}.sarz", tmp_path / f"t{threads}_{lookahead}.npy"
    env = {
        **os.environ,
        **{name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    cmd = [sys.executable, "-c", RUN, str(src), str(sarz), str(pixels), str(lookahead), str(tile), str(quality)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return sarz.read_bytes(), np.load(pixels)


@pytest.mark.slow
def test_file_and_pixels_do_not_depend_on_thread_counts(tmp_path):
    src = write_scene(tmp_path / "scene.tif", 384, 512, looks=1, seed=11)
    data_1, pixels_1 = _code(tmp_path, src, threads=1, lookahead=1)
    data_2, pixels_2 = _code(tmp_path, src, threads=2, lookahead=2)
    assert api.read_header(data_1)["n_chunks"] == 12
    assert data_1 == data_2
    assert pixels_1.dtype == pixels_2.dtype and pixels_1.tobytes() == pixels_2.tobytes()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scene", "stat", "tiles"),
    [("structured_scene", "loop_filtered_tiles", 5), ("oversampled_scene", "interscale_tiles", 12)],
    ids=["loop-filter", "inter-scale"],
)
def test_fitted_parts_do_not_depend_on_thread_counts(scene, stat, tiles, request, tmp_path):
    """Scenes whose tiles keep a part the encoder fits by least squares through BLAS: the loop filter (a structured
    scene) and inter-scale predictors (an oversampled one; their prediction drives the bright targets' contexts, so
    the decoder's must be the encoder's to the bit)."""
    src = request.getfixturevalue(scene)(1024, 768)
    data_1, pixels_1 = _code(tmp_path, src, threads=1, lookahead=1, tile=256, quality=7)
    data_2, pixels_2 = _code(tmp_path, src, threads=2, lookahead=2, tile=256, quality=7)
    header = api.read_header(data_1)
    assert header["n_chunks"] == 12 and header["bands"][0]["stats"][stat] == tiles
    assert data_1 == data_2
    assert pixels_1.tobytes() == pixels_2.tobytes()


@pytest.mark.slow
def test_tiles_in_flight_add_a_bounded_amount_of_memory(tmp_path, monkeypatch, round_trip_peaks):
    """Two tiles refined at once cost about one more tile's working set than one (measured 1.8-2.0x of the peak
    with six 512x512 tiles, the pass-1 sample made small), never a row of tiles or the raster."""
    monkeypatch.setattr(survey, "SAMPLE_VALUES", 16384)
    monkeypatch.setattr(survey, "TEXTURE_PIXELS", 16384)
    monkeypatch.setattr(layout_module, "TILE", 512)
    src = write_scene(tmp_path / "m.tif", 3072, 512, seed=1)
    peaks = {}
    for lookahead in (1, 2):
        monkeypatch.setattr(strip_window, "LOOKAHEAD", lookahead)
        peaks[lookahead] = round_trip_peaks(src, tmp_path)
    one, two = peaks[1], peaks[2]
    for serial, pipelined in zip(one, two):
        assert pipelined < 2.5 * serial, (one, two)
