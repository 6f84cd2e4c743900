"""Streaming raster I/O: metadata round trip, row windows with reflect halos, atomic strip writer, COG output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.transform import Affine

from sar_compressor.engine.errors import CancelledError, InputError, OutputError
from sar_compressor.engine.io.raster_io import (
    RasterInfo,
    RasterReader,
    StripWriter,
    dataset_stem,
    iter_strips,
    open_info,
    read_rows,
    reflect_rows,
)

RNG = np.random.default_rng(2)
TRANSFORM = (399960.0, 10.0, 0.0, 5000040.0, 0.0, -10.0)


def _info(height=70, width=45, count=1, dtype="float32", georef=True, nodata=None) -> RasterInfo:
    return RasterInfo(
        width=width,
        height=height,
        count=count,
        dtype=dtype,
        crs_wkt=CRS.from_epsg(32631).to_wkt() if georef else None,
        transform=TRANSFORM if georef else None,
        nodata=nodata,
        descriptions=[f"band {i} linear intensity" for i in range(1, count + 1)],
        tags={"MISSION": "test", "LOOKS": "1"},
        band_tags=[{"POL": p} for p in ("VV", "VH", "HH")[:count]],
        units=["linear"] * count,
    )


def _write_in_strips(path, info, data, rows=16, **kwargs):
    with StripWriter(path, info, **kwargs) as writer:
        for r in range(0, info.height, rows):
            writer.write(r, data[..., r : r + rows, :])
    return path


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_round_trip_in_strips_keeps_pixels_and_metadata(tmp_path):
    info = _info(nodata=float("nan"))
    data = RNG.random((70, 45)).astype(np.float32)
    data[3, 4] = np.nan
    path = _write_in_strips(tmp_path / "out.tif", info, data)
    assert _leftovers(tmp_path) == ["out.tif"]
    back = open_info(path)
    assert back.has_georef
    assert back.transform == TRANSFORM
    assert CRS.from_wkt(back.crs_wkt) == CRS.from_epsg(32631)
    assert np.isnan(back.nodata)
    assert back.descriptions == info.descriptions
    assert back.tags["MISSION"] == "test" and back.band_tags[0]["POL"] == "VV"
    assert back.units == ["linear"]
    with rasterio.open(path) as ds:
        assert ds.profile["tiled"] and ds.block_shapes[0] == (80, 48)  # no larger than the 70 x 45 raster needs
        assert ds.compression.name.upper() == "DEFLATE"
        np.testing.assert_array_equal(ds.read(1), data)


@pytest.mark.parametrize(
    ("shape", "blocks"), [((1, 3000), (16, 256)), ((3000, 20), (256, 32)), ((600, 700), (256, 256))]
)
def test_a_thin_raster_gets_blocks_no_larger_than_it_needs(tmp_path, shape, blocks):
    """256 x 256 tiles on a 1-row raster are 255 rows of padding each: a 1 x 2,000,000 raster spent 4 s of its
    decompression deflating them."""
    info = _info(height=shape[0], width=shape[1])
    data = RNG.random(shape).astype(np.float32)
    path = _write_in_strips(tmp_path / "thin.tif", info, data)
    with rasterio.open(path) as ds:
        assert ds.block_shapes[0] == blocks
        np.testing.assert_array_equal(ds.read(1), data)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_no_georeferencing_in_gives_none_out(tmp_path):
    info = _info(georef=False)
    data = RNG.random((70, 45)).astype(np.float32)
    path = _write_in_strips(tmp_path / "plain.tif", info, data)
    back = open_info(path)
    assert not back.has_georef and back.crs_wkt is None and back.transform is None
    with rasterio.open(path) as ds:
        assert ds.crs is None
        assert ds.transform == Affine.identity()


def test_multiband_integer_dtype_and_band_selection(tmp_path):
    info = _info(count=2, dtype="uint16", nodata=0)
    data = RNG.integers(1, 60000, (2, 70, 45)).astype(np.uint16)
    path = _write_in_strips(tmp_path / "two.tif", info, data, rows=32)
    back = open_info(path)
    assert back.count == 2 and back.dtype == "uint16" and back.nodata == 0
    with RasterReader(path) as reader:
        np.testing.assert_array_equal(reader.read_rows(2, 0, 70), data[1])
    one = back.band(2)
    assert one.count == 1 and one.descriptions == ["band 2 linear intensity"] and one.band_tags == [{"POL": "VH"}]
    with pytest.raises(InputError, match="band 3"):
        back.band(3)


def test_write_one_band_of_several_and_bad_shapes(tmp_path):
    info = _info(count=2)
    with StripWriter(tmp_path / "b.tif", info) as writer:
        writer.write(0, np.ones((70, 45), np.float32), band=2)
        with pytest.raises(ValueError):
            writer.write(60, np.ones((20, 45), np.float32))
        with pytest.raises(ValueError):
            writer.write(0, np.ones((5, 44), np.float32))
        with pytest.raises(InputError):
            writer.write(0, np.ones((5, 45), np.float32), band=3)
    with rasterio.open(tmp_path / "b.tif") as ds:
        assert ds.read(2).min() == 1.0


def test_dtype_and_nodata_overrides(tmp_path):
    info = _info(nodata=-1.0)
    path = _write_in_strips(tmp_path / "o.tif", info, np.ones((70, 45)), dtype="float64", nodata=None)
    back = open_info(path)
    assert back.dtype == "float64" and back.nodata is None


def test_info_is_json_serialisable_with_nan_nodata():
    info = _info(nodata=float("nan"))
    text = json.dumps(info.to_dict(), allow_nan=False)
    back = RasterInfo.from_dict(json.loads(text))
    assert np.isnan(back.nodata)
    assert back.transform == info.transform and back.crs_wkt == info.crs_wkt
    assert back.descriptions == info.descriptions and back.band_tags == info.band_tags
    assert json.loads(text)["has_georef"] is True
    with pytest.raises(InputError):
        RasterInfo.from_dict({"width": 3})


def test_gcps_round_trip(tmp_path):
    info = _info(georef=False)
    info.gcps = [[0.0, 0.0, 2.1, 48.5, 0.0], [69.0, 44.0, 2.2, 48.4, 10.0], [0.0, 44.0, 2.2, 48.5, 0.0]]
    info.gcp_crs_wkt = CRS.from_epsg(4326).to_wkt()
    path = _write_in_strips(tmp_path / "gcp.tif", info, np.ones((70, 45), np.float32))
    back = open_info(path)
    assert back.has_georef and back.transform is None
    assert len(back.gcps) == 3 and back.gcps[1][2] == pytest.approx(2.2)
    with rasterio.open(path) as ds:
        gcps, crs = ds.gcps
        assert isinstance(gcps[0], GroundControlPoint) and crs == CRS.from_epsg(4326)


def test_gcps_without_a_crs_round_trip(tmp_path):
    """GCPs with no CRS (pixel-to-scene points): rasterio was handed None for their CRS and raised AttributeError,
    so such a raster compressed and then never decompressed."""
    info = _info(georef=False)
    info.gcps = [[0.0, 0.0, 10.0, 20.0, 0.0], [69.0, 44.0, 450.0, 710.0, 0.0], [0.0, 44.0, 450.0, 20.0, 0.0]]
    path = _write_in_strips(tmp_path / "gcp.tif", info, np.ones((70, 45), np.float32))
    back = open_info(path)
    assert len(back.gcps) == 3 and back.gcps[1][3] == pytest.approx(710.0) and not back.gcp_crs_wkt


def test_cog_output_keeps_metadata_domains(tmp_path):
    """GDAL 3.6's COG driver copies the default metadata domain alone: a swath's GEOLOCATION (its only
    georeferencing), IMAGERY and a product's own domains were dropped from every COG output without a word."""
    info = _info(height=300, width=260)
    info.domains = {"GEOLOCATION": {"X_BAND": "1", "LINE_STEP": "1"}, "CALIBRATION": {"CONST": "123.4"}}
    info.band_domains = [{"NOISE": {"EQUIV": "-22.5"}}]
    heard = []
    data = RNG.random((300, 260)).astype(np.float32)
    path = _write_in_strips(tmp_path / "cog.tif", info, data, rows=100, cog=True, blocksize=128, warn=heard.append)
    with rasterio.open(path) as ds:
        assert ds.tags(ns="CALIBRATION") == {"CONST": "123.4"} and ds.tags(ns="GEOLOCATION")["X_BAND"] == "1"
        assert ds.tags(1, ns="NOISE") == {"EQUIV": "-22.5"} and ds.overviews(1)
        np.testing.assert_array_equal(ds.read(1), data)
    if not rasterio.env.GDALVersion.runtime().at_least("3.8"):
        assert len(heard) == 1 and "no longer has the strict COG layout" in heard[0]
    assert _leftovers(tmp_path) == ["cog.tif"]
    heard.clear()  # nothing to say where there is no named domain
    _write_in_strips(tmp_path / "plain.tif", _info(height=300, width=260), data, cog=True, warn=heard.append)
    assert heard == []


@pytest.mark.parametrize("error", [RuntimeError("disk full"), CancelledError("cancelled")])
def test_failure_leaves_no_output_and_no_temp(tmp_path, error):
    info = _info()
    with pytest.raises(type(error)), StripWriter(tmp_path / "x.tif", info) as writer:
        writer.write(0, np.ones((16, 45), np.float32))
        raise error
    assert _leftovers(tmp_path) == []


def test_a_file_gdal_refuses_to_create_leaves_no_temp(tmp_path):
    """rasterio refused what a header said (a nodata value, a CRS) once GDAL had made the temp file: a ValueError or
    CRSError traceback, and the hidden temp file stayed."""
    info = _info()
    info.crs_wkt = "NOT A CRS"
    with pytest.raises(OutputError, match="cannot create"), StripWriter(tmp_path / "x.tif", info):
        pass
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "dtype, nodata, written",
    [
        ("float32", -3.40282346639e38, float(np.float32(-3.40282346639e38))),
        ("float32", 1e300, None),
        ("uint16", -1.0, None),
        ("uint16", 70000.0, None),
        ("uint16", 0.0, 0.0),
        ("int16", float("nan"), None),
    ],
)
def test_a_nodata_value_the_type_cannot_hold_is_rounded_or_dropped(tmp_path, dtype, nodata, written):
    """ESRI's float32 minimum as an ENVI header writes it (a double just past float32's) and a uint16 raster's -1
    compressed, then never decompressed: rasterio refused them. A float is rounded to the type; a value the type
    holds nothing like is dropped, and the writer says so."""
    heard = []
    info = _info(dtype=dtype, nodata=nodata)
    _write_in_strips(tmp_path / "x.tif", info, np.ones((70, 45), dtype), warn=heard.append)
    with rasterio.open(tmp_path / "x.tif") as ds:
        assert ds.nodata == written
    assert bool(heard) == (written is None) and (not heard or "declares no nodata value" in heard[0])


def test_failure_keeps_an_existing_output(tmp_path):
    target = tmp_path / "keep.tif"
    target.write_bytes(b"old")
    with pytest.raises(CancelledError), StripWriter(target, _info()):
        raise CancelledError("cancelled")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == ["keep.tif"]


def test_writer_errors(tmp_path):
    with pytest.raises(OutputError, match="folder"), StripWriter(tmp_path / "missing" / "x.tif", _info()):
        pass
    with pytest.raises(ValueError):
        StripWriter(tmp_path / "x.tif", _info(), blocksize=100)


def test_cog_output(tmp_path):
    info = _info(height=600, width=520, nodata=float("nan"))
    data = RNG.random((600, 520)).astype(np.float32)
    path = _write_in_strips(tmp_path / "cog.tif", info, data, rows=100, cog=True, blocksize=128)
    assert _leftovers(tmp_path) == ["cog.tif"]
    with rasterio.open(path) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.overviews(1)
        assert ds.block_shapes[0] == (128, 128)
        np.testing.assert_array_equal(ds.read(1), data)
        assert ds.descriptions == tuple(info.descriptions)
    back = open_info(path)
    assert back.transform == TRANSFORM and back.tags["MISSION"] == "test"


@pytest.fixture()
def small_raster(tmp_path):
    data = np.arange(7 * 5, dtype=np.float32).reshape(7, 5)
    return _write_in_strips(tmp_path / "small.tif", _info(height=7, width=5), data, rows=3), data


def test_read_rows_clips_at_edges(small_raster):
    path, data = small_raster
    np.testing.assert_array_equal(read_rows(path, 1, -2, 3), data[:3])
    np.testing.assert_array_equal(read_rows(path, 1, 5, 20), data[5:])
    assert read_rows(path, 1, 9, 12).shape == (0, 5)
    with pytest.raises(InputError, match="band 2"):
        read_rows(path, 2, 0, 1)


@pytest.mark.parametrize(("row0", "row1", "halo"), [(0, 3, 2), (4, 7, 3), (0, 7, 10), (2, 5, 0)])
def test_padded_rows_match_numpy_reflect(small_raster, row0, row1, halo):
    path, data = small_raster
    expected = np.pad(data, ((halo, halo), (0, 0)), mode="reflect")[row0 : row1 + 2 * halo]
    np.testing.assert_array_equal(read_rows(path, 1, row0, row1, halo=halo), expected)


def test_reflect_rows_single_row_raster():
    np.testing.assert_array_equal(reflect_rows(-3, 4, 1), np.zeros(7, dtype=int))
    np.testing.assert_array_equal(reflect_rows(-2, 5, 3), [2, 1, 0, 1, 2, 1, 0])


def test_iter_strips_cover_all_rows_with_halo(small_raster):
    path, data = small_raster
    strips = list(iter_strips(path, 1, rows=3, halo=1))
    assert [r for r, _ in strips] == [0, 3, 6]
    assert [s.shape[0] for _, s in strips] == [5, 5, 3]
    core = np.concatenate([s[1:-1] for _, s in strips])
    np.testing.assert_array_equal(core, data)
    with pytest.raises(ValueError):
        next(iter_strips(path, 1, rows=0))


def test_products_inside_a_zip_or_a_netcdf_open_by_their_gdal_names(tmp_path, capsys):
    """A product kept zipped (/vsizip/, as QGIS opens a Sentinel-1 SAFE zip) or a netCDF/HDF5 variable (a driver's
    subdataset) is a GDAL dataset name, not a file: it was refused as 'not found' (and a Path folded /vsizip//abs).
    Compressed from its name, it decodes to what the unpacked raster gives."""
    import zipfile

    from rasterio.shutil import copy as gdal_copy

    from sar_compressor.engine import api
    from sar_compressor.engine.cli import main

    data = RNG.gamma(2.0, 0.05, (1, 60, 90)).astype(np.float32)
    tif = _write_in_strips(tmp_path / "plain.tif", _info(60, 90), data)
    with zipfile.ZipFile(tmp_path / "product.zip", "w") as z:
        z.write(tif, "product.SAFE/measurement/vv.tif")
    gdal_copy(tif, tmp_path / "product.nc", driver="netCDF")
    zipped = f"/vsizip/{tmp_path}/product.zip/product.SAFE/measurement/vv.tif"
    subdataset = f'NETCDF:"{tmp_path}/product.nc":Band1'
    assert open_info(zipped).width == open_info(subdataset).width == 90
    expected = api.decompress_array(api.compress_array(data[0], quality=6).data)
    for k, name in enumerate((zipped, subdataset)):
        out = tmp_path / f"{k}.sarz"
        assert main(["-q", "compress", name, str(out), "--quality", "6"]) == 0
        np.testing.assert_array_equal(api.decompress_array(out), expected)
    assert main(["-q", "compress", f"/vsizip/{tmp_path}/product.zip/missing.tif", str(tmp_path / "m.sarz")]) == 2
    assert "cannot read raster /vsizip/" in capsys.readouterr().err


def test_open_info_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        open_info(tmp_path / "nope.tif")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a raster at all")
    with pytest.raises(InputError, match="cannot read"):
        open_info(junk)


def test_real_airsar_has_no_georef_and_round_trips(shared_sar_dir, tmp_path):
    src = shared_sar_dir / "sanfrancisco_airsar_C11.tif"
    info = open_info(src)
    assert not info.has_georef and info.count == 1 and info.dtype == "float32"
    with RasterReader(src) as reader, StripWriter(tmp_path / "copy.tif", info) as writer:
        for row0, strip in reader.iter_strips(1, rows=100):
            writer.write(row0, strip)
    back = open_info(tmp_path / "copy.tif")
    assert not back.has_georef and back.tags == info.tags
    with rasterio.open(src) as a, rasterio.open(tmp_path / "copy.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))


def test_bounded_gdal_cache_is_restored():
    """The codec caps GDAL's block cache while it streams (memory), and leaves QGIS's setting as it was."""
    from osgeo import gdal

    from sar_compressor.engine.io.raster_io import bounded_gdal_cache

    before = gdal.GetCacheMax()
    with bounded_gdal_cache(32):
        assert gdal.GetCacheMax() == 32 * 1024 * 1024
    assert gdal.GetCacheMax() == before


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_rpcs_survive_compression_decompression_and_the_vrt(tmp_path, capsys):
    """A product georeferenced by RPCs alone (ICEYE, Capella, Umbra GEC/SLC) keeps them: in the decoded GeoTIFF, in
    the VRT (its overviews' line and sample offsets and scales follow their pixel grid) and in `info`."""
    from rasterio.rpc import RPC

    from sar_compressor.engine import api, cli, gdal_vrt
    from sar_compressor.engine.simulate import simulate_scene

    rpc = RPC(
        height_off=100.0, height_scale=500.0, lat_off=45.0, lat_scale=0.05, long_off=7.0, long_scale=0.06,
        line_off=150.0, line_scale=150.0, samp_off=200.0, samp_scale=200.0, err_bias=1.0, err_rand=0.5,
        line_num_coeff=[0.0, -0.1, 1.0] + [0.0] * 17, line_den_coeff=[1.0] + [0.0] * 19,
        samp_num_coeff=[0.0, 1.0, 0.1] + [0.0] * 17, samp_den_coeff=[1.0] + [0.0] * 19,
    )  # fmt: skip
    intensity, _ = simulate_scene(300, 400, looks=2, seed=1)
    src = tmp_path / "rpc.tif"
    with rasterio.open(src, "w", driver="GTiff", width=400, height=300, count=1, dtype="float32", rpcs=rpc) as ds:
        ds.write(intensity.astype(np.float32), 1)
    assert open_info(src).has_georef
    api.compress_file(src, tmp_path / "rpc.sarz")
    api.decompress_file(tmp_path / "rpc.sarz", tmp_path / "rpc_d.tif")
    with rasterio.open(tmp_path / "rpc_d.tif") as ds:
        assert ds.rpcs.to_dict() == rpc.to_dict()
    vrts = gdal_vrt.write_vrt(tmp_path / "rpc.sarz")
    with rasterio.open(vrts[0]) as ds, rasterio.open(vrts[1]) as half:
        assert ds.rpcs.to_dict() == rpc.to_dict()
        assert (half.rpcs.line_off, half.rpcs.samp_scale, half.rpcs.lat_off) == (75.0, 100.0, 45.0)
    assert cli.main(["info", str(tmp_path / "rpc.sarz")]) == 0
    assert "RPCs (rational polynomial coefficients)" in capsys.readouterr().out


def _raw_band(n: int, file: str, nodata: float, cols: int) -> str:
    return (
        f'<VRTRasterBand dataType="Float32" band="{n}" subClass="VRTRawRasterBand"><NoDataValue>{nodata}</NoDataValue>'
        f'<SourceFilename relativetoVRT="1">{file}</SourceFilename><ImageOffset>0</ImageOffset>'
        f"<PixelOffset>4</PixelOffset><LineOffset>{4 * cols}</LineOffset><ByteOrder>LSB</ByteOrder></VRTRasterBand>"
    )


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_each_band_keeps_its_own_nodata(tmp_path, capsys):
    """A stack whose bands have other nodata values (gdalbuildvrt -separate, ENVI, HDF): band 2's -9999 fill was
    taken for data under band 1's nodata (its range ran from -9999, its pixels decoded wrong)."""
    from sar_compressor.engine import api, cli, gdal_vrt
    from sar_compressor.engine.metrics import evaluate_files
    from sar_compressor.engine.simulate import simulate_scene

    rows, cols = 200, 160
    a, _ = simulate_scene(rows, cols, looks=2, seed=1)
    b, _ = simulate_scene(rows, cols, looks=2, seed=2)
    b[:, :15] = -9999
    a.astype("<f4").tofile(tmp_path / "b1.f32")
    b.astype("<f4").tofile(tmp_path / "b2.f32")
    bands = _raw_band(1, "b1.f32", 0, cols) + _raw_band(2, "b2.f32", -9999, cols)
    stack = tmp_path / "stack.vrt"
    stack.write_text(f'<VRTDataset rasterXSize="{cols}" rasterYSize="{rows}">{bands}</VRTDataset>')
    warnings: list[str] = []
    api.compress_file(stack, tmp_path / "s.sarz", reconstruction=tmp_path / "r.tif", warn=warnings.append)
    assert any("nodata values differ: band 2 (-9999.0) against band 1 (0.0)" in w for w in warnings)
    said: list[str] = []  # whoever decodes hears it too: every band into one GeoTIFF, not one band alone
    api.decompress_file(tmp_path / "s.sarz", tmp_path / "all.tif", warn=said.append)
    api.decompress_file(tmp_path / "s.sarz", tmp_path / "b2.tif", band=2, warn=said.append)
    assert len(said) == 1 and "band 2 (-9999.0) against band 1 (0.0)" in said[0] and "--band N" in said[0]
    assert cli.main(["-q", "decompress", str(tmp_path / "s.sarz"), str(tmp_path / "all_cli.tif")]) == 0
    assert f"warning: {said[0]}" in capsys.readouterr().err
    with rasterio.open(tmp_path / "r.tif") as r, rasterio.open(tmp_path / "b2.tif") as one:
        both, alone = r.read(2), one.read(1)
        assert one.nodata == -9999  # a single band's GeoTIFF holds its own
    for decoded in (both, alone):
        assert np.all(decoded[:, :15] == -9999)
        assert np.median(decoded[:, 15:]) == pytest.approx(np.median(b[:, 15:]), rel=0.2)
    assert evaluate_files(stack, tmp_path / "r.tif", band=2)["valid_pixels"] == rows * (cols - 15)
    text = gdal_vrt.write_vrt(tmp_path / "s.sarz")[0].read_text()
    assert "<NoDataValue>0.0</NoDataValue>" in text and "<NoDataValue>-9999.0</NoDataValue>" in text


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_metadata_domains_and_tags_reach_every_output(tmp_path, capsys):
    """Domains other than the default (IMAGERY's acquisition time, a product's own, a band's) reach the decoded
    GeoTIFF and the VRT, whose tags were missing too; a GEOLOCATION domain (swath products georeferenced by
    latitude/longitude arrays) is georeferencing: `info` names it and an overview VRT's steps follow its grid."""
    from sar_compressor.engine import api, cli, gdal_vrt
    from sar_compressor.engine.simulate import simulate_scene

    intensity, _ = simulate_scene(120, 100, looks=2, seed=1)
    src = tmp_path / "t.tif"
    with rasterio.open(src, "w", driver="GTiff", width=100, height=120, count=1, dtype="float32") as ds:
        ds.write(intensity.astype(np.float32), 1)
        ds.update_tags(MISSION="S1A")
        ds.update_tags(1, POLARISATION="VV")
        ds.update_tags(ns="IMAGERY", ACQUISITIONDATETIME="2023-05-01T05:12:34Z")
        ds.update_tags(1, ns="CALIBRATION", CONSTANT="1.5")
        geolocation = {"X_DATASET": "/data/lon.tif", "Y_DATASET": "/data/lat.tif", "X_BAND": "1", "Y_BAND": "1"}
        ds.update_tags(ns="GEOLOCATION", SRS="EPSG:4326", PIXEL_STEP="2", LINE_STEP="2", **geolocation)
    api.compress_file(src, tmp_path / "t.sarz")
    api.decompress_file(tmp_path / "t.sarz", tmp_path / "t_d.tif")
    vrts = gdal_vrt.write_vrt(tmp_path / "t.sarz")
    for path in (tmp_path / "t_d.tif", vrts[0]):
        with rasterio.open(path) as ds:
            assert ds.tags()["MISSION"] == "S1A" and ds.tags(1)["POLARISATION"] == "VV"
            assert ds.tags(ns="IMAGERY") == {"ACQUISITIONDATETIME": "2023-05-01T05:12:34Z"}
            assert ds.tags(1, ns="CALIBRATION") == {"CONSTANT": "1.5"}
            assert ds.tags(ns="GEOLOCATION")["X_DATASET"] == "/data/lon.tif"
    with rasterio.open(vrts[1]) as half:
        assert float(half.tags(ns="GEOLOCATION")["PIXEL_STEP"]) == 1.0
    assert cli.main(["info", str(tmp_path / "t.sarz")]) == 0
    assert "geolocation arrays (/data/lon.tif, /data/lat.tif)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "name, stem",
    [
        ("/data/scene.tif", "scene"),
        ("/vsizip//d/S1A.zip/S1A.SAFE/measurement/s1a-iw-grd-vv.tiff", "s1a-iw-grd-vv"),
        ('NETCDF:"/data/p.nc":sigma0', "p_sigma0"),
        ('HDF5:"f.h5"://frequencyA/HH', "f__frequencyA_HH"),  # frequencyB's HH is another file
        ("SENTINEL1_CALIB:SIGMA0:/p/S1A_X.SAFE/manifest.safe:IW_VV", "SIGMA0_S1A_X_IW_VV"),  # each product its own
        ("/vsicurl/https://h/x/scene_vv.tif?v=1.2", "scene_vv"),  # the query left out
        ("/vsicurl?url=https%3A%2F%2Fexample.com%2Fa%2Fb.tif&max_retry=3", "b"),
        ("/vsigzip//d/scene.tif.gz", "scene"),
    ],
)
def test_a_dataset_names_stem_is_a_file_name(name, stem):
    """Batch names each output after its input: every Sentinel-1 product's calibrated band was SIGMA0_manifest_IW_VV
    (a batch of them refused as one name), a URL's stem kept its query, a .tif.gz kept .tif."""
    assert dataset_stem(name) == stem
