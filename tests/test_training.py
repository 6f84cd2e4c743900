"""Training data (speckled optical images, simulator patches) and the differentiable losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sar_compressor.training import data as D
from sar_compressor.training.losses import rd_loss, ssim


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


def test_ssim_and_loss():
    x = torch.rand(2, 1, 32, 32)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    noisy = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    assert float(ssim(noisy, x)) < 0.9
    x_hat = noisy.clone().requires_grad_(True)
    terms = rd_loss(x, x_hat.half(), torch.tensor(2048.0), lam=10.0)
    assert terms.loss.dtype == torch.float32
    assert float(terms.bpp) == pytest.approx(2048.0 / (2 * 32 * 32))
    expected = 0.5 * float(terms.mse.detach()) + 0.5 * (1 - float(terms.ssim.detach()))
    assert float(terms.distortion.detach()) == pytest.approx(expected, rel=1e-5)
    assert float(terms.loss.detach()) == pytest.approx(10.0 * expected + float(terms.bpp), rel=1e-5)
    terms.loss.backward()
    assert torch.isfinite(x_hat.grad).all()
    mse_only = rd_loss(x, noisy, torch.tensor(0.0), lam=1.0, ssim_weight=0.0)
    assert float(mse_only.loss) == pytest.approx(float(mse_only.mse), rel=1e-5)
