"""Issue 22 through the CLI: outputs never destroy inputs or non-files, a full disk or a signal leaves the
destination as it was (untouched or complete, never half-written), verify finds damaged chunks, documented
inputs (CInt16, tall narrow rasters) work and impossible option combinations are refused before any work."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sar_compressor.engine.cli import main
from sar_compressor.engine.codec.format import container
from sar_compressor.engine.errors import InputError, OutputError
from sar_compressor.engine.io import output_paths, write_lock
from sar_compressor.engine.io.raster_io import StripWriter


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> list[str]:
    """Every name in the folder, hidden temp and lock files included."""
    return sorted(p.name for p in folder.iterdir())


def write_raster(path: Path, array: np.ndarray, dtype: str) -> Path:
    with rasterio.open(
        path, "w", driver="GTiff", width=array.shape[1], height=array.shape[0], count=1, dtype=dtype
    ) as ds:
        ds.write(array, 1)
    return path


SCENE = (512, 512, 5)
"""The conftest's `scene` and `sarz`: rows, columns, seed."""


@pytest.fixture
def old_tif(tmp_path) -> Path:
    """A valid raster already at the destination: it must survive every failed write."""
    return write_raster(tmp_path / "old.tif", np.full((4, 4), 7, "float32"), "float32")


# --------------------------------------------------------------------------- 1, 2: output clashes


def test_output_equal_to_an_input_is_refused(scene, sarz, tmp_path, capsys):
    src = tmp_path / "in.tif"
    src.write_bytes(scene.read_bytes())
    link = tmp_path / "link.tif"
    link.symlink_to(src)
    hard = tmp_path / "hard.tif"
    os.link(src, hard)
    before = digest(src)
    arch = tmp_path / "a.sarz"
    arch.write_bytes(sarz.read_bytes())
    cases = [
        ["compress", str(src), str(src)],
        ["compress", str(src), str(tmp_path / "o.sarz"), "--reconstruction", str(link)],
        ["compress", str(link), str(hard), "--overwrite"],
        ["compress", str(src), str(tmp_path / "o.sarz"), "--reconstruction", str(tmp_path / "o.sarz")],
        ["decompress", str(arch), str(arch), "--overwrite"],
    ]
    for argv in cases:
        assert main(["-q", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: output") and ("is the input" in err or "same file" in err), err
    assert digest(src) == before and digest(arch) == digest(sarz)
    assert listing(tmp_path) == ["a.sarz", "hard.tif", "in.tif", "link.tif"]


def test_a_sarz_is_never_written_under_a_rasters_name(scene, tmp_path, capsys):
    """`compress in.tif out.tif` (the reconstruction's name in the output's place) wrote a .sarz that GDAL and
    QGIS would open as a GeoTIFF and fail on; it is refused before any work."""
    for name in ("out.tif", "out.TIFF", "out.vrt"):
        assert main(["-q", "compress", str(scene), str(tmp_path / name)]) == 2
        assert f"a .sarz file would get a raster's name ({name}); name it .sarz" in capsys.readouterr().err
    assert listing(tmp_path) == []
    victim = tmp_path / "victim.tif"  # through a link: --overwrite wrote .sarz bytes into victim.tif
    victim.write_bytes(b"a GeoTIFF")
    (tmp_path / "x.sarz").symlink_to(victim)
    assert main(["-q", "compress", str(scene), str(tmp_path / "x.sarz"), "--overwrite"]) == 2
    assert "a .sarz file would get a raster's name (victim.tif)" in capsys.readouterr().err
    assert victim.read_bytes() == b"a GeoTIFF"


def test_existing_outputs_need_overwrite_and_non_files_are_never_replaced(sarz, tmp_path, old_tif, capsys):
    before = digest(old_tif)
    assert main(["-q", "decompress", str(sarz), str(old_tif)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert digest(old_tif) == before
    link = tmp_path / "link.tif"
    link.symlink_to(old_tif)
    assert main(["-q", "decompress", str(sarz), str(link)]) == 2  # a symlink is an existing output too
    assert "already exists" in capsys.readouterr().err
    fifo = tmp_path / "fifo.tif"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.tif"
    folder.mkdir()
    for target in (fifo, folder, Path("/dev/null")):
        assert main(["-q", "decompress", str(sarz), str(target), "--overwrite"]) == 2
        assert "is not a regular file" in capsys.readouterr().err
    assert Path("/dev/null").is_char_device() and fifo.is_fifo() and folder.is_dir()
    assert main(["-q", "decompress", str(sarz), str(link), "--overwrite"]) == 0  # follows the link
    assert link.is_symlink() and digest(old_tif) != before
    with rasterio.open(old_tif) as ds:
        assert ds.shape == (512, 512)


def test_the_files_behind_a_gdal_name_are_inputs_too(scene, tmp_path, capsys, monkeypatch):
    """A VRT's source, the file behind GTIFF_DIR:1:scene.tif and the archive behind /vsizip/ (relative, and GDAL's
    absolute form with two slashes) were not seen as the input: each run replaced it, even without --overwrite
    for a name that did not exist yet, and measured the reconstruction against itself (PSNR inf)."""
    import shutil
    import zipfile

    from osgeo import gdal

    monkeypatch.chdir(tmp_path)
    shutil.copy(scene, "scene.tif")
    gdal.Translate("sub.vrt", "scene.tif", format="VRT", srcWin=[0, 0, 64, 64])
    with zipfile.ZipFile("scene.zip", "w") as archive:
        archive.write("scene.tif", "inner.tif")
    before = {name: digest(tmp_path / name) for name in ("scene.tif", "scene.zip")}
    for source, output in (
        ("sub.vrt", ["c.sarz", "--reconstruction", "scene.tif"]),
        ("GTIFF_DIR:1:scene.tif", ["c.sarz", "--reconstruction", "scene.tif"]),
        ("/vsizip/scene.zip/inner.tif", ["scene.zip"]),
        (f"/vsizip/{tmp_path}/scene.zip/inner.tif", ["scene.zip"]),
    ):
        assert main(["-q", "compress", source, *output, "--overwrite"]) == 2, source
        err = capsys.readouterr().err
        assert f"is the input {source}'s source" in err and "writing it would destroy the input" in err, err
    assert {name: digest(tmp_path / name) for name in before} == before
    assert sorted(listing(tmp_path)) == ["scene.tif", "scene.zip", "sub.vrt"]


def test_an_overwrite_keeps_the_files_mode_and_drops_its_gdal_sidecars(sarz, scene, tmp_path):
    """--overwrite made a 0600 file 0644 (the umask's), and left the old file's NAME.ovr / NAME.aux.xml / NAME.msk,
    which GDAL and QGIS then applied to the new data (the old scene zoomed out, its statistics, a planted nodata)."""
    out = tmp_path / "d.tif"
    assert main(["-q", "decompress", str(sarz), str(out)]) == 0
    os.chmod(out, 0o600)
    for suffix in (".ovr", ".aux.xml", ".msk"):
        (tmp_path / f"d.tif{suffix}").write_bytes(b"the old file's")
    (tmp_path / "keep.tif.ovr").write_bytes(b"another file's")
    assert main(["-q", "decompress", str(sarz), str(out), "--overwrite"]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert listing(tmp_path) == ["d.tif", "keep.tif.ovr"]
    packed = tmp_path / "c.sarz"
    assert main(["-q", "compress", str(scene), str(packed)]) == 0
    os.chmod(packed, 0o640)
    assert main(["-q", "compress", str(scene), str(packed), "--overwrite", "--quality", "3"]) == 0
    assert stat.S_IMODE(packed.stat().st_mode) == 0o640


def test_a_deleted_files_gdal_sidecars_are_refused_or_replaced_not_applied_to_a_new_file(sarz, tmp_path, capsys):
    """A new output at a name whose earlier file was deleted, its NAME.ovr / NAME.aux.xml / NAME.msk left: GDAL
    read the old scene's overviews and statistics as the new file's (a .msk hid every pixel), no error. Now such a
    sidecar is refused without --overwrite (named), and removed with it."""
    out = tmp_path / "d.tif"
    (tmp_path / "d.tif.msk").write_bytes(b"a deleted file's mask")
    assert main(["-q", "decompress", str(sarz), str(out)]) == 2
    assert "d.tif.msk is there, GDAL's file of an earlier d.tif" in capsys.readouterr().err
    assert listing(tmp_path) == ["d.tif.msk"]
    assert main(["-q", "decompress", str(sarz), str(out), "--overwrite"]) == 0
    assert listing(tmp_path) == ["d.tif"]


def test_a_reconstruction_replaced_before_its_sarz_failed_is_put_back(scene, tmp_path, monkeypatch, capsys):
    """compress --reconstruction --overwrite puts the reconstruction in place first: where the .sarz then failed
    (its folder gone, a sidecar that could not be removed), the old reconstruction was lost beside the old .sarz,
    the pair mismatched. Now the old reconstruction is put back: a failure leaves neither."""
    from sar_compressor.engine import api

    packed, recon = tmp_path / "c.sarz", tmp_path / "c.tif"
    packed.write_bytes(b"the old .sarz")
    recon.write_bytes(b"the old reconstruction")
    (tmp_path / "c.tif.ovr").write_bytes(b"its overviews")  # removed with it, put back with it

    def refused(*args, **kwargs):
        raise OutputError("the .sarz could not be put in place")

    monkeypatch.setattr(api, "replace_into", refused)
    args = ["-q", "compress", str(scene), str(packed), "--reconstruction", str(recon), "--overwrite"]
    assert main(args) == 2
    assert packed.read_bytes() == b"the old .sarz" and recon.read_bytes() == b"the old reconstruction"
    assert listing(tmp_path) == ["c.sarz", "c.tif", "c.tif.ovr"]
    assert (tmp_path / "c.tif.ovr").read_bytes() == b"its overviews"
    monkeypatch.undo()
    assert main(args) == 0
    assert listing(tmp_path) == ["c.sarz", "c.tif"] and recon.read_bytes()[:2] in (b"II", b"MM")


def test_standard_output_is_refused(scene, sarz, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "compress", str(scene), "-"]) == 2
    assert main(["-q", "decompress", str(sarz), "-"]) == 2
    assert "'-' (standard output) is not supported" in capsys.readouterr().err
    assert listing(tmp_path) == []


def test_a_second_writer_is_refused_and_a_dead_ones_lock_is_taken_over(sarz, tmp_path, capsys):
    out = tmp_path / "out.tif"
    with output_paths.guarded_outputs([], [out], overwrite=False):  # a run in progress (this process)
        assert main(["-q", "decompress", str(sarz), str(out)]) == 2
        assert "is being written by another run" in capsys.readouterr().err
        assert not out.exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    here = write_lock.writer_id().split(" ", 1)[1]
    (tmp_path / ".out.tif.sarz-lock").write_text(f"{dead.stdout.strip()} {here}")  # left by a killed run
    assert main(["-q", "decompress", str(sarz), str(out)]) == 0
    assert listing(tmp_path) == ["out.tif"]
    (tmp_path / ".out.tif.sarz-lock").write_text(dead.stdout.strip())  # a killed 0.7.0's: its PID alone
    assert main(["-q", "decompress", str(sarz), str(out), "--overwrite"]) == 0
    assert listing(tmp_path) == ["out.tif"]


@pytest.mark.parametrize("where", ["other-host pid:[4026531836]", "HOST pid:[1]"])
def test_a_lock_of_another_host_or_container_is_never_taken_over(sarz, tmp_path, capsys, where):
    """A writer on another host sharing the folder, or in another PID namespace (a container), has a PID that
    means nothing here: it looked dead, and a second run took its lock and removed its temp file mid-write."""
    import socket

    out, lock = tmp_path / "out.tif", tmp_path / ".out.tif.sarz-lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(f"{dead.stdout.strip()} {where.replace('HOST', socket.gethostname())}")
    temp = tmp_path / f".out.tif.sarz-tmp.{dead.stdout.strip()}.0123abcd"
    temp.write_bytes(b"being written over there")
    assert main(["-q", "decompress", str(sarz), str(out)]) == 2
    assert f"remove it if no run is writing {out}" in capsys.readouterr().err
    assert sorted(listing(tmp_path)) == sorted([lock.name, temp.name])


def test_a_lock_that_cannot_be_written_is_not_left_behind(sarz, tmp_path, capsys, monkeypatch):
    """A full disk failed the lock's write: the empty lock left refused every retry for a minute, and the error
    named neither the file nor the lock."""
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fd, mode):
            self.f = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(write_lock.os, "fdopen", Full)
    out = tmp_path / "out.tif"
    assert main(["-q", "decompress", str(sarz), str(out)]) == 2
    assert f"cannot write {out}: No space left on device (writing its lock .out.tif.sarz-lock)" in (
        capsys.readouterr().err
    )
    monkeypatch.undo()
    assert listing(tmp_path) == []
    assert main(["-q", "decompress", str(sarz), str(out)]) == 0


def test_a_read_only_folder_is_named_before_any_work(sarz, tmp_path, capsys, monkeypatch):
    """A folder the user may not write in (faked: root ignores a folder's mode) is one clear line, not an errno."""
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(write_lock.LOCK_SUFFIX):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(write_lock.os, "open", read_only)
    out = tmp_path / "out.tif"
    assert main(["-q", "decompress", str(sarz), str(out)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {out}: Permission denied in {tmp_path}" in err and "Errno" not in err
    assert not out.exists()


# --------------------------------------------------------------------------- 3: disk full


def truncate_after_close(monkeypatch) -> None:
    """Simulate GDAL failing its last flush silently (a full disk, reported only in GDAL's log)."""
    close = StripWriter._close

    def close_then_truncate(self) -> None:
        close(self)
        size = self._tmp.stat().st_size
        with open(self._tmp, "r+b") as f:
            f.truncate(size // 2)

    monkeypatch.setattr(StripWriter, "_close", close_then_truncate)


@pytest.mark.parametrize("cog", [False, True])
def test_a_silently_failed_write_never_replaces_the_destination(sarz, old_tif, monkeypatch, capsys, cog):
    before = digest(old_tif)
    truncate_after_close(monkeypatch)
    argv = ["-q", "decompress", str(sarz), str(old_tif), "--overwrite"] + (["--cog"] if cog else [])
    assert main(argv) == 2
    assert "could not be written completely" in capsys.readouterr().err
    assert digest(old_tif) == before and listing(old_tif.parent) == ["old.tif"]


def test_a_damaged_block_in_any_block_row_fails_the_check(sarz, old_tif, monkeypatch, capsys):
    """The read-back is spread over threads (raster_io.CHECK_THREADS): a block every thread but the first reads
    must fail it too. The damaged block is the last block row's, which is not the first thread's."""
    monkeypatch.setattr("sar_compressor.engine.io.raster_io.CHECK_THREADS", 2)
    before, close = digest(old_tif), StripWriter._close

    def close_then_damage(self) -> None:
        close(self)
        with rasterio.open(self._tmp) as ds:
            last = (ds.height - 1) // self.blocksize
            assert last % 2 == 1  # the second thread's block row
            offset = int(ds.get_tag_item(f"BLOCK_OFFSET_0_{last}", "TIFF", bidx=1))
            size = int(ds.get_tag_item(f"BLOCK_SIZE_0_{last}", "TIFF", bidx=1))
        with open(self._tmp, "r+b") as f:
            f.seek(offset)
            f.write(b"\xff" * size)

    monkeypatch.setattr(StripWriter, "_close", close_then_damage)
    assert main(["-q", "decompress", str(sarz), str(old_tif), "--overwrite"]) == 2
    assert "could not be written completely" in capsys.readouterr().err
    assert digest(old_tif) == before and listing(old_tif.parent) == ["old.tif"]


def test_compress_is_all_or_nothing_when_the_reconstruction_fails(scene, sarz, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.sarz"
    out.write_bytes(sarz.read_bytes())
    truncate_after_close(monkeypatch)
    argv = ["-q", "compress", str(scene), str(out), "--reconstruction", str(tmp_path / "r.tif"), "--overwrite"]
    assert main(argv) == 2
    assert "r.tif could not be written completely" in capsys.readouterr().err
    assert digest(out) == digest(sarz) and listing(tmp_path) == ["out.sarz"]


def test_a_failed_sarz_write_leaves_the_old_file(scene, sarz, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.sarz"
    out.write_bytes(sarz.read_bytes())

    def disk_full(out_file, *args) -> None:
        out_file.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(container, "_write_stream", disk_full)
    argv = ["-q", "compress", str(scene), str(out), "--reconstruction", str(tmp_path / "r.tif"), "--overwrite"]
    assert main(argv) == 2
    said = capsys.readouterr().err  # the outputs named: a bare '[Errno 28] No space left on device' said none
    assert f"No space left on device ({out} not written; {tmp_path / 'r.tif'} not written)" in said
    assert digest(out) == digest(sarz) and listing(tmp_path) == ["out.sarz"]


def test_a_full_disk_after_the_outputs_says_they_are_written(scene, tmp_path, monkeypatch, capsys):
    """The summary printed to a full disk (stdout > /dev/full) after the .sarz was in place: the error must not
    call it 'not written' (a user could remove a good file)."""

    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "o.sarz"
    monkeypatch.setattr(sys, "stdout", Full())
    assert main(["-q", "compress", str(scene), str(out)]) == 2
    assert f"No space left on device ({out} written)" in capsys.readouterr().err and out.stat().st_size > 0


@pytest.fixture
def small_disk(tmp_path):
    """A 600 KiB tmpfs (root only: skipped where mount is refused)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_disk_full_on_a_real_small_disk(scene, sarz, small_disk, old_tif, capsys):
    """The 512x512 float32 scene decodes to ~0.9 MB: it cannot fit the 600 KiB disk."""
    dest = small_disk / "old.tif"
    dest.write_bytes(old_tif.read_bytes())
    before = digest(dest)
    for extra in ([], ["--cog"]):
        assert main(["-q", "decompress", str(sarz), str(dest), "--overwrite", *extra]) == 2
        assert "error:" in capsys.readouterr().err
        assert digest(dest) == before and listing(small_disk) == ["old.tif"]
    argv = ["-q", "compress", str(scene), str(small_disk / "c.sarz"), "--reconstruction", str(small_disk / "r.tif")]
    assert main(argv) == 2
    assert "r.tif" in capsys.readouterr().err
    assert listing(small_disk) == ["old.tif"]  # neither the .sarz nor a truncated reconstruction


# --------------------------------------------------------------------------- 4: signals


def start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sar_compressor", "-q", *argv], stderr=subprocess.PIPE)


def wait_for_temp(proc: subprocess.Popen, folder: Path, name: str) -> None:
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(f".{name}.sarz-tmp.") for p in folder.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its temp file showed"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def big_sarz(tmp_path_factory) -> Path:
    """Long enough to decode (a few seconds) for a signal to land mid-run."""
    src = tmp_path_factory.mktemp("signals") / "big.tif"
    assert main(["-q", "simulate", str(src), "--size", "2048", "1024"]) == 0
    assert main(["-q", "compress", str(src), str(src.with_suffix(".sarz"))]) == 0
    return src.with_suffix(".sarz")


def test_sigterm_cancels_like_ctrl_c(big_sarz, tmp_path):
    proc = start(["decompress", str(big_sarz), str(tmp_path / "out.tif")])
    try:
        wait_for_temp(proc, tmp_path, "out.tif")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert b"cancel" in err and b"Traceback" not in err
    assert listing(tmp_path) == []


def test_the_next_run_removes_a_killed_runs_temp_file(big_sarz, tmp_path):
    proc = start(["decompress", str(big_sarz), str(tmp_path / "out.tif")])
    try:
        wait_for_temp(proc, tmp_path, "out.tif")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)  # reaped: its pid is gone
    finally:
        proc.kill()
    left = listing(tmp_path)
    assert ".out.tif.sarz-lock" in left and any(".sarz-tmp." in n for n in left), left
    assert main(["-q", "decompress", str(big_sarz), str(tmp_path / "out.tif")]) == 0
    assert listing(tmp_path) == ["out.tif"]


# --------------------------------------------------------------------------- 6: verify


def test_verify_names_a_damaged_chunk(sarz, tmp_path, capsys):
    assert main(["verify", str(sarz)]) == 0
    assert "ok:" in capsys.readouterr().out
    bad = tmp_path / "bad.sarz"
    data = bytearray(sarz.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the chunks (the header is first, the index last)
    bad.write_bytes(bytes(data))
    assert main(["-q", "info", str(bad)]) == 0  # the header alone still reads
    capsys.readouterr()
    for argv in (["verify", str(bad)], ["info", "--verify", str(bad)]):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert re.search(r"chunk 1 of 1 damaged", err), err
    assert "format        .sarz v" in out  # info shows the header before the check fails (it showed nothing)
    assert main(["info", "--verify", "--json", str(bad)]) == 2
    assert re.search(r"failed: .*chunk 1 of 1 damaged", json.loads(capsys.readouterr().out)["verify"])


# --------------------------------------------------------------------------- 7, 8: documented inputs, kinds


@pytest.fixture(scope="module")
def cint16(tmp_path_factory) -> Path:
    """A Sentinel-1 SLC-like CInt16 raster (GDAL's complex_int16: numpy has no such type)."""
    from osgeo import gdal

    rng = np.random.default_rng(1)
    z = rng.normal(scale=300, size=(96, 80)) + 1j * rng.normal(scale=300, size=(96, 80))
    path = tmp_path_factory.mktemp("cint16") / "slc.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 80, 96, 1, gdal.GDT_CInt16)
    ds.GetRasterBand(1).WriteArray(z.astype(np.complex64))
    ds = None
    return path


@pytest.mark.parametrize("kind", [[], ["--kind", "complex"]])
def test_cint16_round_trip(cint16, tmp_path, capsys, kind):
    out, recon, back = tmp_path / "slc.sarz", tmp_path / "r.tif", tmp_path / "d.tif"
    assert main(["-q", "compress", str(cint16), str(out), "--reconstruction", str(recon), *kind]) == 0
    said = capsys.readouterr()
    assert "PSNR" in said.out
    assert "band 1 is complex (SLC): the .sarz keeps the intensity |z|^2, not the phase" in said.err  # said, not found
    assert main(["-q", "decompress", str(out), str(back)]) == 0
    with rasterio.open(cint16) as src, rasterio.open(back) as ds:
        intensity = np.abs(src.read(1)) ** 2
        decoded = ds.read(1)
    assert decoded.dtype == np.float32
    assert 0.8 < decoded.mean() / intensity.mean() < 1.25


def test_inspect_gives_a_complex_rasters_range_as_its_intensity(cint16):
    """Complex pixels have no order: inspect skipped their range and said "no valid value" of a valid SLC. It
    gives the range of |z|^2, what compression codes and decompression returns, and says so."""
    from sar_compressor.engine.inspect import inspect_input
    from sar_compressor.ui.input_summary import summary_html

    with rasterio.open(cint16) as src:
        intensity = np.abs(src.read(1).astype(np.complex128)) ** 2
    summary = inspect_input(cint16)
    valid = intensity[intensity > 0]  # exact zeros are no-signal fill
    assert (summary.vmin, summary.vmax) == pytest.approx((valid.min(), valid.max()), rel=1e-6)
    assert summary.lines()[2].startswith(f"intensity |z|^2 {summary.vmin:g} .. {summary.vmax:g};")
    assert f"intensity |z|^2 {summary.vmin:.4g} … {summary.vmax:.4g}" in summary_html(summary)


def test_a_geotiff_is_never_written_under_another_formats_name(sarz, scene, tmp_path, capsys):
    """decompress and simulate wrote GeoTIFFs named x.sarz or x.png (which batch and the plugin then took for what
    the name says), where compress refuses a .sarz named .tif; the reconstruction too."""
    for argv in (
        ["decompress", str(sarz), str(tmp_path / "x.sarz")],
        ["decompress", str(sarz), str(tmp_path / "x.png")],
        ["simulate", str(tmp_path / "s.sarz"), "--size", "32", "32"],
        ["compress", str(scene), str(tmp_path / "c.sarz"), "--reconstruction", str(tmp_path / "r.sarz")],
    ):
        assert main(["-q", *argv]) == 2
        assert "a GeoTIFF would get another format's name" in capsys.readouterr().err
    assert listing(tmp_path) == []
    assert main(["-q", "decompress", str(sarz), str(tmp_path / "plain")]) == 0  # no suffix: written as named


def test_kinds_that_contradict_the_data_type_are_refused(cint16, scene, tmp_path, capsys):
    """native too: it coded a complex raster's real part alone (numpy's ComplexWarning the only sign); the array
    API refuses as the file API does."""
    from sar_compressor.engine.api import compress_array

    for kind in ("amplitude", "intensity", "db", "native"):
        assert main(["-q", "compress", str(cint16), str(tmp_path / "x.sarz"), "--kind", kind]) == 2
        refusal = f"kind '{kind}' does not fit a complex"
        assert refusal in capsys.readouterr().err
        assert main(["inspect", str(cint16), "--kind", kind]) == 2  # inspect reports what compress refuses
        assert f"refused: {refusal}" in capsys.readouterr().out
    assert main(["-q", "compress", str(scene), str(tmp_path / "x.sarz"), "--kind", "complex"]) == 2
    assert "kind 'complex' needs a complex raster" in capsys.readouterr().err
    assert main(["inspect", str(scene), "--kind", "complex"]) == 2
    assert "refused: kind 'complex' needs a complex raster" in capsys.readouterr().out
    assert listing(tmp_path) == []
    with pytest.raises(InputError, match="kind 'native' does not fit a complex"):
        compress_array(np.ones((8, 8), np.complex64), kind="native")


def test_tall_narrow_raster_round_trip(tmp_path, capsys):
    """65 536 rows or more in one strip (width <= 64) overflowed the chunk's u16 row count."""
    rng = np.random.default_rng(2)
    src = write_raster(tmp_path / "tall.tif", rng.exponential(size=(65600, 4)).astype("float32"), "float32")
    out, back = tmp_path / "tall.sarz", tmp_path / "back.tif"
    assert main(["-q", "compress", str(src), str(out)]) == 0
    assert main(["-q", "decompress", str(out), str(back)]) == 0
    assert main(["verify", str(out)]) == 0
    with rasterio.open(back) as ds:
        assert ds.shape == (65600, 4)


# --------------------------------------------------------------------------- 9: smaller items


def test_quality_and_target_bpp_together_are_refused(scene, tmp_path, capsys):
    assert main(["-q", "compress", str(scene), str(tmp_path / "x.sarz"), "--quality", "3", "--target-bpp", "1"]) == 2
    assert "either --quality or --target-bpp" in capsys.readouterr().err
    assert listing(tmp_path) == []


def test_one_pixel_raster_prints_a_real_ratio(tmp_path, capsys):
    src = write_raster(tmp_path / "one.tif", np.ones((1, 1), "float32"), "float32")
    assert main(["-q", "compress", str(src), str(tmp_path / "one.sarz")]) == 0
    ratio = re.search(r"ratio (\S+):1", capsys.readouterr().out).group(1)
    assert 0 < float(ratio) < 0.1


def test_stale_temp_files_of_dead_runs_only_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    names = [
        f".x.sarz.sarz-tmp.{pid}.ab12cd34",  # a killed writer's temp
        f"..x.sarz.sarz-tmp.{pid}.ab12cd34.0123456789ab.tmp",  # the container's own temp inside a staged .sarz
        f".x.sarz.sarz-tmp.{os.getpid()}.ab12cd34",  # a live run's (this process)
        f".y.sarz.sarz-tmp.{pid}.ab12cd34",  # another destination's
        "x.sarz",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    removed = output_paths.remove_stale_temps(tmp_path / "x.sarz")
    assert sorted(p.name for p in removed) == sorted(names[:2])
    assert listing(tmp_path) == sorted(names[2:])


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_a_file_that_appears_while_a_run_writes_is_not_replaced(command, scene, sarz, tmp_path, capsys, monkeypatch):
    """Another program (which takes no lock) wrote the destination during the run: the run's last rename replaced
    it, exit 0, though --overwrite was not given. Now it is refused and the run's temp file removed."""
    from sar_compressor.engine import api
    from sar_compressor.engine.io import raster_io

    out = tmp_path / ("x.sarz" if command == "compress" else "x.tif")
    module = api if command == "compress" else raster_io  # where the .sarz / the GeoTIFF goes into place
    real = module.replace_into

    def meanwhile(tmp, dest, overwrite=True):
        Path(dest).write_text("precious user file")
        real(tmp, dest, overwrite)

    monkeypatch.setattr(module, "replace_into", meanwhile)
    source = scene if command == "compress" else sarz
    extra = ["--reconstruction", str(tmp_path / "r.tif")] if command == "compress" else []
    assert main(["-q", command, str(source), str(out), *extra]) == 2
    assert "appeared while it was being written (not by this tool); not replaced" in capsys.readouterr().err
    assert out.read_text() == "precious user file" and listing(tmp_path) == [out.name]  # all or nothing


@pytest.mark.parametrize("name", ["é" * 120, "雪" * 80])
def test_a_long_non_ascii_file_name_is_written(scene, tmp_path, name):
    """File systems count bytes: 120 'é' (240 bytes) still failed with "File name too long" when the temp names
    were cut by characters."""
    assert main(["-q", "compress", str(scene), str(tmp_path / f"{name}.sarz")]) == 0
    assert main(["-q", "vrt", str(tmp_path / f"{name}.sarz")]) == 0  # its VRT's temp names too
    assert f"{name}.sarz" in listing(tmp_path)
    assert main(["-q", "vrt", str(tmp_path / f"{name}.sarz")]) == 0  # again: its VRTs' sidecars' names too long
    longest = tmp_path / f"{'é' * 125}.sarz"  # 255 bytes: NAME.aux.xml cannot exist, and an overwrite said so (exit 2)
    for _ in range(2):
        assert main(["-q", "compress", str(scene), str(longest), "--overwrite"]) == 0


def test_a_vrt_read_as_the_input_guards_its_sarz(scene, tmp_path, capsys):
    """This tool's VRT of a .sarz (what QGIS opens a .sarz as) given as the input, its .sarz as the output: GDAL
    lists only the VRT's own files, and the .sarz was replaced (9847 -> 1150 bytes), its VRT then broken."""
    sarz = tmp_path / "s.sarz"
    assert main(["-q", "compress", str(scene), str(sarz)]) == 0
    assert main(["-q", "vrt", str(sarz)]) == 0
    before = digest(sarz)
    assert main(["-q", "compress", f"{sarz}.vrt", str(sarz), "--overwrite"]) == 2
    assert "writing it would destroy the input" in capsys.readouterr().err
    assert digest(sarz) == before


def test_a_long_file_name_is_written(scene, sarz, tmp_path, capsys):
    """Temp and lock names add up to 45 characters: a 213-character name failed with "File name too long" naming a
    file the user never asked for. Long names are shortened there (with a hash), and found again by the clean-up."""
    name = "b" * 236
    assert main(["-q", "compress", str(scene), str(tmp_path / f"{name}.sarz")]) == 0
    assert main(["-q", "decompress", str(sarz), str(tmp_path / f"{name}.tif")]) == 0
    assert listing(tmp_path) == [f"{name}.sarz", f"{name}.tif"]
    left = output_paths.temp_path(tmp_path / f"{name}.tif")  # as a killed run leaves it
    left.with_name(left.name.replace(str(os.getpid()), "999999999")).write_bytes(b"stale")
    assert main(["-q", "decompress", str(sarz), str(tmp_path / f"{name}.tif"), "--overwrite"]) == 0
    assert listing(tmp_path) == [f"{name}.sarz", f"{name}.tif"]


@pytest.mark.parametrize(
    ("handle", "error", "exit_code", "alive"),
    [(7, 0, 259, True), (7, 0, 0, False), (0, 87, 0, False), (0, 5, 0, True)],
)
def test_a_windows_writer_is_asked_for_its_exit_code_not_sent_ctrl_c(monkeypatch, handle, error, exit_code, alive):
    """On Windows os.kill(pid, 0) sends CTRL_C_EVENT to a console process group (or kills the process): a lock's
    liveness check must ask the process's exit code instead (STILL_ACTIVE 259; a process we may not open exists)."""
    import ctypes

    class Call:  # a ctypes function: callable, with restype and argtypes to set
        def __init__(self, run):
            self.run = run

        def __call__(self, *args):
            return self.run(*args)

    def exit_code_of(h, code):
        code._obj.value = exit_code
        return 1

    class Kernel32:
        def __init__(self, name, use_last_error=False):
            assert name == "kernel32" and use_last_error
            self.OpenProcess = Call(lambda access, inherit, pid: handle)  # noqa: N815 (Windows API names)
            self.GetExitCodeProcess = Call(exit_code_of)  # noqa: N815
            self.CloseHandle = Call(lambda h: 1)  # noqa: N815

    monkeypatch.setattr(write_lock.os, "name", "nt")
    monkeypatch.setattr(write_lock.os, "kill", lambda *a: pytest.fail("os.kill on Windows"))
    monkeypatch.setattr(ctypes, "WinDLL", Kernel32, raising=False)
    monkeypatch.setattr(ctypes, "get_last_error", lambda: error, raising=False)
    assert write_lock.pid_alive(12345) is alive


def test_a_dead_lock_taken_over_by_another_run_first_stays_that_runs(tmp_path):
    """Two runs judged one dead lock: the first removed it and made its own, the second then removed that one, and
    both held the lock. A lock is now removed only if it is still the one judged, under a takeover marker; a run
    that finds the marker taken judges again; a writer removes its lock at the end only if it is its own."""
    lock, dest = tmp_path / ".out.tif.sarz-lock", tmp_path / "out.tif"
    lock.write_text("999999999")  # a dead writer's
    judged = write_lock._judge(lock)
    assert judged == write_lock._identity(lock)
    lock.unlink()
    lock.write_text(write_lock.writer_id() + " ")  # the first run's, made meanwhile (often with the same inode)
    mine = write_lock._identity(lock)
    write_lock._take_over(lock, judged, dest)  # the second run, late
    assert write_lock._identity(lock) == mine and listing(tmp_path) == [lock.name]
    marker = tmp_path / f"{lock.name}.takeover"
    marker.write_text("")  # a third run taking it over right now
    write_lock._take_over(lock, mine, dest)
    assert lock.exists()  # left to that run
    os.utime(marker, (1.0, 1.0))  # ... which died doing it: stale
    write_lock._take_over(lock, mine, dest)
    write_lock._take_over(lock, mine, dest)  # judged right: removed
    assert listing(tmp_path) == []
    with write_lock.holding(lock, dest):
        lock.unlink()
        lock.write_text("another run's")
    assert lock.read_text() == "another run's"  # not removed at the end: not this run's


@pytest.mark.parametrize("content", [b"123 somehost", b"\xff\xfe\x00", b"99999999999999999999", b""])
def test_a_lock_that_cannot_be_read_is_judged_by_its_age(tmp_path, content):
    """A lock of two fields, of bytes that are not text, or of a PID too large for the system ended in a traceback
    (ValueError, UnicodeDecodeError, OverflowError): it is held while young and taken over when old."""
    lock, dest = tmp_path / ".out.tif.sarz-lock", tmp_path / "out.tif"
    lock.write_bytes(content)
    with pytest.raises(OutputError, match="is being written by another run"), write_lock.holding(lock, dest):
        pass
    os.utime(lock, (1.0, 1.0))
    with write_lock.holding(lock, dest):
        assert lock.read_text() == write_lock.writer_id()


def test_a_folder_where_the_lock_goes_is_an_error_not_a_traceback(tmp_path):
    lock = tmp_path / ".out.tif.sarz-lock"
    lock.mkdir()
    with pytest.raises(OutputError, match="is being written by another run"), write_lock.holding(lock, "out.tif"):
        pass


def test_a_dead_lock_in_a_folder_this_run_may_not_write_is_an_error(tmp_path, monkeypatch):
    """Taking a dead writer's lock over in a read-only folder raised a raw PermissionError (a traceback in QGIS)."""
    lock = tmp_path / ".out.tif.sarz-lock"
    lock.write_text("999999999")
    real_open = os.open

    def read_only(path, flags, *args):
        if flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(write_lock.os, "open", read_only)
    refused = pytest.raises(OutputError, match=r"cannot write out.tif: Permission denied in")
    with refused, write_lock.holding(lock, "out.tif"):
        pass


def test_a_lock_of_an_earlier_boot_is_taken_over_and_a_new_one_kept(tmp_path):
    """The same host name and namespace, another boot: a lock older than this boot is a crashed run's (taken over);
    a newer one is another machine's with the same name (kept: its PID means nothing here)."""
    host, namespace, boot = write_lock.writer_id().split(" ")[1:]
    lock = tmp_path / ".out.tif.sarz-lock"
    lock.write_text(f"{os.getpid()} {host} {namespace} another-boot")
    assert write_lock._judge(lock) == write_lock._HELD  # written now: after this boot
    os.utime(lock, (1.0, 1.0))  # written in 1970: before this boot
    assert write_lock._judge(lock) == write_lock._identity(lock)


def test_a_sarz_given_where_a_raster_is_read_is_named(sarz, scene, capsys):
    """inspect, evaluate and compress said GDAL's "not recognized as a supported file format" for a .sarz."""
    for argv in (["inspect", str(sarz)], ["evaluate", str(scene), str(sarz)], ["evaluate", str(sarz), str(scene)]):
        assert main(["-q", *argv]) == 2
        assert f"{sarz} is a .sarz (compressed by this tool), not a raster: decompress it first" in (
            capsys.readouterr().err
        )


def test_a_complex_band_decodes_as_intensity_and_its_scale_is_named(tmp_path, capsys):
    """An SLC whose GDAL unit said amplitude decoded to intensity still labelled amplitude (inspect then took the
    decoded file for amplitude), and its GDAL scale was dropped without a word (the intensity 4 times lower)."""
    z = (np.random.default_rng(1).normal(size=(48, 64)) + 1j).astype(np.complex64)
    src = tmp_path / "slc.tif"
    with rasterio.open(src, "w", driver="GTiff", width=64, height=48, count=1, dtype="complex64") as ds:
        ds.write(z, 1)
        ds.scales, ds.units = (2.0,), ("amplitude",)
    recon = tmp_path / "r.tif"
    assert main(["-q", "compress", str(src), str(tmp_path / "s.sarz"), "--reconstruction", str(recon)]) == 0
    assert "band 1 (scale 2, offset 0): a complex band's GDAL scale and offset are not applied" in (
        capsys.readouterr().err
    )
    assert main(["-q", "decompress", str(tmp_path / "s.sarz"), str(tmp_path / "d.tif")]) == 0
    for path in (tmp_path / "d.tif", recon):  # the reconstruction kept the SLC's unit and scale (GDAL halved it)
        with rasterio.open(path) as ds:
            assert ds.units == ("intensity",) and ds.dtypes[0] == "float32"
            assert ds.scales == (1.0,) and ds.offsets == (0.0,)
    assert main(["inspect", str(tmp_path / "d.tif")]) == 0
    assert "kind intensity" in capsys.readouterr().out


def test_a_held_file_is_put_back_only_over_what_the_run_put_there(tmp_path):
    """put_back moved the held copy over whatever the name held: a file the user put there meanwhile was replaced by
    the old one, a deleted one came back; the sidecars' links were named so that no clean-up found them."""
    recon = tmp_path / "r.tif"
    recon.write_bytes(b"old")
    (tmp_path / "r.tif.ovr").write_bytes(b"old overviews")
    kept = output_paths.held_back(recon)
    assert {path for path, _ in output_paths.temp_files(recon)} == {link for link, _ in kept}  # found after a kill
    recon.unlink()
    recon.write_bytes(b"the user's")  # not the run's: left as it is
    output_paths.put_back(kept, placed=(0, 0))
    assert recon.read_bytes() == b"the user's" and listing(tmp_path) == ["r.tif", "r.tif.ovr"]
    kept = output_paths.held_back(recon)
    (tmp_path / "r.tif.ovr").unlink()  # what the run does: its sidecars removed, its file put in place
    (tmp_path / "new").write_bytes(b"the run's")
    os.replace(tmp_path / "new", recon)
    output_paths.put_back(kept, placed=output_paths.file_identity(recon))
    assert recon.read_bytes() == b"the user's" and (tmp_path / "r.tif.ovr").read_bytes() == b"old overviews"
    assert listing(tmp_path) == ["r.tif", "r.tif.ovr"]
    kept = output_paths.held_back(recon)  # its sidecars removed, then the run's file failed to go in: they come back
    (tmp_path / "r.tif.ovr").unlink()
    output_paths.put_back(kept, placed=None)
    assert (tmp_path / "r.tif.ovr").read_bytes() == b"old overviews" and listing(tmp_path) == ["r.tif", "r.tif.ovr"]
