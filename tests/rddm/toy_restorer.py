"""A tiny conv-only stand-in for RDDM's inference interface (encode / denoise / decode / latent_factor) with a
known, small receptive field: every latent or output pixel depends on inputs at most one latent pixel away, so
tiling with a blending margin of >= 1 latent pixel must reproduce the untiled result to float precision."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rawsynth.mns import Pattern, cfa_masks

PATTERN_CODE = {p: i for i, p in enumerate(Pattern)}


class ToyRDDM(nn.Module):
    """``latent_factor`` 2, UNet-like grid multiple 2; pattern-dependent encoder and denoiser (one bias per
    pattern, like a LoRA group per pattern), prompt-dependent denoiser. Records the patterns it is called with."""

    latent_factor = 2
    latent_multiple = 2

    def __init__(self, seed: int = 0, radius_px: int = 1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        k = 2 * radius_px + 1
        self.enc1 = nn.Conv2d(3, 8, k, padding=radius_px)
        self.enc2 = nn.Conv2d(8, 4, 2, stride=2)
        self.unet = nn.Conv2d(4, 4, 3, padding=1)
        self.dec = nn.Conv2d(4, 12, 3, padding=1)
        self.pattern_bias = nn.Parameter(torch.randn(4, 4, generator=g) * 0.1)
        for m in (self.enc1, self.enc2, self.unet, self.dec):
            nn.init.normal_(m.weight, std=0.2, generator=g)
            nn.init.normal_(m.bias, std=0.05, generator=g)
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def encode(self, raw, patterns, generator=None, sample=False):
        pats = [Pattern(p) for p in patterns]
        self.calls.append(("encode", tuple(p.value for p in pats)))
        b, _, h, w = raw.shape
        x = (2 * raw - 1) * cfa_masks(pats, b, h, w, raw.device, raw.dtype)
        return self.enc2(torch.tanh(self.enc1(x)))

    def denoise(self, z, patterns, prompt_embeds):
        pats = [Pattern(p) for p in patterns]
        self.calls.append(("denoise", tuple(p.value for p in pats)))
        bias = self.pattern_bias[[PATTERN_CODE[p] for p in pats]][:, :, None, None]
        return z - 0.5 * self.unet(z) + bias + prompt_embeds.mean(dim=(1, 2))[:, None, None, None]

    def decode(self, z0):
        return F.pixel_shuffle(self.dec(z0), 2) * 0.5 + 0.5


def toy_mosaic(h: int, w: int, pattern: str = "RGGB", seed: int = 0) -> torch.Tensor:
    """A smooth-plus-noise ``(1, 1, h, w)`` mosaic in about ``[0, 1]``."""
    from rawsynth.mns import mosaic

    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    rgb = torch.stack([yy, xx, 0.5 * (yy + xx)])[None] * 0.8 + 0.1
    return (mosaic(rgb, pattern) + 0.02 * torch.randn(1, 1, h, w, generator=g)).float()
