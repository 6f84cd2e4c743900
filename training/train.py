"""Train one variable-rate model (autoencoder + EntropyModel, 6 quality levels) and export it for the engine.

    python -m sar_compressor.training.train --model baseline --minutes 40 --out training/runs/NAME \\
        --export resources/models/baseline.pt [--npz PATH] [--images DIR] [--val-sar DIR] [--device auto]

Each step trains one quality level q (drawn per step) with loss lambda_q * (0.5 MSE + 0.5 (1 - SSIM)) + bpp.
The lambdas are calibrated during the first part of the run (a slow multiplicative controller pulls each
level's training bpp toward log-spaced targets 0.1..2 bpp), then frozen; from then on the best checkpoint is
chosen by the validation RD objective and early stopping watches it. A resume needs only <out>/last.pt.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..engine.errors import InputError
from . import data as D
from .losses import psnr, rd_loss, ssim

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEFAULT_NPZ = SHARED / "train-data" / "ucmerced_gray_256.npz"
DEFAULT_SAR = SHARED / "sar-data"
N_QUALITIES = 6


@dataclass
class TrainConfig:
    """Every knob of a run; stored in the checkpoints so a resume and the model card know how it was made."""

    model: str = "baseline"
    out: str = "training/runs/baseline"
    export: str | None = None
    npz: str | None = None
    images: str | None = None
    val_sar: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    patch: int | None = None
    val_patch: int = 256
    val_count: int = 8
    minutes: float | None = 45.0
    steps: int | None = None
    seed: int = 0
    resume: bool = False
    lr: float = 3e-4
    entropy_lr: float = 1e-3
    lr_drop_at: float = 0.85
    val_every: int = 250
    log_every: int = 25
    patience: int = 10
    calibrate_fraction: float = 0.3
    calibrate_gain: float = 0.03
    target_bpp: tuple[float, float] = (0.1, 2.0)
    lambda_ratio: tuple[float, float] = (1.5, 6.0)
    lambdas: list[float] | None = None
    optical_weight: float = 0.5
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    workers: int = 0
    grad_clip: float = 5.0
    ste: bool = True
    ssim_weight: float = 0.1

    def resolved(self, device: torch.device) -> TrainConfig:
        """Fill the device-dependent defaults: patch 128 / batch 8 on CPU, 256 / 16 on a GPU."""
        gpu = device.type == "cuda"
        self.patch = self.patch or (256 if gpu else 128)
        self.batch_size = self.batch_size or (16 if gpu else 8)
        self.export = self.export or str(Path(self.out) / f"{self.model}.pt")
        return self


def target_bpps(cfg: TrainConfig) -> list[float]:
    """Log-spaced bpp targets of the levels (quality 1 = smallest file)."""
    lo, hi = cfg.target_bpp
    return [lo * (hi / lo) ** (q / (N_QUALITIES - 1)) for q in range(N_QUALITIES)]


def initial_lambdas(cfg: TrainConfig) -> list[float]:
    """Starting lambdas (log-spaced 4..4000) that the calibration phase then adjusts, unless given."""
    if cfg.lambdas:
        if len(cfg.lambdas) != N_QUALITIES:
            raise InputError(f"--lambdas needs {N_QUALITIES} values, got {len(cfg.lambdas)}")
        return [float(v) for v in cfg.lambdas]
    return [4.0 * 1000.0 ** (q / (N_QUALITIES - 1)) for q in range(N_QUALITIES)]


def pick_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ---------------------------------------------------------------- data


@dataclass
class RunData:
    """The training stream and the fixed validation sets (name -> N x 1 x P x P tensor)."""

    train: D.MixedPatches
    val: dict[str, torch.Tensor]
    sources: list[str]
    vrange: tuple[float, float]


def build_data(cfg: TrainConfig) -> RunData:
    """Simulator always; optical images (npz or folder) and real SAR validation crops when given."""
    patch = int(cfg.patch or 128)
    sim = D.SimulatorSource(patch)
    sources: list[D.PatchSource] = [sim]
    weights = [1.0 - cfg.optical_weight]
    names = ["simulator"]
    val = {"sim": D.fixed_batch(D.SimulatorSource(cfg.val_patch), cfg.val_count, seed=10_000 + cfg.seed)}
    optical_path = cfg.images or cfg.npz
    if optical_path:
        images, classes = D.load_images(optical_path)
        train_idx, val_idx = D.split_per_class(classes, per_class=3, seed=cfg.seed)
        sources.append(D.OpticalSource(D.subset(images, train_idx), patch))
        weights.append(cfg.optical_weight)
        names.append(f"optical:{optical_path} ({len(train_idx)} train / {len(val_idx)} val images)")
        val_src = D.OpticalSource(D.subset(images, val_idx), cfg.val_patch)
        val["optical"] = D.fixed_batch(val_src, cfg.val_count, seed=20_000 + cfg.seed)
    if cfg.val_sar:
        crops = D.load_sar_crops(cfg.val_sar, cfg.val_patch)
        if crops:
            val["sar"] = torch.from_numpy(np.stack([c for _, c in crops])[:, None])
            names.append(f"val-sar:{cfg.val_sar} ({len(crops)} crops)")
    if len(sources) == 1:
        weights = [1.0]
    vrange = D.typical_range(sources, n=8, seed=30_000 + cfg.seed)
    return RunData(D.MixedPatches(sources, weights, seed=cfg.seed), val, names, vrange)


# ---------------------------------------------------------------- trainer


class Trainer:
    """Model + entropy model + optimiser + the bookkeeping a resumable, budgeted run needs."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        from ..engine.entropy import EntropyModel
        from ..engine.models.registry import build_model

        self.cfg = cfg
        self.device = device
        self.amp = device.type == "cuda"
        self.model = build_model({"name": cfg.model}).to(device)
        self.entropy = EntropyModel(latent_channels=self.model.latent_channels).to(device)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": self.model.parameters(), "lr": cfg.lr, "weight_decay": 1e-4},
                {"params": self.entropy.parameters(), "lr": cfg.entropy_lr, "weight_decay": 0.0},
            ]
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.lambdas = initial_lambdas(cfg)
        self.targets = target_bpps(cfg)
        self.calibrated = bool(cfg.lambdas)
        self.step = 0
        self.elapsed = 0.0
        self.skipped_nonfinite = 0
        self.skipped_overflow = 0
        self.best: float | None = None
        self.best_step = -1
        self.bad_validations = 0

    # -- one step

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16, enabled=self.amp)

    def _forward(self, x: torch.Tensor, q: int):
        with self._autocast():
            y = self.model.encode(x)
        y_hat, likelihoods = self.entropy(y.float(), q, ste=self.cfg.ste)
        with self._autocast():
            x_hat = self.model.decode(y_hat)
        return rd_loss(x, x_hat.float(), self.entropy.bits(likelihoods), self.lambdas[q], self.cfg.ssim_weight)

    def _aux_loss(self) -> torch.Tensor | None:
        aux = getattr(self.entropy, "aux_loss", None)
        return aux() if callable(aux) else None

    def train_step(self, x: torch.Tensor, q: int) -> dict[str, float] | None:
        """One optimiser step on level q; None (a counted skip) for a non-finite batch, loss or gradient."""
        self.model.train()
        self.entropy.train()
        self.optimizer.zero_grad(set_to_none=True)
        x = x.to(self.device, non_blocking=True)
        if not bool(torch.isfinite(x).all()):
            self.skipped_nonfinite += 1
            return None
        terms = self._forward(x, q)
        aux = self._aux_loss()
        # D + R / lambda_q has the optimum of lambda_q * D + R but gradients of one scale at every level,
        # so the levels share the autoencoder fairly under one optimiser.
        loss = terms.loss / self.lambdas[q] + (aux if aux is not None else 0.0)
        if not bool(torch.isfinite(loss)):
            self.skipped_nonfinite += 1
            return None
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        if not bool(torch.isfinite(norm)):
            if self.amp:
                self.skipped_overflow += 1  # fp16 overflow: the scaler skips the step and lowers its scale
            else:
                self.skipped_nonfinite += 1
                self.optimizer.zero_grad(set_to_none=True)
                return None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {
            "q": q,
            "loss": float(terms.loss.detach()),
            "bpp": float(terms.bpp.detach()),
            "mse": float(terms.mse.detach()),
            "ssim": float(terms.ssim.detach()),
            "aux": float(aux.detach()) if aux is not None else 0.0,
        }

    def calibrate(self, q: int, bpp: float) -> None:
        """Nudge lambda_q toward its target bpp (multiplicative, slow); no-op once the lambdas are frozen."""
        if self.calibrated or not (bpp > 0 and math.isfinite(bpp)):
            return
        err = math.log(self.targets[q]) - math.log(bpp)
        self.lambdas[q] *= math.exp(self.cfg.calibrate_gain * max(-2.0, min(2.0, err)))
        self.project_lambdas()

    def project_lambdas(self) -> None:
        """Keep each lambda within [r_min, r_max] times the one below it.

        A target the architecture cannot reach (a 16-channel latent saturates well below 2 bpp) would
        otherwise drive its lambda to infinity and that level would spend bits for nothing; capped, the top
        levels stay on the model's rate-distortion frontier, r_max apart.
        """
        lo, hi = self.cfg.lambda_ratio
        for q in range(1, len(self.lambdas)):
            self.lambdas[q] = min(max(self.lambdas[q], lo * self.lambdas[q - 1]), hi * self.lambdas[q - 1])

    def set_lr(self, progress: float) -> None:
        """Constant learning rates, divided by 10 for the last part of the budget."""
        factor = 0.1 if progress >= self.cfg.lr_drop_at else 1.0
        for group, base in zip(self.optimizer.param_groups, (self.cfg.lr, self.cfg.entropy_lr)):
            group["lr"] = base * factor

    # -- validation

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, q: int) -> tuple[torch.Tensor, float]:
        """(reconstruction, bits) with hard quantisation, as the codec will see it."""
        self.model.eval()
        self.entropy.eval()
        x = x.to(self.device)
        y = self.model.encode(x).float()
        y_hat, likelihoods = self.entropy(y, q)
        return self.model.decode(y_hat).float().clamp(0, 1), float(self.entropy.bits(likelihoods))

    @torch.no_grad()
    def validate(self, val: dict[str, torch.Tensor], chunk: int = 8) -> dict[str, Any]:
        """Per set and level: bpp, PSNR, SSIM on [0, 1].

        `objective` = mean over sets and levels of D + bpp / lambda_q (the RD loss divided by lambda_q, so every
        level weighs the same whatever its lambda).
        """
        out: dict[str, Any] = {}
        objective = []
        for name, xs in val.items():
            levels = []
            for q in range(N_QUALITIES):
                bits, recons = 0.0, []
                for i in range(0, len(xs), chunk):
                    r, b = self.evaluate(xs[i : i + chunk], q)
                    recons.append(r.cpu())
                    bits += b
                rec = torch.cat(recons)
                bpp = bits / float(xs[:, 0].numel())
                s = float(ssim(rec, xs))
                mse = float(torch.mean((rec - xs) ** 2))
                w = self.cfg.ssim_weight
                objective.append((1 - w) * mse + w * (1 - s) + bpp / self.lambdas[q])
                levels.append({"bpp": bpp, "psnr": psnr(rec, xs), "ssim": s})
            out[name] = levels
        out["objective"] = float(np.mean(objective))
        return out

    # -- state

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "entropy": self.entropy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "lambdas": list(self.lambdas),
            "calibrated": self.calibrated,
            "skipped_nonfinite": self.skipped_nonfinite,
            "skipped_overflow": self.skipped_overflow,
            "best": self.best,
            "best_step": self.best_step,
            "bad_validations": self.bad_validations,
            "config": asdict(self.cfg),
        }

    def load_state(self, st: dict[str, Any]) -> None:
        self.model.load_state_dict(st["model"])
        self.entropy.load_state_dict(st["entropy"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.scaler.load_state_dict(st["scaler"])
        for key in (
            "step",
            "elapsed",
            "lambdas",
            "calibrated",
            "skipped_nonfinite",
            "skipped_overflow",
            "best",
            "best_step",
            "bad_validations",
        ):
            setattr(self, key, st[key])
        if not self.calibrated:
            self.project_lambdas()


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temp file then rename, so a crash never leaves a half-written checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------- the loop


class RunLog:
    """JSON lines in <out>/log.jsonl plus a short line on stdout for each record."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, record: dict[str, Any], line: str) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({**record, "time": round(time.time(), 2)}) + "\n")
        print(line, flush=True)


def level_of(seed: int, step: int) -> int:
    """The quality level trained at `step` (a pure function of seed and step, so resumes match)."""
    return int(np.random.default_rng([seed, step, 7]).integers(0, N_QUALITIES))


def progress_of(tr: Trainer) -> float:
    cfg = tr.cfg
    parts = []
    if cfg.steps:
        parts.append(tr.step / cfg.steps)
    if cfg.minutes:
        parts.append(tr.elapsed / (60.0 * cfg.minutes))
    return max(parts) if parts else 0.0


def run_validation(tr: Trainer, data: RunData, out: Path, log: RunLog) -> bool:
    """Validate, keep the best checkpoint, update early stopping; True when patience is exhausted."""
    res = tr.validate(data.val)
    improved = False
    if tr.calibrated and (tr.best is None or res["objective"] < tr.best):
        tr.best, tr.best_step, tr.bad_validations, improved = res["objective"], tr.step, 0, True
        save_atomic({"model": tr.model.state_dict(), "entropy": tr.entropy.state_dict(), **_meta(tr)}, out / "best.pt")
    elif tr.calibrated:
        tr.bad_validations += 1
    summary = " ".join(
        f"{name}:" + ",".join(f"{lv['bpp']:.3f}/{lv['psnr']:.2f}" for lv in levels)
        for name, levels in res.items()
        if name != "objective"
    )
    log.write(
        {"type": "val", "step": tr.step, "lambdas": tr.lambdas, "best": improved, **res},
        f"[val {tr.step}] obj {res['objective']:.4f}{' *' if improved else ''} (bpp/psnr per level) {summary}",
    )
    return tr.calibrated and tr.bad_validations >= tr.cfg.patience


def _meta(tr: Trainer) -> dict[str, Any]:
    return {"step": tr.step, "lambdas": list(tr.lambdas), "config": asdict(tr.cfg)}


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training into cfg.out; returns the exported model path."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cfg.threads)))
    try:
        return _train(cfg)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig) -> Path:
    device = pick_device(cfg.device)
    cfg = cfg.resolved(device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log = RunLog(out / "log.jsonl")
    torch.manual_seed(cfg.seed)
    tr = Trainer(cfg, device)
    if cfg.resume and (out / "last.pt").is_file():
        tr.load_state(torch.load(out / "last.pt", map_location=device, weights_only=False))
        torch.manual_seed(cfg.seed + tr.step)
        print(f"resumed from {out / 'last.pt'} at step {tr.step}", flush=True)
    data = build_data(cfg)
    log.write(
        {
            "type": "start",
            "step": tr.step,
            "device": str(device),
            "config": asdict(cfg),
            "data": data.sources,
        },
        f"training {cfg.model} on {device} ({torch.get_num_threads()} threads), data: {'; '.join(data.sources)}",
    )
    loop(tr, data, out, log)
    from .export import export_run

    return export_run(tr, data, out, log)


def _calibration_done(tr: Trainer) -> bool:
    return not tr.calibrated and progress_of(tr) >= tr.cfg.calibrate_fraction


def loop(tr: Trainer, data: RunData, out: Path, log: RunLog) -> None:
    """Steps until --steps, --minutes or early stopping; checkpoints at every validation."""
    cfg = tr.cfg
    b = int(cfg.batch_size or 8)
    loader = DataLoader(
        data.train,
        batch_size=b,
        sampler=range(tr.step * b, 2**62),
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
    )
    acc: list[dict[str, float]] = []
    t_log = time.time()
    t_prev = time.time()
    last_val = -1
    for x in loader:
        if cfg.steps and tr.step >= cfg.steps or progress_of(tr) >= 1.0:
            break
        tr.set_lr(progress_of(tr))
        q = level_of(cfg.seed, tr.step)
        rec = tr.train_step(x, q)
        tr.step += 1
        now = time.time()
        tr.elapsed += now - t_prev
        t_prev = now
        if rec is not None:
            tr.calibrate(q, rec["bpp"])
            acc.append(rec)
        if tr.step % cfg.log_every == 0:
            _log_train(tr, acc, (time.time() - t_log) / cfg.log_every, log)
            acc, t_log = [], time.time()
        if _calibration_done(tr):
            tr.calibrated = True
            log.write(
                {"type": "calibrated", "step": tr.step, "lambdas": tr.lambdas},
                f"lambdas frozen: {tr.lambdas}",
            )
        if tr.step % cfg.val_every == 0:
            last_val = tr.step
            stop = run_validation(tr, data, out, log)
            save_atomic(tr.state(), out / "last.pt")
            if stop:
                log.write({"type": "early_stop", "step": tr.step}, f"early stop at step {tr.step}")
                break
    if not tr.calibrated:
        tr.calibrated = True
        log.write({"type": "calibrated", "step": tr.step, "lambdas": tr.lambdas}, f"lambdas frozen: {tr.lambdas}")
    if last_val != tr.step:
        run_validation(tr, data, out, log)
    save_atomic(tr.state(), out / "last.pt")


def _log_train(tr: Trainer, acc: list[dict[str, float]], sec_per_step: float, log: RunLog) -> None:
    mean = {k: float(np.mean([r[k] for r in acc])) for k in ("loss", "bpp", "mse", "ssim", "aux")} if acc else {}
    lr = tr.optimizer.param_groups[0]["lr"]
    rec = {
        "type": "train",
        "step": tr.step,
        "elapsed": tr.elapsed,
        "sec_per_step": sec_per_step,
        "lr": lr,
        "skipped_nonfinite": tr.skipped_nonfinite,
        "skipped_overflow": tr.skipped_overflow,
        "lambdas": list(tr.lambdas),
        **mean,
    }
    log.write(
        rec,
        f"step {tr.step} {tr.elapsed / 60:.1f}min {sec_per_step:.3f}s/step "
        f"loss {mean.get('loss', float('nan')):.4f} "
        f"bpp {mean.get('bpp', float('nan')):.3f} ssim {mean.get('ssim', float('nan')):.3f} "
        f"skipped {tr.skipped_nonfinite}+{tr.skipped_overflow}",
    )


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(prog="python -m sar_compressor.training.train", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="baseline", help="registry name: baseline or resnet_lite_v2")
    p.add_argument("--out", default=None, help="run folder (log, checkpoints, PNGs); default training/runs/<model>")
    p.add_argument("--export", default=None, help="where to write the engine checkpoint; default <out>/<model>.pt")
    p.add_argument("--npz", default=None, help="optical images .npz (default ../shared/train-data npz if present)")
    p.add_argument("--images", default=None, help="folder of optical images (png/tif/jpg) instead of --npz")
    p.add_argument("--no-optical", action="store_true", help="simulator only, even if the default npz exists")
    p.add_argument("--val-sar", default=None, help="folder of real SAR GeoTIFFs for validation (default ../shared)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--patch", type=int, default=None)
    p.add_argument("--val-patch", type=int, default=256)
    p.add_argument("--val-count", type=int, default=8, help="validation patches per synthetic source")
    p.add_argument("--minutes", type=float, default=45.0, help="training time budget (0: none)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--patience", type=int, default=10, help="validations without improvement before stopping")
    p.add_argument("--calibrate-fraction", type=float, default=0.3)
    p.add_argument("--lambdas", type=float, nargs=N_QUALITIES, default=None, help="fixed lambdas (no calibration)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--workers", type=int, default=0, help="data loader processes")
    p.add_argument("--no-ste", action="store_true", help="decoder sees noisy latents instead of rounded ones")
    p.add_argument("--ssim-weight", type=float, default=0.1, help="w in D = (1 - w) MSE + w (1 - SSIM)")
    a = p.parse_args(argv)
    npz = a.npz
    if npz is None and a.images is None and not a.no_optical and DEFAULT_NPZ.is_file():
        npz = str(DEFAULT_NPZ)
    val_sar = a.val_sar if a.val_sar is not None else (str(DEFAULT_SAR) if DEFAULT_SAR.is_dir() else None)
    return TrainConfig(
        model=a.model,
        out=a.out or f"training/runs/{a.model}",
        export=a.export,
        npz=None if a.no_optical else npz,
        images=None if a.no_optical else a.images,
        val_sar=val_sar or None,
        device=a.device,
        batch_size=a.batch_size,
        patch=a.patch,
        val_patch=a.val_patch,
        val_count=a.val_count,
        minutes=a.minutes or None,
        steps=a.steps,
        seed=a.seed,
        resume=a.resume,
        lr=a.lr,
        val_every=a.val_every,
        log_every=a.log_every,
        patience=a.patience,
        calibrate_fraction=a.calibrate_fraction,
        lambdas=a.lambdas,
        threads=a.threads,
        workers=a.workers,
        ste=not a.no_ste,
        ssim_weight=a.ssim_weight,
    )


def main(argv: list[str] | None = None) -> int:
    try:
        path = train(parse_args(argv))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
