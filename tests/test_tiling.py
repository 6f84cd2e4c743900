"""Tiling: edge-aligned windows, partition-of-unity weights, padding of thin strips, exact identity blending."""

from __future__ import annotations

import numpy as np
import pytest

from sar_compressor.engine.errors import CancelledError, InputError
from sar_compressor.engine.tiling import (
    TileBlender,
    hann_weights,
    pad_to_multiple,
    process_array,
    tile_grid,
)

RNG = np.random.default_rng(1)


@pytest.mark.parametrize(("height", "width"), [(1, 1), (100, 700), (256, 256), (257, 513), (1000, 300)])
@pytest.mark.parametrize("overlap", [0, 16, 32])
def test_tile_grid_covers_and_ends_at_the_edge(height, width, overlap):
    windows = tile_grid(height, width, tile=256, overlap=overlap)
    covered = np.zeros((height, width), dtype=np.int32)
    for win in windows:
        assert win.row >= 0 and win.col >= 0
        assert win.row + win.height <= height and win.col + win.width <= width
        covered[win.slices] += 1
    assert covered.min() >= 1
    assert max(w.row + w.height for w in windows) == height
    assert max(w.col + w.width for w in windows) == width


def test_tile_grid_stride_and_validation():
    rows = sorted({w.row for w in tile_grid(600, 10, tile=256, overlap=32)})
    assert rows == [0, 224, 344]
    with pytest.raises(ValueError):
        tile_grid(100, 100, tile=64, overlap=40)


@pytest.mark.parametrize("overlap", [1, 8, 32, 64])
def test_weights_of_neighbours_sum_to_one(overlap):
    tile = 128
    w = hann_weights(tile, overlap)
    assert w.shape == (tile, tile) and w.dtype == np.float32
    assert np.all(w > 0) and w.max() <= 1.0
    if overlap < tile // 2:
        assert w[tile // 2, tile // 2] == 1.0
    row = hann_weights((1, tile), overlap)[0]
    stride = tile - overlap
    summed = row[stride:] + row[: tile - stride]
    np.testing.assert_allclose(summed, 1.0, atol=1e-6)


def test_accumulated_weight_map_is_a_partition_of_unity():
    blender = TileBlender(300, 200, overlap=32)
    for win in tile_grid(300, 200, tile=128, overlap=32):
        blender.add(win, np.ones((win.height, win.width), np.float32))
    np.testing.assert_allclose(blender.result(), 1.0, atol=1e-6)


def test_rectangular_weights():
    assert hann_weights((16, 256), 32).shape == (16, 256)
    assert np.all(hann_weights((1, 5), 32) > 0)


@pytest.mark.parametrize(("shape", "multiple"), [((1, 1), 16), ((1, 300), 16), ((300, 1), 16), ((17, 259), 16)])
@pytest.mark.parametrize("mode", ["reflect", "edge", "symmetric"])
def test_pad_to_multiple_thin_strips(shape, multiple, mode):
    arr = RNG.random(shape).astype(np.float32)
    out = pad_to_multiple(arr, multiple, mode=mode)
    assert out.shape[0] % multiple == 0 and out.shape[1] % multiple == 0
    np.testing.assert_array_equal(out[: shape[0], : shape[1]], arr)


def test_pad_to_multiple_reflects_and_keeps_leading_axes():
    arr = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    out = pad_to_multiple(arr, 4)
    assert out.shape == (1, 4, 4)
    np.testing.assert_array_equal(out[0, 0], [0, 1, 2, 1])
    assert pad_to_multiple(np.ones((32, 32)), 16).shape == (32, 32)
    assert pad_to_multiple(np.ones((3, 5)), 16, min_size=64).shape == (64, 64)
    with pytest.raises(InputError):
        pad_to_multiple(np.ones(5), 16)
    with pytest.raises(InputError):
        pad_to_multiple(np.ones((0, 5)), 16)


@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 300), (300, 1), (17, 259), (513, 700)])
@pytest.mark.parametrize("overlap", [0, 16, 32, 64])
def test_identity_reconstructs(height, width, overlap):
    arr = RNG.random((height, width)).astype(np.float32)
    calls: list[tuple[int, int]] = []
    out = process_array(
        arr, lambda t: t.copy(), tile=256, overlap=overlap, batch_size=3, progress=lambda d, t: calls.append((d, t))
    )
    assert out.shape == arr.shape and out.dtype == np.float32
    assert np.abs(out - arr).max() < 1e-6
    assert calls[-1][0] == calls[-1][1]
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_thin_strip_uses_small_tiles():
    shapes = []

    def fn(tiles):
        shapes.append(tiles.shape)
        return tiles

    process_array(np.ones((1, 300), np.float32), fn, tile=256, overlap=32)
    assert all(s[1] == 16 for s in shapes)


def test_pointwise_function_is_applied_everywhere():
    arr = RNG.random((140, 390)).astype(np.float32)
    out = process_array(arr, lambda t: 2 * t + 1, tile=64, overlap=16, multiple=16)
    np.testing.assert_allclose(out, 2 * arr + 1, atol=1e-5)


def test_cancel_and_bad_function():
    arr = np.ones((600, 600), np.float32)
    seen = []

    def fn(tiles):
        seen.append(len(tiles))
        return tiles

    with pytest.raises(CancelledError):
        process_array(arr, fn, tile=256, overlap=32, batch_size=2, cancel=lambda: len(seen) >= 1)
    assert len(seen) == 1
    with pytest.raises(ValueError, match="shape"):
        process_array(arr, lambda t: t[:, :8, :8], tile=256, overlap=32)
    with pytest.raises(ValueError, match="multiple"):
        process_array(arr, lambda t: t, tile=250, overlap=32)
    with pytest.raises(InputError):
        process_array(np.ones((2, 3, 4)), lambda t: t)
