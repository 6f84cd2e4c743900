"""Several bands in one .sarz: dual-pol and 3-channel products round trip with their metadata, one band is
decoded from its own chunks (and its reference's), inter-band prediction is exact and pays, rate control and
evaluate cover every band."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from sar_compressor.engine import api
from sar_compressor.engine.cli import main
from sar_compressor.engine.codec.entropy import refine
from sar_compressor.engine.codec.format import layout as layout_module
from sar_compressor.engine.codec.format.container import ContainerReader
from sar_compressor.engine.codec.passes import interband, strip_window, survey
from sar_compressor.engine.errors import CancelledError, ContainerError, InputError
from sar_compressor.engine.metrics import evaluate_bands
from sar_compressor.engine.simulate import simulate_scene

TRANSFORM = from_origin(500000.0, 4200000.0, 10.0, 10.0)


def _channels(height: int, width: int, gains: tuple[float, ...], seed: int = 0) -> np.ndarray:
    """Polarimetric-like channels: one reflectivity scene times a gain per channel, each with its own speckle
    (16 looks, as multilooked polarimetric products): what makes co- and cross-polarized channels correlated."""
    _, refl = simulate_scene(height, width, seed=seed)
    rng = np.random.default_rng(seed + 1)
    return np.stack([g * refl * rng.gamma(16.0, 1 / 16, refl.shape) for g in gains]).astype(np.float32)


def _write(path, bands: np.ndarray, descriptions, nodata=None, tags=None):
    profile = {"driver": "GTiff", "width": bands.shape[2], "height": bands.shape[1], "count": bands.shape[0]}
    profile.update(dtype=bands.dtype.name, crs=CRS.from_epsg(32631), transform=TRANSFORM)
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(bands)
        for i, text in enumerate(descriptions, start=1):
            ds.set_band_description(i, text)
            ds.update_tags(i, POLARISATION=text)
        ds.update_tags(MISSION="S1A")
    return path


@pytest.fixture(scope="module")
def dual_pol(tmp_path_factory):
    """VV in dB beside VH in linear intensity (mixed kinds, different ranges), with nodata pixels."""
    vv, vh = _channels(96, 80, (1.0, 0.05), seed=3)
    vv_db = (10 * np.log10(vv)).astype(np.float32)
    bands = np.stack([vv_db, vh])
    bands[:, :5, :7] = -9999.0
    return _write(tmp_path_factory.mktemp("dual") / "s1.tif", bands, ["VV_dB", "VH"], nodata=-9999.0)


@pytest.fixture(scope="module")
def three_channel(tmp_path_factory):
    bands = _channels(128, 96, (1.0, 0.3, 0.1), seed=5)
    return _write(tmp_path_factory.mktemp("three") / "t3.tif", bands, ["T11", "T22", "T33"])


def _check_raster(path, src, dtype=None):
    with rasterio.open(path) as out, rasterio.open(src) as ref:
        assert out.count == ref.count and out.descriptions == ref.descriptions
        assert out.crs == ref.crs and out.transform == ref.transform
        assert out.nodata == ref.nodata and out.dtypes == (dtype or ref.dtypes)
        assert out.tags()["MISSION"] == "S1A"
        for i in range(1, ref.count + 1):
            assert out.tags(i)["POLARISATION"] == ref.descriptions[i - 1]
        return out.read()


@pytest.mark.parametrize("product", ["dual_pol", "three_channel"])
def test_product_round_trips_in_one_file(product, request, tmp_path):
    src = request.getfixturevalue(product)
    sarz, rec, out = tmp_path / "p.sarz", tmp_path / "rec.tif", tmp_path / "out.tif"
    stats = api.compress_file(src, sarz, quality=6, reconstruction=rec)
    header = api.read_header(sarz)
    with rasterio.open(src) as ds:
        original, count = ds.read(), ds.count
    assert len(header["bands"]) == count == len(stats.bands)
    assert sorted(b["source_band"] for b in header["bands"]) == list(range(1, count + 1))
    api.decompress_file(sarz, out)
    decoded = _check_raster(out, src)
    assert np.array_equal(decoded, _check_raster(rec, src))  # the decoder's output is the encoder's
    invalid = original == -9999.0
    assert np.array_equal(decoded == -9999.0, invalid)
    for b in stats.bands:
        assert b["bytes"] > 0 and b["psnr_db"] > 20
    assert sum(b["bytes"] for b in stats.bands) < stats.output_bytes


def test_mixed_kinds_and_ranges_per_band(dual_pol, tmp_path):
    api.compress_file(dual_pol, tmp_path / "d.sarz")
    bands = {b["source_band"]: b for b in api.read_header(tmp_path / "d.sarz")["bands"]}
    assert bands[1]["kind"] == "db" and bands[2]["kind"] == "intensity"
    assert bands[1]["description"] == "VV_dB" and bands[2]["tags"] == {"POLARISATION": "VH"}
    assert bands[1]["range"]["vmin"] > bands[2]["range"]["vmin"] + 5  # VH is ~13 dB below VV
    assert bands[1]["nodata"] == bands[2]["nodata"] == -9999.0


def test_three_channels_are_predicted_and_smaller(three_channel, tmp_path):
    joint = api.compress_file(three_channel, tmp_path / "j.sarz", quality=5)
    alone = api.compress_file(three_channel, tmp_path / "a.sarz", quality=5, interband=False)
    header = api.read_header(tmp_path / "j.sarz")
    references = [b["reference"] for b in header["bands"]]
    assert references[0] is None and references.count(0) == 2  # a star around the first coded band
    assert all(b["reference"] is None for b in api.read_header(tmp_path / "a.sarz")["bands"])
    assert joint.output_bytes < 0.95 * alone.output_bytes
    for j, a in zip(joint.bands, alone.bands):
        assert j["psnr_db"] > a["psnr_db"] - 0.3


def test_one_band_decodes_only_its_chunks(three_channel, tmp_path, monkeypatch):
    monkeypatch.setattr(layout_module, "TILE", 512)  # 96x512 tiles...
    tall = _channels(1100, 96, (1.0, 0.3, 0.1), seed=7)  # ...3 tiles per band
    src = _write(tmp_path / "tall.tif", tall, ["T11", "T22", "T33"])
    sarz = tmp_path / "tall.sarz"
    stats = api.compress_file(src, sarz, quality=5, reconstruction=tmp_path / "rec.tif")
    header = api.read_header(sarz)
    assert header["n_chunks"] == 9
    coded = [b["source_band"] for b in header["bands"]]
    read: list[int] = []
    original = ContainerReader.read_chunk

    def counting(self, i):
        read.append(i)
        return original(self, i)

    monkeypatch.setattr(ContainerReader, "read_chunk", counting)
    with rasterio.open(tmp_path / "rec.tif") as ds:
        rec = ds.read()
    for band in (1, 2, 3):
        read.clear()
        out = tmp_path / f"b{band}.tif"
        api.decompress_file(sarz, out, band=band)
        with rasterio.open(out) as ds:
            assert ds.count == 1 and ds.descriptions == (f"T{band}{band}",)
            assert np.array_equal(ds.read(1), rec[band - 1])
        entry = header["bands"][coded.index(band)]
        own = {3 * coded.index(band) + k for k in range(3)}
        ref = set() if entry["reference"] is None else {3 * entry["reference"] + k for k in range(3)}
        assert set(read) == own | ref
    assert any(b["reference"] is not None for b in stats.bands)
    with pytest.raises(InputError, match="no band 4"):
        api.decompress_file(sarz, tmp_path / "x.tif", band=4)


def test_single_band_of_a_stack_decodes_alone(three_channel, tmp_path):
    api.compress_file(three_channel, tmp_path / "t22.sarz", band=2)
    header = api.read_header(tmp_path / "t22.sarz")
    assert [b["source_band"] for b in header["bands"]] == [2] and header["bands"][0]["reference"] is None
    assert api.decompress_array(tmp_path / "t22.sarz", band=2).ndim == 2


def test_a_band_without_valid_pixels_is_coded_as_its_mask_and_warned_about(tmp_path):
    """An all-nodata band beside a valid one (a failed polarization) is kept, not refused: its mask alone is
    coded and it comes back as nodata, with a warning naming it."""
    bands = _channels(40, 48, (1.0, 0.3))
    bands[1] = -9999.0
    src = _write(tmp_path / "empty.tif", bands, ["VV", "VH"], nodata=-9999.0)
    warned = []
    stats = api.compress_file(src, tmp_path / "e.sarz", warn=warned.append)
    assert any("valid" in w for w in stats.warnings)
    assert "band 2: no valid pixels: every pixel is nodata, NaN or no-signal zero; only its mask is coded" in warned
    back = api.decompress_array(tmp_path / "e.sarz")
    assert np.all(back[1] == -9999.0) and np.all(back[0] != -9999.0)


def test_global_mean_correction_and_progress_over_bands(three_channel, tmp_path):
    """Under "global" correction each band's strips wait for its own gain; the bar runs once over all bands."""
    seen: list[tuple[int, int]] = []
    api.compress_file(
        three_channel,
        tmp_path / "g.sarz",
        mean_correction="global",
        reconstruction=tmp_path / "rec.tif",
        progress=lambda done, total: seen.append((done, total)),
    )
    api.decompress_file(tmp_path / "g.sarz", tmp_path / "out.tif")
    with rasterio.open(tmp_path / "rec.tif") as rec, rasterio.open(tmp_path / "out.tif") as out:
        assert np.array_equal(rec.read(), out.read())
    gains = [b["global_gain"] for b in api.read_header(tmp_path / "g.sarz")["bands"]]
    assert len(set(gains)) == 3  # each band its own
    fractions = [done / total for done, total in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) >= 3


def test_cancel_in_a_later_band_leaves_nothing(three_channel, tmp_path):
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 4  # past the first band's strip

    with pytest.raises(CancelledError):
        api.compress_file(three_channel, tmp_path / "c.sarz", reconstruction=tmp_path / "r.tif", cancel=cancel)
    assert not any(tmp_path.iterdir())


def test_evaluate_one_band_reconstruction_needs_the_band(dual_pol, tmp_path):
    api.compress_file(dual_pol, tmp_path / "d.sarz")
    api.decompress_file(tmp_path / "d.sarz", tmp_path / "vh.tif", band=2)
    with pytest.raises(InputError, match="choose one with --band"):
        evaluate_bands(dual_pol, tmp_path / "vh.tif")
    assert evaluate_bands(dual_pol, tmp_path / "vh.tif", [2])["bands"][0]["band"] == 2


def test_deterministic(three_channel, tmp_path):
    api.compress_file(three_channel, tmp_path / "a.sarz", quality=4)
    api.compress_file(three_channel, tmp_path / "b.sarz", quality=4)
    assert (tmp_path / "a.sarz").read_bytes() == (tmp_path / "b.sarz").read_bytes()


def test_array_api_holds_bands_first():
    stack = _channels(64, 72, (1.0, 0.5), seed=2)
    result = api.compress_array(stack, quality=5, description=["HH", "HV"])
    assert result.reconstruction.shape == stack.shape
    assert np.array_equal(api.decompress_array(result.data), result.reconstruction)
    assert np.array_equal(api.decompress_array(result.data, band=2), result.reconstruction[1])
    with pytest.raises(InputError, match="descriptions"):
        api.compress_array(stack, description=["HH"])


def test_rate_control_shares_one_step_over_the_bands():
    stack = _channels(128, 128, (1.0, 0.2, 0.05), seed=4)
    result = api.compress_array(stack, target_bpp=1.0)
    assert 0.9 < result.stats.bpp <= 1.0
    bands = api.read_header(result.data)["bands"]
    assert len({b["refine_step"] for b in bands}) == 1
    assert np.array_equal(api.decompress_array(result.data), result.reconstruction)


def test_refinement_with_a_reference_round_trips_and_pays():
    """A band predicted from a correlated, decoded one: decode equals the encoder's image, fewer bytes."""
    stack = 10 * np.log10(_channels(128, 160, (1.0, 0.3), seed=9))
    target, other = stack[1], stack[0]
    base = np.full_like(target, float(target.mean()))
    _, ref_decoded = refine.encode(other, np.full_like(other, float(other.mean())), 1.0)
    reference = (ref_decoded - float(other.mean())).astype(np.float32)
    alone, _ = refine.encode(target, base, 1.0)
    payload, refined = refine.encode(target, base, 1.0, reference=reference)
    assert np.array_equal(refine.decode(payload, base, 1.0, reference), refined)
    assert len(payload) < 0.95 * len(alone)
    with pytest.raises(Exception, match="side information"):
        refine.decode(payload, base, 1.0)  # a decoder must know the band is predicted


def test_references_follow_the_measurement():
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(64, 64)).cumsum(axis=1)
    windows = [shared + 0.1 * rng.normal(size=shared.shape), rng.normal(size=shared.shape), shared]
    order, references = interband.choose_references(windows)
    assert order[0] in (0, 2) and references[order.index(1)] is None  # noise is coded on its own
    assert sorted(r for r in references if r is not None) == [0]
    assert interband.choose_references([shared]) == ([0], [None])


def test_evaluate_reports_each_band_and_overall(dual_pol, tmp_path, capsys):
    rec = tmp_path / "rec.tif"
    api.compress_file(dual_pol, tmp_path / "d.sarz", reconstruction=rec)
    result = evaluate_bands(dual_pol, rec)
    assert [b["band"] for b in result["bands"]] == [1, 2]
    psnrs = [b["psnr_db"] for b in result["bands"]]
    assert min(psnrs) <= result["overall"]["psnr_db"] <= max(psnrs)
    assert main(["evaluate", str(dual_pol), str(rec)]) == 0
    out = capsys.readouterr().out
    assert "band 1 (db)" in out and "band 2 (intensity)" in out and "overall" in out


def test_cli_compress_info_decompress_band(dual_pol, tmp_path, capsys):
    sarz = tmp_path / "c.sarz"
    assert main(["-q", "compress", str(dual_pol), str(sarz), "--reconstruction", str(tmp_path / "r.tif")]) == 0
    out = capsys.readouterr().out
    assert "band 1 (db):" in out and "band 2 (intensity):" in out and "reconstruction PSNR" in out
    assert main(["info", str(sarz)]) == 0
    out = capsys.readouterr().out
    assert "2 band(s)" in out and "'VV_dB'" in out and "'VH'" in out
    assert "predicted from band" in out and "coded on its own" in out
    assert main(["-q", "decompress", str(sarz), str(tmp_path / "vh.tif"), "--band", "2"]) == 0
    with rasterio.open(tmp_path / "vh.tif") as ds:
        assert ds.count == 1 and ds.descriptions == ("VH",)


def test_bench_section_compares_one_file_with_a_file_per_band(tmp_path, monkeypatch):
    from sar_compressor.bench import jpeg2000, multiband

    if not jpeg2000.available():
        pytest.skip("GDAL has no JP2OpenJPEG driver")
    monkeypatch.setattr(multiband, "QUALITIES", (5,))
    stack = _channels(96, 96, (1.0, 0.3), seed=6)
    result = multiband.run_stack("test", stack, ["intensity", "intensity"], None, tmp_path, lambda _: None)
    (row,) = result["rows"]
    assert row["bytes"] < row["separate_bytes_same_quality"]  # one header, and band 2 predicted
    assert 0 < row["saving_at_equal_psnr"] < 0.5
    assert [b["reference"] for b in row["bands"]].count(None) == 1
    assert all(b["jpeg2000_psnr_db"] > 10 for b in row["bands"])
    table = "\n".join(multiband.markdown({"stacks": [result], "skipped": []}))
    assert "| test | 5 |" in table


@pytest.mark.slow
def test_memory_is_strips_not_bands(tmp_path, monkeypatch, round_trip_peaks):
    """Bands are coded one after the other, tile by tile: three bands cost a reference tile more than one
    (measured +18-25 % with 512-row strips, +43-47 % with 256x512 tiles: the reference tile and its wavelet
    transform weigh more against a smaller tile), not three bands, and nothing grows with the height (pass 1's
    sample and texture tiles made small, as in test_codec's memory test). One tile in flight: with two, which
    of them overlap at their peak is up to the thread scheduler (a bounded addition, not growth)."""
    monkeypatch.setattr(survey, "SAMPLE_VALUES", 16384)
    monkeypatch.setattr(survey, "TEXTURE_PIXELS", 16384)
    monkeypatch.setattr(layout_module, "TILE", 512)
    monkeypatch.setattr(strip_window, "LOOKAHEAD", 1)

    def peaks(height: int, n_bands: int) -> tuple[int, int]:
        """Compressing, then decompressing, an n-band 256-wide raster."""
        src = _write(tmp_path / f"m{height}_{n_bands}.tif", _channels(height, 256, (1.0, 0.3, 0.1)[:n_bands]), [])
        return round_trip_peaks(src, tmp_path)

    one = peaks(3072, 1)
    short, tall = peaks(1024, 3), peaks(3072, 3)
    for i in (0, 1):  # compress, decompress
        assert tall[i] < 1.6 * one[i], (one, tall)
        assert tall[i] < 1.25 * short[i], (short, tall)


@pytest.mark.shared_data
def test_real_dual_pol_file_round_trips(shared_sar_dir, tmp_path):
    """Sen1Floods11's VV/VH chip (both bands sigma0 in dB, EPSG:4326) in one file and back."""
    src = shared_sar_dir / "sen1floods11_spain_vv_vh_db.tif"
    stats = api.compress_file(src, tmp_path / "s1.sarz", reconstruction=tmp_path / "rec.tif")
    api.decompress_file(tmp_path / "s1.sarz", tmp_path / "out.tif")
    with rasterio.open(src) as ref, rasterio.open(tmp_path / "out.tif") as out:
        assert (out.count, out.crs, out.transform, out.dtypes) == (2, ref.crs, ref.transform, ref.dtypes)
        assert out.descriptions == ref.descriptions and np.isnan(out.nodata) and np.isnan(ref.nodata)
        decoded = out.read()
    with rasterio.open(tmp_path / "rec.tif") as rec:
        assert np.array_equal(decoded, rec.read())
    assert [b["kind"] for b in stats.bands] == ["db", "db"]


@pytest.mark.shared_data
@pytest.mark.slow
def test_polarimetric_stack_gains_from_prediction(shared_sar_dir):
    """AIRSAR T11/T22/T33 stacked: one file with inter-band prediction against the same file without, at
    quality 5 (bench/multiband.py measures 20-23 % fewer bytes than separate files at equal PSNR at 0.2-0.5 bpp)."""
    bands = []
    for i in (1, 2, 3):
        with rasterio.open(shared_sar_dir / f"airsar_sf_T{i}{i}_900x1024.tif") as ds:
            bands.append(ds.read(1))
    joint = api.compress_array(np.stack(bands), quality=5)
    alone = api.compress_array(np.stack(bands), quality=5, interband=False)
    assert len(joint.data) < 0.85 * len(alone.data)
    for j, a in zip(joint.stats.bands, alone.stats.bands):
        assert j["psnr_db"] > a["psnr_db"] - 0.15


def test_bands_of_different_data_types_are_refused_together_and_coded_one_at_a_time(tmp_path):
    """A VRT stack of a uint16 band, a float32 dB band and a complex band was coded in band 1's type: the complex
    band as its real part, the dB band decoded as uint16 (negative values lost), exit code 0."""
    from osgeo import gdal

    scene = simulate_scene(96, 128, looks=4, seed=1)[0].astype(np.float64)
    rng = np.random.default_rng(0)
    layers = {
        "u16.tif": np.clip(np.sqrt(scene) * 300, 1, 65535).astype("uint16"),
        "db.tif": (10 * np.log10(scene)).astype("float32"),
        "slc.tif": (np.sqrt(scene / 2) * (rng.normal(size=scene.shape) + 1j * rng.normal(size=scene.shape))).astype(
            "complex64"
        ),
    }
    for name, arr in layers.items():
        profile = {"driver": "GTiff", "width": 128, "height": 96, "count": 1, "dtype": arr.dtype.name}
        with rasterio.open(
            tmp_path / name, "w", crs=CRS.from_epsg(32631), transform=from_origin(0, 0, 10, 10), **profile
        ) as ds:
            ds.write(arr, 1)
    stack = tmp_path / "stack.vrt"
    gdal.BuildVRT(str(stack), [str(tmp_path / name) for name in layers], separate=True).FlushCache()
    with pytest.raises(InputError, match="band 1 uint16, band 2 float32, band 3 complex64"):
        api.compress_file(stack, tmp_path / "all.sarz")
    assert not (tmp_path / "all.sarz").exists()
    assert api.compress_file(stack, tmp_path / "db.sarz", band=2).kind == "db"
    decoded = api.decompress_array(tmp_path / "db.sarz")
    assert decoded.dtype == np.float32 and decoded.min() < -5  # negative dB kept
    assert api.compress_file(stack, tmp_path / "slc.sarz", band=3).kind == "complex"
    intensity = np.abs(layers["slc.tif"].astype(np.complex128)) ** 2
    assert np.mean(api.decompress_array(tmp_path / "slc.sarz")) / np.mean(intensity) == pytest.approx(1.0, abs=0.03)


def test_the_summary_line_of_several_bands_names_their_kinds(tmp_path, capsys):
    """It showed band 1's kind and reason beside the no-signal zeros of every band (all of them in band 3)."""
    stack = _write(tmp_path / "stack.tif", _channels(64, 80, (1.0, 0.5)), ["HH", "HV"])
    assert main(["-q", "compress", str(stack), str(tmp_path / "s.sarz")]) == 0
    assert ", 2 bands (intensity), " in capsys.readouterr().out


def test_a_damaged_reference_chunk_is_named_for_the_band_it_holds(tmp_path):
    """A predicted band's read failed on its reference band's damaged chunk with 'chunk 1 of 3 does not belong to
    this file or is corrupt', which says nothing of band 1 (the reference); verify did not say that the predicted
    bands lose those rows too."""
    from sar_compressor.engine.codec.passes.window_decode import decode_window
    from sar_compressor.engine.verify import verify_file

    stack = _write(tmp_path / "stack.tif", _channels(64, 80, (1.0, 0.5, 0.25)), ["HH", "HV", "VV"])
    sarz = tmp_path / "s.sarz"
    api.compress_file(stack, sarz, quality=6)
    with ContainerReader(sarz) as reader:
        bands = reader.header["bands"]
        assert [b["reference"] for b in bands[1:]] == [0, 0]  # the first coded band, the others predicted from it
        start = reader._offsets[0]
        reference, holds = bands[0]["source_band"], reader.holds(0)
    assert holds == f"band {reference}'s tile 1 of 1"
    data = bytearray(sarz.read_bytes())
    data[start + 12] ^= 0xFF  # in chunk 1's payload
    sarz.write_bytes(bytes(data))
    predicted = bands[1]["source_band"]
    with pytest.raises(ContainerError, match=f"chunk 1 of 3 does not belong .*it holds band {reference}'s tile 1"):
        decode_window(sarz, (0, 0, 8, 8), 0, band=predicted)
    with pytest.raises(ContainerError, match=rf"chunk 1 of 3 \(band {reference}'s tile 1 of 1\) damaged.*predicted"):
        verify_file(sarz)
    single = tmp_path / "one.sarz"
    api.compress_file(stack, single, quality=6, band=1)
    data = bytearray(single.read_bytes())
    with ContainerReader(single) as reader:
        data[reader._offsets[0] + 12] ^= 0xFF
    single.write_bytes(bytes(data))
    with pytest.raises(ContainerError, match=r"chunk 1 of 1 damaged .*cannot be decoded$"):  # no band predicted
        verify_file(single)
