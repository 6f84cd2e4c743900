"""Training data (speckled optical images, simulator patches)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sar_compressor.training import data as D


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 96, 96), dtype=np.uint8)
    classes = np.array(["a", "b", "c"] * 4)
    path = tmp_path_factory.mktemp("npz") / "small.npz"
    np.savez(path, images=images, classes=classes)
    return path


def test_simulator_patches_shape_and_range():
    ds = D.MixedPatches([D.SimulatorSource(64)], [1.0], seed=3)
    a, b = ds[0], ds[1]
    assert a.shape == (1, 64, 64) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, ds[0]), "item i must be a pure function of (seed, i)"
    assert not torch.equal(a, b)


def test_npz_dataset_split_and_patches(small_npz):
    images, classes = D.load_images(small_npz)
    train_idx, val_idx = D.split_per_class(classes, per_class=1, seed=0)
    assert len(val_idx) == 3 and sorted(set(classes[val_idx])) == ["a", "b", "c"]
    assert len(np.intersect1d(train_idx, val_idx)) == 0 and len(train_idx) == 9
    src = D.OpticalSource(D.subset(images, train_idx), 64)
    x = src.sample(np.random.default_rng(1))
    assert x.shape == (64, 64) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0 and x.std() > 0.01


def test_image_folder_dataset(tmp_path):
    import matplotlib.image as mpimg

    for cls in ("x", "y"):
        (tmp_path / cls).mkdir()
        mpimg.imsave(tmp_path / cls / "img.png", np.random.default_rng(0).random((80, 80, 3)))
    images, classes = D.load_images(tmp_path)
    assert len(images) == 2 and images[0].dtype == np.uint8 and images[0].shape == (80, 80)
    assert sorted(classes) == ["x", "y"]


def test_load_images_errors(tmp_path):
    from sar_compressor.engine.errors import InputError

    with pytest.raises(InputError):
        D.load_images(tmp_path / "missing.npz")
    with pytest.raises(InputError):
        D.load_images(tmp_path)  # empty folder
