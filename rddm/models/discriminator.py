"""The patch-GAN discriminator of the RVAE's stage 1 (pix2pix ``NLayerDiscriminator`` as used by LDM's VAE).
See ``docs/training.md``."""

from __future__ import annotations

import math

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from rawsynth.errors import ConfigError

__all__ = ["PatchDiscriminator"]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"norm must be 'group' or 'none', got {kind!r}")


class PatchDiscriminator(ModelMixin, ConfigMixin):
    """``(B, in_channels, H, W)`` image in ``[-1, 1]`` → ``(B, 1, h, w)`` real/fake logits per patch.

    Args:
        in_channels: image channels.
        base_channels: channels of the first layer (doubled per layer, at most 8×).
        num_layers: stride-2 layers (3: 70×70 receptive field).
        norm: ``"group"`` or ``"none"``.
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, base_channels: int = 64, num_layers: int = 3, norm: str = "group"):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, num_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < num_layers else 1
            layers += [nn.Conv2d(base_channels * prev, base_channels * mult, 4, stride, 1, bias=norm == "none"),
                       _norm(norm, base_channels * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(base_channels * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        for m in self.modules():  # pix2pix initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.GroupNorm):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)
