"""The adaptive loop filter (engine.codec.restoration.loop_filter): fitted by the encoder where it pays, carried in
the chunk, applied by the decoder; off for the ablation; files written before it (five streams) still decode."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from sar_compressor.engine import api
from sar_compressor.engine.codec.format.container import ContainerReader, container_bytes
from sar_compressor.engine.codec.format.layout import STREAMS
from sar_compressor.engine.codec.format.sarz_header import LEGACY_STREAMS
from sar_compressor.engine.codec.restoration import loop_filter as lf
from sar_compressor.engine.errors import ContainerError
from sar_compressor.engine.metrics import evaluate_arrays
from sar_compressor.engine.simulate import simulate_scene


def _smooth_and_noisy(size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    clean = np.cumsum(np.cumsum(rng.normal(0, 1, (size, size)), 0), 1)
    clean = (clean - clean.mean()) / clean.std() * 4.0 - 10.0
    return clean.astype(np.float32), (clean + rng.normal(0, 1, clean.shape)).astype(np.float32)


def test_fit_lowers_the_error_and_its_stream_round_trips():
    clean, noisy = _smooth_and_noisy()
    use = np.ones(clean.shape, bool)
    fitted, out = lf.fit(noisy, clean, use, -10.0, 0.5, 30.0, ssim=False)
    assert np.mean((out - clean) ** 2) < 0.5 * np.mean((noisy - clean) ** 2)
    again = lf.LoopFilter.decode(fitted.encode(), "test")
    np.testing.assert_array_equal(again.apply(noisy, -10.0), out)  # what the decoder gets
    assert lf.fit(noisy, clean, use, -10.0, 0.5, 30.0, ssim=False)[0].encode() == fitted.encode()  # deterministic


def test_a_class_left_out_keeps_its_pixels_exactly():
    clean, noisy = _smooth_and_noisy()
    fitted, _ = lf.fit(noisy, clean, np.ones(clean.shape, bool), -10.0, 0.5, 30.0, ssim=False)
    fitted.coefficients[1] = 0
    classes = lf.activity_classes(noisy, fitted.thresholds)
    out = fitted.apply(noisy, -10.0)
    np.testing.assert_array_equal(out[classes == 1], noisy[classes == 1])
    assert np.any(out[classes == 0] != noisy[classes == 0])


def test_no_filter_where_nothing_pays():
    clean, noisy = _smooth_and_noisy(64)
    assert lf.fit(noisy[:3, :5], clean[:3, :5], np.ones((3, 5), bool), 0.0, 0.5, 30.0, ssim=False) is None
    assert lf.fit(noisy, clean, np.zeros(clean.shape, bool), 0.0, 0.5, 30.0, ssim=False) is None
    assert lf.fit(clean, clean, np.ones(clean.shape, bool), 0.0, 0.5, 30.0, ssim=False) is None  # nothing to fix
    huge_step = 1e4  # the coefficients' bits cost more than any gain
    assert lf.fit(noisy, clean, np.ones(clean.shape, bool), 0.0, huge_step, 30.0, ssim=False) is None


def test_filtering_some_rows_gives_the_whole_tiles_values_there():
    clean, noisy = _smooth_and_noisy(200)
    fitted, _ = lf.fit(noisy, clean, np.ones(clean.shape, bool), -10.0, 0.5, 30.0, ssim=False)
    rows = np.array([0, 1, 2, 50, 51, 197, 198, 199])  # the edges reflect, as in the whole tile
    np.testing.assert_array_equal(fitted.apply(noisy, -10.0, rows=rows), fitted.apply(noisy, -10.0)[rows])


def test_where_the_ssim_guard_turns_every_class_down_no_whole_tile_is_filtered(monkeypatch):
    clean, noisy = _smooth_and_noisy()
    use = np.ones(clean.shape, bool)
    assert lf.fit(noisy, clean, use, -10.0, 0.5, 30.0, ssim=True) is not None  # kept: SSIM is not lowered here
    monkeypatch.setattr(lf, "ssim_loss", lambda target, before, after, span: np.ones_like(after))  # lowered
    whole_tiles = []
    monkeypatch.setattr(lf, "_pays", lambda *args: whole_tiles.append(args) or np.ones(lf.CLASSES, bool))
    assert lf.fit(noisy, clean, use, -10.0, 0.5, 30.0, ssim=True) is None
    assert not whole_tiles  # turned down on the guard rows alone (single-look tiles: the common case)


def test_the_classes_that_pay_are_refitted_on_every_row_and_only_they(monkeypatch):
    clean, noisy = _smooth_and_noisy(320)
    use = np.ones(clean.shape, bool)
    fitted, _ = lf.fit(noisy, clean, use, -10.0, 0.5, 30.0, ssim=False)
    classes = lf.activity_classes(noisy, fitted.thresholds)
    every_row, _ = lf._solve(*lf._normal_equations(noisy, clean, use, classes, np.arange(320), -10.0))
    kept = np.any(fitted.coefficients != 0, axis=1)
    assert kept.any() and lf._sample_rows(clean.shape).size < 320
    np.testing.assert_array_equal(fitted.coefficients[kept], every_row[kept])  # not the sampled rows' fit
    normal, systems = lf._normal_equations, []
    monkeypatch.setattr(lf, "_normal_equations", lambda *args: systems.append(args[4].size) or normal(*args))
    monkeypatch.setattr(lf, "ssim_loss", lambda target, before, after, span: np.ones_like(after))  # turned down
    assert lf.fit(noisy, clean, use, -10.0, 0.5, 30.0, ssim=True) is None
    assert systems == [lf._sample_rows(clean.shape).size]  # single-look tiles pay for no whole-tile fit


def test_applies_on_tiles_narrower_than_its_support():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    filt = lf.LoopFilter(np.array([1, 2, 3], np.uint16), np.full((lf.CLASSES, lf.N_TAPS), 100, np.int16))
    assert filt.apply(x, 0.0).shape == (2, 3)


@pytest.mark.parametrize(
    "data",
    [
        b"\x09\x03",  # classes and radius this version does not know
        struct.pack("<BB", lf.CLASSES, lf.RADIUS) + b"not zlib",
        struct.pack("<BB", lf.CLASSES, lf.RADIUS) + zlib.compress(b"\x00" * 10),
        struct.pack("<BB", lf.CLASSES, lf.RADIUS)
        + zlib.compress(np.array([3, 2, 1], "<u2").tobytes() + bytes(2 * lf.CLASSES * lf.N_TAPS)),
    ],
)
def test_malformed_streams_are_container_errors(data):
    with pytest.raises(ContainerError, match="chunk 7"):
        lf.LoopFilter.decode(data, "chunk 7")


def _clean_scene() -> np.ndarray:
    """A scene with structure and no speckle (a multilooked product's limit): where the filter pays."""
    _, reflectivity = simulate_scene(512, 512, looks=16, seed=5)
    return reflectivity.astype(np.float32)


def _filter_streams(data: bytes) -> list[bytes]:
    with ContainerReader(data) as reader:
        return [_streams(reader.read_chunk(i))[-1] for i in range(reader.n_chunks)]


def _streams(chunk: bytes) -> list[bytes]:
    rows, cols, n = struct.unpack_from("<IIB", chunk)
    lengths = struct.unpack_from(f"<{n}I", chunk, 9)
    pos, out = 9 + 4 * n, []
    for length in lengths:
        out.append(chunk[pos : pos + length])
        pos += length
    return out


def test_the_codec_filters_where_it_pays_and_decodes_to_the_reconstruction():
    arr = _clean_scene()
    on = api.compress_array(arr, quality=6)
    off = api.compress_array(arr, quality=6, loop_filter=False)
    assert api.read_header(on.data)["streams"] == list(STREAMS)
    assert api.read_header(on.data)["bands"][0]["stats"]["loop_filtered_tiles"] == 1
    assert any(_filter_streams(on.data)) and not any(_filter_streams(off.data))
    assert "loop_filtered_tiles" not in api.read_header(off.data)["bands"][0]["stats"]  # a zero is not stored
    np.testing.assert_array_equal(api.decompress_array(on.data), on.reconstruction)
    gain = evaluate_arrays(arr, on.reconstruction)["psnr_db"] - evaluate_arrays(arr, off.reconstruction)["psnr_db"]
    assert gain > 0.03  # measured +0.07 dB for 74 bytes more (6,238 against 6,168)
    assert on.stats.bands[0]["psnr_db"] > off.stats.bands[0]["psnr_db"]
    assert "loop filter on 1 of 1 tiles" in on.stats.band_lines()[0]


def test_files_written_before_the_loop_filter_still_decode():
    """Format 6 files made before the sixth stream list five streams per chunk: they decode as they did."""
    arr = _clean_scene()
    made = api.compress_array(arr, quality=6, loop_filter=False)
    with ContainerReader(made.data) as reader:
        header = dict(reader.header)
        chunks = [_five_streams(reader.read_chunk(i)) for i in range(reader.n_chunks)]
    header["streams"] = list(STREAMS[:LEGACY_STREAMS])
    legacy = container_bytes(header, chunks)
    np.testing.assert_array_equal(api.decompress_array(legacy), made.reconstruction)
    header["streams"] = list(STREAMS[:LEGACY_STREAMS]) + ["learned_thing"]
    with pytest.raises(ContainerError, match="chunk streams"):
        api.decompress_array(container_bytes(header, chunks))


def _five_streams(chunk: bytes) -> bytes:
    rows, cols, _ = struct.unpack_from("<IIB", chunk)
    streams = _streams(chunk)[:LEGACY_STREAMS]
    head = struct.pack("<IIB", rows, cols, len(streams)) + b"".join(struct.pack("<I", len(s)) for s in streams)
    return head + b"".join(streams)


def test_info_says_where_the_filter_is(tmp_path, capsys):
    from sar_compressor.engine.cli import main

    arr = _clean_scene()
    made = api.compress_array(arr, quality=6)
    (tmp_path / "new.sarz").write_bytes(made.data)
    (tmp_path / "off.sarz").write_bytes(api.compress_array(arr, quality=6, loop_filter=False).data)
    with ContainerReader(made.data) as reader:
        header = {**reader.header, "streams": list(STREAMS[:LEGACY_STREAMS])}
        chunks = [_five_streams(reader.read_chunk(i)) for i in range(reader.n_chunks)]
    (tmp_path / "old.sarz").write_bytes(container_bytes(header, chunks))
    assert main(["info", str(tmp_path / "new.sarz")]) == 0
    assert "loop filter on 1 of 1 tiles" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "off.sarz")]) == 0
    assert "loop filter on 0 of 1 tiles" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "old.sarz")]) == 0
    assert "loop filter none (the file predates it)" in capsys.readouterr().out
