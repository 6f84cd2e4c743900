"""Rate-distortion loss: lambda_q * (0.5 * MSE + 0.5 * (1 - SSIM)) + bpp, always evaluated in fp32.

SSIM is the usual Wang et al. (2004) index with an 11x11 gaussian window (sigma 1.5) on [0, 1] images; it is
differentiable so it can drive training. Inputs are cast to fp32 first: AMP autocast never touches the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

_C1 = 0.01**2
_C2 = 0.03**2


def gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    """Normalised 2-D gaussian kernel shaped (1, 1, size, size) for a single-channel conv."""
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM over the batch of [N, 1, H, W] images in [0, 1] (valid convolution, no padding).

    Images smaller than the window fall back to a window of their own size so tiny test patches still work.
    """
    x = x.float()
    y = y.float()
    size = min(window, x.shape[-1], x.shape[-2])
    w = gaussian_window(size, sigma, device=x.device)
    mu_x = F.conv2d(x, w)
    mu_y = F.conv2d(y, w)
    sxx = F.conv2d(x * x, w) - mu_x**2
    syy = F.conv2d(y * y, w) - mu_y**2
    sxy = F.conv2d(x * y, w) - mu_x * mu_y
    num = (2 * mu_x * mu_y + _C1) * (2 * sxy + _C2)
    den = (mu_x**2 + mu_y**2 + _C1) * (sxx + syy + _C2)
    return (num / den).mean()


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1] (peak 1), from the batch MSE."""
    mse = F.mse_loss(x.float(), y.float()).item()
    return float("inf") if mse <= 0 else float(-10.0 * torch.log10(torch.tensor(mse)).item())


@dataclass
class RDTerms:
    """The parts of one rate-distortion loss evaluation (tensors so the loss can be back-propagated)."""

    loss: torch.Tensor
    distortion: torch.Tensor
    mse: torch.Tensor
    ssim: torch.Tensor
    bpp: torch.Tensor


def rd_loss(x: torch.Tensor, x_hat: torch.Tensor, bits: torch.Tensor, lam: float, ssim_weight: float = 0.5) -> RDTerms:
    """lambda * ((1 - w) * MSE + w * (1 - SSIM)) + bits per pixel of the batch, in fp32 (w = 0.5 by default).

    `bits` is the total bit count of the batch's latents (from the entropy model); pixels are N * H * W.
    """
    x = x.float()
    x_hat = x_hat.float()
    n, _, h, w = x.shape
    mse = F.mse_loss(x_hat, x)
    s = ssim(x_hat, x)
    distortion = (1.0 - ssim_weight) * mse + ssim_weight * (1.0 - s)
    bpp = bits.float() / float(n * h * w)
    return RDTerms(loss=lam * distortion + bpp, distortion=distortion, mse=mse, ssim=s, bpp=bpp)
