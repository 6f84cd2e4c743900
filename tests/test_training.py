"""Training pipeline: data shapes and range, the loss, a tiny end-to-end run, non-finite skipping, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sar_compressor.training import data as D
from sar_compressor.training.losses import rd_loss, ssim
from sar_compressor.training.train import TrainConfig, Trainer, build_data, parse_args, train


def tiny_config(tmp_path, **kw) -> TrainConfig:
    base = dict(
        out=str(tmp_path / "run"),
        patch=64,
        batch_size=2,
        val_patch=64,
        val_count=2,
        steps=3,
        minutes=None,
        val_every=2,
        log_every=1,
        threads=1,
        calibrate_fraction=0.5,
    )
    base.update(kw)
    return TrainConfig(**base)


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


def test_tiny_run_outputs_and_export(tmp_path, small_npz):
    from sar_compressor.engine.models.checkpoint import load_checkpoint

    cfg = tiny_config(tmp_path, npz=str(small_npz))
    path = train(cfg)
    out = tmp_path / "run"
    for name in ("log.jsonl", "curves.png", "samples.png", "last.pt", "best.pt", "summary.json"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {"start", "train", "val", "export"} <= {r["type"] for r in records}
    loaded = load_checkpoint(path)
    assert loaded.entropy is not None and loaded.name == "baseline"
    assert len(loaded.config["quality"]["lambdas"]) == 6
    y = loaded.model.encode(torch.rand(1, 1, 64, 64))[0]
    s = loaded.entropy.quantize(y, 2)
    assert np.array_equal(loaded.entropy.decode(loaded.entropy.encode(s, 2), 2, s.shape), s)


def test_nonfinite_batch_is_skipped_and_counted(tmp_path):
    cfg = tiny_config(tmp_path).resolved(torch.device("cpu"))
    tr = Trainer(cfg, torch.device("cpu"))
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    x = torch.rand(2, 1, 64, 64)
    x[0, 0, 3, 3] = float("nan")
    assert tr.train_step(x, 0) is None
    assert tr.skipped_nonfinite == 1
    assert all(torch.equal(before[k], v) for k, v in tr.model.state_dict().items())
    assert tr.train_step(torch.rand(2, 1, 64, 64), 0) is not None
    assert tr.skipped_nonfinite == 1


def test_resume_continues_step_counter(tmp_path):
    train(tiny_config(tmp_path, steps=2, val_every=2))
    cfg = tiny_config(tmp_path, steps=4, val_every=2, resume=True)
    train(cfg)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    starts = [r["step"] for r in records if r["type"] == "start"]
    assert starts == [0, 2]
    train_steps = [r["step"] for r in records if r["type"] == "train"]
    assert train_steps == [1, 2, 3, 4]
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert last["step"] == 4


def test_build_data_with_sar_crops(tmp_path, shared_sar_dir):
    cfg = tiny_config(tmp_path, val_sar=str(shared_sar_dir))
    data = build_data(cfg)
    sar = data.val["sar"]
    assert sar.shape[1:] == (1, 64, 64) and len(sar) >= 8
    assert float(sar.min()) >= 0.0 and float(sar.max()) <= 1.0


def test_cli_defaults_are_cpu_friendly(tmp_path):
    cfg = parse_args(["--out", str(tmp_path / "r"), "--no-optical", "--val-sar", ""])
    assert cfg.model == "baseline" and cfg.npz is None and cfg.val_sar is None
    assert cfg.minutes and cfg.minutes <= 50
    cfg = cfg.resolved(torch.device("cpu"))
    assert cfg.patch == 128 and cfg.batch_size == 8


def test_lambda_calibration_moves_toward_targets_and_keeps_order(tmp_path):
    cfg = tiny_config(tmp_path).resolved(torch.device("cpu"))
    tr = Trainer(cfg, torch.device("cpu"))
    before = list(tr.lambdas)
    tr.calibrate(0, bpp=1.0)  # far above the 0.1 bpp target of level 1: its lambda must fall
    assert tr.lambdas[0] < before[0]
    tr.lambdas[5] = 1e9  # an unreachable target would run away; the ratio cap holds it
    tr.calibrate(5, bpp=0.01)
    lo, hi = cfg.lambda_ratio
    assert all(lo * a <= b * (1 + 1e-9) and b <= hi * a * (1 + 1e-9) for a, b in zip(tr.lambdas, tr.lambdas[1:]))
    tr.calibrated = True
    frozen = list(tr.lambdas)
    tr.calibrate(0, bpp=5.0)
    assert tr.lambdas == frozen


def test_evaluate_model_on_a_raster(tmp_path, tiny_model_path):
    from sar_compressor.engine.simulate import write_scene
    from sar_compressor.training.evaluate import evaluate_model, markdown

    write_scene(tmp_path / "scene.tif", 96, 96, looks=2, seed=1)
    rows = evaluate_model(str(tiny_model_path), tmp_path, qualities=[1, 6])
    assert [r["quality"] for r in rows] == [1, 6]
    assert all(r["bpp"] > 0 and r["mean_ratio"] > 0 for r in rows)
    assert "scene" in markdown(rows)
