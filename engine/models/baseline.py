"""Baseline: Balle-style conv + GDN autoencoder, widths growing with depth (parameters at low resolution)."""

from __future__ import annotations

from torch import nn

from .base import GDN, SARAutoencoder, conv, deconv


class BaselineAutoencoder(SARAutoencoder):
    """Four stride-2 5x5 stages with GDN, then a 3x3 head to the latents; the decoder mirrors it with IGDN.

    Widths (48, 96, 176, 128): the full- and half-resolution layers stay thin because they dominate CPU cost.
    """

    def __init__(self, latent_channels: int = 16, widths: tuple[int, int, int, int] = (48, 96, 176, 128)) -> None:
        super().__init__(latent_channels)
        c1, c2, c3, c4 = widths
        self.encoder = nn.Sequential(
            conv(1, c1),
            GDN(c1),
            conv(c1, c2),
            GDN(c2),
            conv(c2, c3),
            GDN(c3),
            conv(c3, c4),
            GDN(c4),
            conv(c4, latent_channels, kernel=3, stride=1),
        )
        self.decoder = nn.Sequential(
            conv(latent_channels, c4, kernel=3, stride=1),
            GDN(c4, inverse=True),
            deconv(c4, c3),
            GDN(c3, inverse=True),
            deconv(c3, c2),
            GDN(c2, inverse=True),
            deconv(c2, c1),
            GDN(c1, inverse=True),
            deconv(c1, 1),
        )
