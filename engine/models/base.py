"""Common base of the autoencoders: the contract the codec relies on (shape, downsample, eval clamp)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import InputError


class GDN(nn.Module):
    """Generalized divisive normalization (Balle 2016), inverse=True gives IGDN.

    y = x / sqrt(beta + gamma @ x^2). beta and gamma are squared parameters (always >= 0) plus a floor on
    beta, so the square root never sees zero or a negative value whatever the optimiser does.
    """

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-4) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_min = beta_min
        self.beta_p = nn.Parameter(torch.ones(channels))
        eye = torch.eye(channels) * (0.1**0.5)
        self.gamma_p = nn.Parameter(eye + 1e-3 * (1.0 - torch.eye(channels)))

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.float32 and not torch.is_autocast_enabled(x.device.type):
            return self._normalize(x)
        # fp16 would overflow in x^2 (and its sqrt in IGDN): always normalise in float32.
        with torch.autocast(x.device.type, enabled=False):
            return self._normalize(x.float()).to(x.dtype)

    def _normalize(self, x: Tensor) -> Tensor:
        beta_p, gamma_p = self.beta_p.float(), self.gamma_p.float()
        beta = beta_p * beta_p + self.beta_min
        gamma = (gamma_p * gamma_p)[:, :, None, None]
        norm = F.conv2d(x * x, gamma, beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


def conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    """'Same' convolution; stride 2 halves the size exactly for even inputs."""
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that exactly doubles the size (inverse of `conv`)."""
    return nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1)


class SARAutoencoder(nn.Module):
    """Fully convolutional autoencoder: N x 1 x H x W in [0,1] -> N x C x H/16 x W/16 latents and back.

    Subclasses set `self.encoder` and `self.decoder`. The decoder output is raw (unclamped, no sigmoid) in
    training mode so the loss sees its true error; in eval mode it is clamped to [0,1], the normalised range.
    """

    downsample = 16

    def __init__(self, latent_channels: int = 16) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        self.encoder: nn.Module
        self.decoder: nn.Module

    def encode(self, x: Tensor) -> Tensor:
        """Latents of a batch whose height and width are multiples of 16."""
        if x.dim() != 4 or x.shape[1] != 1:
            raise InputError(f"encode expects N x 1 x H x W, got {tuple(x.shape)}")
        if x.shape[2] % self.downsample or x.shape[3] % self.downsample:
            raise InputError(f"height and width must be multiples of {self.downsample}, got {tuple(x.shape)}")
        return self.encoder(x)

    def decode(self, y: Tensor) -> Tensor:
        """Reconstruction at 16x the latent size; clamped to [0,1] in eval mode only."""
        if y.dim() != 4 or y.shape[1] != self.latent_channels:
            raise InputError(f"decode expects N x {self.latent_channels} x h x w, got {tuple(y.shape)}")
        out = self.decoder(y)
        return out if self.training else out.clamp(0.0, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        """Autoencode without quantisation (for smoke tests; training goes through the entropy model)."""
        return self.decode(self.encode(x))
