"""GDAL opens a .sarz through its VRT (issue 18): gdalinfo, gdal_translate (window and overview) and rasterio,
run as separate processes with the Python-VRT options set, read what decode_window gives; a corrupt tile fails
that read with the ContainerError's message and leaves other reads working."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

import sar_compressor
from sar_compressor.engine import api, cli, gdal_vrt
from sar_compressor.engine.codec.format import layout
from sar_compressor.engine.codec.format.container import ContainerReader
from sar_compressor.engine.codec.passes.window_decode import SarzWindowReader, decode_window
from sar_compressor.engine.errors import InputError, OutputError
from sar_compressor.engine.gdal_vrt import ENVIRONMENT, write_vrt
from sar_compressor.engine.simulate import simulate_scene, write_scene

pytestmark = pytest.mark.skipif(shutil.which("gdal_translate") is None, reason="GDAL command-line tools are absent")


@functools.lru_cache(maxsize=1)
def _package_parent() -> str:
    """A folder holding `sar_compressor`: the checkout's parent when the checkout is named so (a plugin folder),
    else a temporary folder with a link of that name to the checkout (a clone named otherwise)."""
    root = Path(sar_compressor.__file__).resolve().parent
    if root.name == "sar_compressor":
        return str(root.parent)
    folder = Path(tempfile.mkdtemp(prefix="sarz-pkg-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # the link only: rmtree does not follow it
    (folder / "sar_compressor").symlink_to(root, target_is_directory=True)
    return str(folder)


def _env() -> dict[str, str]:
    """The Python-VRT options, and the package and its dependencies importable by GDAL's embedded Python."""
    import constriction

    paths = [_package_parent(), str(Path(constriction.__file__).parents[1])]
    return {**os.environ, **ENVIRONMENT, "PYTHONPATH": os.pathsep.join(paths)}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=300)


@pytest.fixture(scope="module")
def sarz(tmp_path_factory) -> Path:
    """A georeferenced 300x420 scene in 128-pixel tiles (3x4 tiles), with its VRTs."""
    folder = tmp_path_factory.mktemp("vrt")
    src = write_scene(folder / "s.tif", 300, 420, seed=5)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(layout, "TILE", 128)
        api.compress_file(src, folder / "s.sarz", quality=3)
    write_vrt(folder / "s.sarz")
    return folder / "s.sarz"


def test_gdalinfo_shows_georeferencing_blocks_and_overviews(sarz):
    done = _run("gdalinfo", str(sarz) + ".vrt")
    assert done.returncode == 0, done.stderr
    with rasterio.open(sarz.with_name("s.tif")) as ds:
        crs_name, transform = ds.crs.to_string(), ds.transform
    assert "Size is 420, 300" in done.stdout and "Block=128x128 Type=Float32" in done.stdout
    assert "Overviews: 210x150, 105x75, 53x38" in done.stdout
    assert f"Pixel Size = ({transform.a:.15f},{transform.e:.15f})" in done.stdout
    assert crs_name.split(":")[-1] in done.stdout


def test_gdal_translate_window_and_overview_equal_decode_window(sarz, tmp_path):
    full = api.decompress_array(sarz)
    window = ("-srcwin", "100", "90", "200", "150")
    done = _run("gdal_translate", "-q", *window, str(sarz) + ".vrt", str(tmp_path / "w.tif"))
    assert done.returncode == 0, done.stderr
    with rasterio.open(tmp_path / "w.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), full[90:240, 100:300])
        assert ds.crs is not None and ds.transform.c != 0.0
    done = _run("gdal_translate", "-q", "-ovr", "1", str(sarz) + ".vrt", str(tmp_path / "o.tif"))
    assert done.returncode == 0, done.stderr
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert (ds.width, ds.height) == (105, 75)
        np.testing.assert_array_equal(ds.read(1), decode_window(sarz, (0, 0, 105, 75), level=2))


def test_rasterio_reads_windows_and_overviews(sarz):
    code = (
        "import sys, rasterio, numpy as np\n"
        "from rasterio.windows import Window\n"
        f"with rasterio.open({str(sarz) + '.vrt'!r}) as ds:\n"
        "    np.save(sys.argv[1], ds.read(1, window=Window(7, 250, 400, 50)))\n"
        f"with rasterio.open({str(sarz) + '.vrt'!r}, overview_level=0) as ds:\n"
        "    np.save(sys.argv[2], ds.read(1))\n"
    )
    out = sarz.parent
    done = _run(sys.executable, "-c", code, str(out / "w.npy"), str(out / "o.npy"))
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(out / "w.npy"), api.decompress_array(sarz)[250:300, 7:407])
    np.testing.assert_array_equal(np.load(out / "o.npy"), decode_window(sarz, (0, 0, 210, 150), level=1))


def test_a_smaller_buffer_is_read_at_the_matching_overview(sarz):
    """QGIS asks the derived band for a buffer smaller than the window when zoomed out: read at the coarsest
    level at least as fine, sampled to the buffer."""
    with SarzWindowReader(sarz) as reader:
        got = gdal_vrt._resampled(reader, (0, 0, 420, 300), 0, (75, 105))
        np.testing.assert_array_equal(got, reader.read((0, 0, 105, 75), 2))
        got = gdal_vrt._resampled(reader, (128, 0, 256, 256), 0, (100, 100))  # 2.56x: level 1, nearest
        assert got.shape == (100, 100)
        np.testing.assert_array_equal(got[0, :3], reader.read((64, 0, 128, 128), 1)[0, [0, 1, 3]])


def test_a_corrupt_tile_fails_its_read_with_a_clear_error(sarz, tmp_path):
    bad = tmp_path / "bad.sarz"
    data = bytearray(sarz.read_bytes())
    with ContainerReader(sarz) as reader:
        data[reader._offsets[5] + 20] ^= 0xFF  # tile 5: row 1, column 1 (pixels 128..255 both ways)
    bad.write_bytes(bytes(data))
    write_vrt(bad)
    done = _run("gdal_translate", "-q", "-srcwin", "130", "130", "10", "10", str(bad) + ".vrt", str(tmp_path / "x.tif"))
    assert done.returncode != 0
    assert "chunk 6 of 12 does not belong to this file or is corrupt" in done.stderr
    assert done.stderr.count('File "') <= 2, done.stderr  # the chunk's error, not the decoder's 25-line traceback
    done = _run("gdal_translate", "-q", "-srcwin", "0", "0", "100", "100", str(bad) + ".vrt", str(tmp_path / "y.tif"))
    assert done.returncode == 0, done.stderr


def test_a_vrt_whose_sarz_is_gone_says_so(sarz, tmp_path):
    """A .sarz moved or deleted after its VRT was written: the read fails with what happened and what to do, not
    with an os.stat error from inside the reader."""
    moved = tmp_path / "moved.sarz"
    shutil.copy(sarz, moved)
    write_vrt(moved)
    moved.rename(tmp_path / "elsewhere.sarz")
    done = _run("gdal_translate", "-q", "-srcwin", "0", "0", "10", "10", str(moved) + ".vrt", str(tmp_path / "z.tif"))
    assert done.returncode != 0
    assert f"{moved} is gone (moved or deleted?): this VRT decodes it" in done.stderr
    assert "os.stat" not in done.stderr


def test_a_moved_folders_vrts_are_written_again_by_the_vrt_command_and_only_for_the_same_file(sarz, tmp_path):
    """A folder moved with its .sarz and VRTs: the VRTs name the old path, and their error says to run `vrt` on the
    .sarz where it is now, which refused ("exists and is not a VRT of"). Now it rewrites VRTs written for this very
    file (its id), and still refuses one written for another file."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    shutil.copy(sarz, old / "m.sarz")
    paths = write_vrt(old / "m.sarz")
    old.rename(new)
    assert cli.main(["-q", "vrt", str(new / "m.sarz")]) == 0
    done = _run(
        "gdal_translate", "-q", "-srcwin", "0", "0", "10", "10", str(new / "m.sarz.vrt"), str(tmp_path / "z.tif")
    )
    assert done.returncode == 0, done.stderr
    assert str(old) not in "".join((new / p.name).read_text() for p in paths)
    other = tmp_path / "other"
    other.mkdir()
    small = write_scene(tmp_path / "small.tif", 60, 70, seed=2)
    api.compress_file(small, other / "m.sarz", quality=3)
    write_vrt(other / "m.sarz")
    shutil.copy(other / "m.sarz.vrt", new / "m.sarz.vrt")  # another file's VRT under this name
    assert cli.main(["-q", "vrt", str(new / "m.sarz")]) == 2


def test_a_moved_vrt_that_gdal_wrote_back_with_histograms_is_written_again(sarz, tmp_path):
    """GDAL writes an open VRT back with statistics and histograms (issue 3222): QGIS's put a dual-pol layer's pixel
    functions 500 KB into the file, past the 64 KB the check read, so its project moved and the VRT was refused."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    shutil.copy(sarz, old / "m.sarz")
    vrt = write_vrt(old / "m.sarz")[0]
    buckets = " ".join(["12345"] * 20000)  # as GDAL writes a histogram's counts
    histograms = f"<Histograms><HistItem><Buckets>{buckets}</Buckets></HistItem></Histograms>"
    text = vrt.read_text()
    vrt.write_text(text.replace("<PixelFunctionType>", histograms + "<PixelFunctionType>", 1))
    assert vrt.read_text().index("file_id=") > 65536
    old.rename(new)
    assert cli.main(["-q", "vrt", str(new / "m.sarz")]) == 0
    assert str(old) not in (new / "m.sarz.vrt").read_text()


def test_a_vrt_whose_sarz_was_replaced_says_so_and_is_written_again_whole(sarz, tmp_path):
    """compress --overwrite put another raster under the VRT's .sarz: reads failed with a traceback ("window ... is
    not inside the 256x256 raster"); writing the VRT again left the larger raster's overview VRTs behind."""
    first = tmp_path / "st.sarz"
    shutil.copy(sarz, first)
    paths = write_vrt(first)
    small = write_scene(tmp_path / "small.tif", 60, 70, seed=2)
    api.compress_file(small, first, quality=3)  # what compress --overwrite does to it
    done = _run("gdal_translate", "-q", "-srcwin", "0", "0", "10", "10", str(paths[0]), str(tmp_path / "z.tif"))
    assert done.returncode != 0
    assert f"{first} is another file than this VRT was written for" in done.stderr
    again = write_vrt(first)
    assert len(again) < len(paths) and not any(p.exists() for p in paths[len(again) :])
    with rasterio.open(again[0]) as ds:
        assert (ds.height, ds.width) == (60, 70)


def test_vrt_command_replaces_only_its_own_vrts(sarz, tmp_path, capsys):
    out = tmp_path / "mine.vrt"
    assert cli.main(["-q", "vrt", str(sarz), str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.ov1.vrt", "mine.ov2.vrt", "mine.ov3.vrt", "mine.vrt"]
    assert cli.main(["-q", "vrt", str(sarz), str(out)]) == 0  # its own VRT: written again
    user = tmp_path / "user.vrt"
    user.write_text("not mine")
    assert cli.main(["-q", "vrt", str(sarz), str(user)]) == 2
    assert "user.vrt exists and is not a VRT of" in capsys.readouterr().err
    assert user.read_text() == "not mine"
    assert cli.main(["vrt", "--help"]) == 0
    assert "GDAL_VRT_PYTHON_TRUSTED_MODULES=sar_compressor.engine.gdal_vrt" in capsys.readouterr().out


def test_every_band_of_a_multiband_file_is_a_vrt_band(tmp_path):
    """A two-band (VV/VH-like) .sarz: one VRT band per band, in source order, each with its description; a
    window of band 2 read by gdal_translate equals decode_window of that band."""
    src = tmp_path / "dual.tif"
    first = write_scene(tmp_path / "vv.tif", 200, 260, seed=8)
    with rasterio.open(first) as ds:
        vv, profile = ds.read(1), ds.profile
    profile.update(count=2)
    with rasterio.open(src, "w", **profile) as ds:
        ds.write(np.stack([vv, 0.2 * vv * np.random.default_rng(1).gamma(4.0, 0.25, vv.shape).astype(vv.dtype)]))
        ds.set_band_description(1, "VV")
        ds.set_band_description(2, "VH")
    api.compress_file(src, tmp_path / "dual.sarz", quality=4)
    write_vrt(tmp_path / "dual.sarz")
    info = _run("gdalinfo", str(tmp_path / "dual.sarz.vrt"))
    assert info.returncode == 0, info.stderr
    assert "Band 2 Block=" in info.stdout and "Description = VH" in info.stdout
    out = tmp_path / "vh.tif"
    done = _run(
        "gdal_translate", "-q", "-b", "2", "-srcwin", "30", "20", "100", "90", str(tmp_path / "dual.sarz.vrt"), str(out)
    )
    assert done.returncode == 0, done.stderr
    with rasterio.open(out) as ds:
        got = ds.read(1)
    np.testing.assert_array_equal(got, decode_window(tmp_path / "dual.sarz", (30, 20, 100, 90), band=2))


def test_the_vrt_of_a_gcp_product_opens_with_its_gcps(tmp_path):
    """A GCP CRS's WKT holds double quotes: the GCPList's Projection attribute must escape them (it broke every
    GCP product's VRT, and so its layer in QGIS)."""
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    intensity, _ = simulate_scene(120, 100, looks=2, seed=1)
    gcps = [GroundControlPoint(row=r, col=c, x=12 + c * 1e-4, y=45 - r * 1e-4) for r in (0, 119) for c in (0, 99)]
    src = tmp_path / "g.tif"
    with rasterio.open(src, "w", driver="GTiff", width=100, height=120, count=1, dtype="float32") as ds:
        ds.write(intensity.astype(np.float32), 1)
        ds.gcps = (gcps, CRS.from_epsg(4326))
    api.compress_file(src, tmp_path / "g.sarz")
    for vrt in write_vrt(tmp_path / "g.sarz"):
        with rasterio.open(vrt) as ds:
            points, crs = ds.gcps
            assert len(points) == 4 and crs == CRS.from_epsg(4326)
    assert _run("gdalinfo", "-stats", str(tmp_path / "g.sarz.vrt")).returncode == 0


def test_a_vrt_with_much_metadata_can_be_written_again(tmp_path):
    """The VRT's own marker comes first: a replaced VRT is recognised from its first 64 KiB, which a source's tags
    (now carried into the VRT) may fill."""
    src = write_scene(tmp_path / "t.tif", 64, 80, seed=2)
    with rasterio.open(src, "r+") as ds:
        ds.update_tags(**{f"TAG_{i}": "x" * 100 for i in range(700)})
    api.compress_file(src, tmp_path / "t.sarz")
    write_vrt(tmp_path / "t.sarz")
    assert write_vrt(tmp_path / "t.sarz")[0].stat().st_size > 65536


def test_a_vrt_that_cannot_be_written_whole_leaves_none(sarz, tmp_path, monkeypatch):
    """A full disk while the overview VRTs were written left the main VRT (written first) naming overviews that
    were never written: gdalinfo reported them missing and overview reads failed."""
    from pathlib import Path as RealPath

    real_write, written = RealPath.write_text, []

    def fills_up(self, text, *args, **kwargs):
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        written.append(self.name)
        return real_write(self, text, *args, **kwargs)

    monkeypatch.setattr(RealPath, "write_text", fills_up)
    with pytest.raises(OutputError, match=r"cannot write .*v\.ov2\.vrt: No space left on device in "):
        write_vrt(sarz, tmp_path / "v.vrt")  # said of the VRT, not of its temp file
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    assert [p.name for p in write_vrt(sarz, tmp_path / "v.vrt")] == ["v.vrt", "v.ov1.vrt", "v.ov2.vrt", "v.ov3.vrt"]
    with pytest.raises(InputError, match=r"v\.tif: a VRT's name ends in \.vrt"):  # VRT XML under a GeoTIFF's name
        write_vrt(sarz, tmp_path / "v.tif")
    assert not (tmp_path / "v.tif").exists()


def test_a_vrt_written_through_a_symlink_to_another_file_system(sarz, tmp_path):
    """The temp files sat beside the link and moved onto its target on another file system: 'Invalid cross-device
    link', with some overview VRTs already moved. Now they sit beside the target."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system at /dev/shm")
    target = Path(tempfile.mkdtemp(dir=shm))
    try:
        write_vrt(sarz, target / "v.vrt")
        (tmp_path / "link.vrt").symlink_to(target / "v.vrt")
        write_vrt(sarz, tmp_path / "link.vrt")
        assert (tmp_path / "link.vrt").is_symlink() and sorted(p.name for p in target.iterdir())[0] == "v.ov1.vrt"
    finally:
        shutil.rmtree(target)


def test_a_sarz_made_from_a_vrt_does_not_carry_the_vrts_tag(sarz, tmp_path):
    """Compressing this tool's VRT copied its SARZ_VRT_FOR tag (naming the first .sarz) into the second .sarz and its
    outputs: the second .sarz's VRT named the first (written again: "not a VRT of" it), the second .sarz was no
    longer guarded as an input of its own VRT, and a GeoTIFF decoded from it guarded the first."""
    first = tmp_path / "s.sarz"
    shutil.copy(sarz, first)
    write_vrt(first)
    second = tmp_path / "s2.sarz"
    with rasterio.Env(**ENVIRONMENT):  # the pixel function runs in this process
        api.compress_file(f"{first}.vrt", second, quality=2)
    write_vrt(second)
    write_vrt(second)  # written again: its own VRT
    assert "SARZ_VRT_FOR" not in api.read_header(second)["raster"].get("tags", {})
    assert cli.main(["-q", "compress", f"{second}.vrt", str(second), "--overwrite"]) == 2
    api.decompress_file(second, tmp_path / "s2.tif")
    assert cli.main(["-q", "compress", str(tmp_path / "s2.tif"), str(first), "--overwrite", "--quality", "2"]) == 0


def test_the_vrt_command_removes_a_killed_runs_temp_files(sarz, tmp_path):
    """vrt never removed what a killed run of it left (decompress and compress do)."""
    shutil.copy(sarz, tmp_path / "k.sarz")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = tmp_path / f".k.sarz.vrt.sarz-tmp.{dead.stdout.strip()}.abcd1234"
    left.write_text("a killed run's")
    assert cli.main(["-q", "vrt", str(tmp_path / "k.sarz")]) == 0
    assert not left.exists()


def test_a_vrt_another_run_is_writing_is_left_to_it(sarz, tmp_path):
    """vrt removed temp files without holding the VRT's lock: a live run's (another host's, whose PID means
    nothing here) could go mid-write. It writes under the main VRT's lock, as the other writers do."""
    from sar_compressor.engine.errors import OutputBusyError
    from sar_compressor.engine.io import output_paths

    shutil.copy(sarz, tmp_path / "l.sarz")
    with output_paths.locked(tmp_path / "l.sarz.vrt"), pytest.raises(OutputBusyError, match="being written"):
        write_vrt(tmp_path / "l.sarz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.sarz"]


def test_a_vrt_is_current_by_what_it_names_not_by_its_bytes(sarz, tmp_path):
    """The plugin reuses a VRT that is what write_vrt writes now; compared byte for byte, one GDAL had written back
    (it does when a layer closes, adding statistics) was never reused again, and the layers went to the profile's
    cache. An older version's VRT, or one without its overviews, or of another file, is not current."""
    from xml.etree import ElementTree

    from sar_compressor.engine.gdal_vrt import decoded_sarz, vrt_current

    shutil.copy(sarz, tmp_path / "c.sarz")
    paths = write_vrt(tmp_path / "c.sarz")
    assert vrt_current(tmp_path / "c.sarz", paths[0])
    tree = ElementTree.parse(paths[0])  # as GDAL writes it back: statistics added, laid out its own way
    band = tree.getroot().find("VRTRasterBand")
    meta = ElementTree.SubElement(band, "Metadata")
    ElementTree.SubElement(meta, "MDI", key="STATISTICS_MEAN").text = "0.25"
    tree.write(paths[0])
    assert vrt_current(tmp_path / "c.sarz", paths[0])
    assert decoded_sarz(paths[0]) == str((tmp_path / "c.sarz").resolve())
    old = paths[0].read_text().replace(f">{gdal_vrt.software_version()}<", ">0.7.2<")
    paths[0].write_text(old)
    assert not vrt_current(tmp_path / "c.sarz", paths[0])
    paths = write_vrt(tmp_path / "c.sarz")
    paths[-1].unlink()
    assert not vrt_current(tmp_path / "c.sarz", paths[0])
    paths = write_vrt(tmp_path / "c.sarz")
    api.compress_file(write_scene(tmp_path / "o.tif", 60, 70, seed=2), tmp_path / "c.sarz", quality=3)
    assert not vrt_current(tmp_path / "c.sarz", paths[0])
    with pytest.raises(InputError, match="is another file than .* was written for"):
        decoded_sarz(paths[0])
    (tmp_path / "c.sarz").unlink()
    with pytest.raises(InputError, match="is gone"):
        decoded_sarz(paths[0])
    assert decoded_sarz(sarz) is None
