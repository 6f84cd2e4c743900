"""ResNet-lite: GDN downsampling stages plus residual blocks at 1/8 and 1/16 resolution.

More capacity at the same cost profile: the extra parameters sit where there are few pixels.
"""

from __future__ import annotations

from torch import Tensor, nn

from .base import GDN, SARAutoencoder, conv, deconv


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a LeakyReLU between them and an identity skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv(channels, channels, kernel=3, stride=1),
            nn.LeakyReLU(0.1, inplace=True),
            conv(channels, channels, kernel=3, stride=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResNetAutoencoder(SARAutoencoder):
    """Widths b, 2b, 4b, 8b over the four stride-2 stages. Encoder: one residual block at 1/8 and one at 1/16;
    decoder: two at each (it carries more capacity: it has to synthesise texture)."""

    def __init__(self, base_channels: int = 32, latent_channels: int = 16) -> None:
        super().__init__(latent_channels)
        b = base_channels
        self.base_channels = base_channels
        self.encoder = nn.Sequential(
            conv(1, b),
            GDN(b),
            conv(b, 2 * b),
            GDN(2 * b),
            conv(2 * b, 4 * b, kernel=3),
            GDN(4 * b),
            ResBlock(4 * b),
            conv(4 * b, 8 * b, kernel=3),
            ResBlock(8 * b),
            conv(8 * b, latent_channels, kernel=3, stride=1),
        )
        self.decoder = nn.Sequential(
            conv(latent_channels, 8 * b, kernel=3, stride=1),
            ResBlock(8 * b),
            ResBlock(8 * b),
            deconv(8 * b, 4 * b, kernel=3),
            GDN(4 * b, inverse=True),
            ResBlock(4 * b),
            ResBlock(4 * b),
            deconv(4 * b, 2 * b),
            GDN(2 * b, inverse=True),
            deconv(2 * b, b),
            GDN(b, inverse=True),
            deconv(b, 1),
        )
