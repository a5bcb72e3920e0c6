"""DDNet: the lightweight joint denoising + demosaicing network ``F_DD`` (paper §3.1, Eq. 2).
See ``docs/training.md``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from rawsynth._checks import check_bchw, check_even
from rawsynth.errors import ConfigError
from rawsynth.mns import Pattern, as_patterns, demosaic_bilinear

from ._io import resolve_model_dir

__all__ = ["DDNet", "unify_flips"]


def _unify_table() -> dict[Pattern, tuple[bool, bool]]:
    table = {}
    for p in Pattern:
        for hf, vf in ((False, False), (True, False), (False, True), (True, True)):
            q = p.hflipped(2) if hf else p
            q = q.vflipped(2) if vf else q
            if q is Pattern.RGGB:
                table[p] = (hf, vf)
                break
    return table


_UNIFY = _unify_table()


def unify_flips(pattern: Pattern | str) -> tuple[bool, bool]:
    """``(hflip, vflip)`` that turn an even-sized mosaic of ``pattern`` into an RGGB mosaic (their own inverse)."""
    return _UNIFY[Pattern(pattern)]



def _flip_each(x: torch.Tensor, flips: list[tuple[bool, bool]]) -> torch.Tensor:
    """Flip sample ``i`` of ``x`` by ``flips[i] = (hflip, vflip)``."""

    def one(t, hf, vf):
        dims = ([-1] if hf else []) + ([-2] if vf else [])
        return t.flip(dims) if dims else t

    if len(set(flips)) == 1:
        return one(x, *flips[0])
    return torch.cat([one(x[i:i + 1], *f) for i, f in enumerate(flips)])


class _ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class _Stage(nn.Sequential):
    def __init__(self, channels: int, layers: int):
        super().__init__(*[_ResBlock(channels) for _ in range(layers)])


class DDNet(ModelMixin, ConfigMixin):
    """Joint denoising + demosaicing: normalised RAW mosaic → linear camera RGB (see ``docs/training.md``).

    Args:
        block_out_channels: channels per U-Net level (the first level works at half resolution, each next one
            halves again).
        layers_per_block: residual blocks per level, on the way down and on the way up.
        residual_bilinear: predict a correction to the bilinear demosaic (zero-initialised).

    Example:
        >>> import torch
        >>> net = DDNet(block_out_channels=(8, 16), layers_per_block=1)
        >>> net(torch.rand(2, 1, 32, 48), ["RGGB", "GBRG"]).shape
        torch.Size([2, 3, 32, 48])
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, block_out_channels: tuple[int, ...] = (32, 64, 128), layers_per_block: int = 2,
                 residual_bilinear: bool = True):
        super().__init__()
        chs = [int(c) for c in block_out_channels]
        if not chs or min(chs) < 1 or layers_per_block < 1:
            raise ConfigError(f"DDNet needs block_out_channels >= 1 and layers_per_block >= 1, got {block_out_channels}"
                             f", {layers_per_block}")
        self.conv_in = nn.Conv2d(4, chs[0], 3, padding=1)
        self.down_blocks = nn.ModuleList([_Stage(c, layers_per_block) for c in chs])
        self.downsamplers = nn.ModuleList([nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(chs, chs[1:])])
        self.upsamplers = nn.ModuleList([nn.Sequential(nn.Conv2d(b, 4 * a, 1), nn.PixelShuffle(2))
                                         for a, b in zip(chs, chs[1:])])
        self.up_blocks = nn.ModuleList([_Stage(c, layers_per_block) for c in chs[:-1]])
        self.conv_out = nn.Conv2d(chs[0], 12, 3, padding=1)
        if residual_bilinear:
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)
        self.gradient_checkpointing = False

    @property
    def multiple(self) -> int:
        """The packed planes are padded to a multiple of this (``2^(levels − 1)``)."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def _run(self, block: nn.Module, h: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(block, h)
        return block(h)

    def _unet(self, planes: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(planes)
        skips = []
        for i, block in enumerate(self.down_blocks):
            h = self._run(block, h)
            if i < len(self.downsamplers):
                skips.append(h)
                h = self.downsamplers[i](h)
        for i in reversed(range(len(self.up_blocks))):
            h = self.upsamplers[i](h) + skips[i]
            h = self._run(self.up_blocks[i], h)
        return self.conv_out(h)

    def forward(self, raw: torch.Tensor, patterns: Sequence[Pattern | str] | Pattern | str) -> torch.Tensor:
        """Demosaic and denoise.

        Args:
            raw: ``(B, 1, H, W)`` float normalised RAW mosaic (``(DN − black)/(white − black)``; values slightly
                below 0 from read noise are fine), ``H`` and ``W`` even.
            patterns: the Bayer pattern of each sample (one for all, or a list of ``B``).

        Returns:
            ``(B, 3, H, W)`` linear camera RGB (not clipped), the dtype of ``raw``.

        Raises:
            ShapeError: not a ``(B, 1, H, W)`` float tensor, odd ``H``/``W``, or bad patterns.
        """
        check_bchw(raw, "raw", channels=1)
        check_even(raw, "raw")
        pats = as_patterns(patterns, raw.shape[0], "patterns")
        flips = [_UNIFY[p] for p in pats]
        x = _flip_each(raw, flips)  # every sample is now RGGB
        planes = F.pixel_unshuffle(x, 2)  # R, G1, G2, B
        h, w = planes.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            planes = F.pad(planes, (0, pw, 0, ph), mode="replicate")
        out = self._unet(planes)[..., :h, :w]
        out = F.pixel_shuffle(out, 2)
        if self.config.residual_bilinear:
            out = out + demosaic_bilinear(x, Pattern.RGGB)
        return _flip_each(out, flips)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load a DDNet saved with :meth:`save_pretrained` from a **local** folder.

        ``pretrained_model_name_or_path`` may also be a ``rddm train-ddnet`` output folder (its ``ddnet/`` is
        used) or a checkpoint folder (``OUT/checkpoints/step-NNNNNN``). Weights are read from safetensors.

        Raises:
            WeightsError: not a local DDNet folder (the message says what is missing).
        """
        fix = "pass the folder written by `rddm train-ddnet` (OUT/ddnet, or OUT itself)"
        root, sub = resolve_model_dir(pretrained_model_name_or_path, kwargs.pop("subfolder", None), "ddnet",
                                      ("DDNet",), "DDNet", fix)
        kwargs.setdefault("local_files_only", True)
        return super().from_pretrained(str(root), subfolder=sub, **kwargs)
