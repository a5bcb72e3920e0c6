"""Bayer colour filter arrays: mosaic, pack/unpack (planes R, G1, G2, B), bilinear demosaic, and the pattern
bookkeeping of flips and crops. See ``docs/isp.md``."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import torch
import torch.nn.functional as F

from .._checks import check_bchw, check_even
from ..errors import ShapeError

__all__ = ["Pattern", "PatternLike", "as_patterns", "mosaic", "pack", "unpack", "demosaic_bilinear", "cfa_masks",
           "hflip", "vflip", "crop", "Mosaic", "DemosaicBilinear"]

R, G, B = 0, 1, 2


class Pattern(str, Enum):
    """The four 2×2 Bayer layouts, named by the top-left block read row-wise::

        RGGB        BGGR        GRBG        GBRG
        R G R G     B G B G     G R G R     G B G B
        G B G B     G R G R     B G B G     R G R G
        R G R G     B G B G     G R G R     G B G B

    ``Pattern("RGGB")`` and ``Pattern.RGGB`` are the same; the value is the name, so patterns serialise
    to JSON as plain strings.
    """

    RGGB = "RGGB"
    BGGR = "BGGR"
    GRBG = "GRBG"
    GBRG = "GBRG"

    @property
    def colors(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Colour index (0 = R, 1 = G, 2 = B) at each position of the 2×2 block, ``colors[row][col]``."""
        c = ["RGB".index(ch) for ch in self.value]
        return ((c[0], c[1]), (c[2], c[3]))

    @property
    def offsets(self) -> tuple[tuple[int, int], ...]:
        """``(row, col)`` inside the 2×2 block of R, G1, G2, B (the canonical packed order)."""
        cells = {(i, j): self.value[2 * i + j] for i in range(2) for j in range(2)}
        (r,) = [p for p, ch in cells.items() if ch == "R"]
        (b,) = [p for p, ch in cells.items() if ch == "B"]
        g1 = (r[0], 1 - r[1])  # the green on the red row
        g2 = (b[0], 1 - b[1])  # the green on the blue row
        return (r, g1, g2, b)

    @property
    def cfa_bytes(self) -> tuple[int, int, int, int]:
        """The DNG/TIFF-EP ``CFAPattern`` value (0 = R, 1 = G, 2 = B, row-major)."""
        (a, b), (c, d) = self.colors
        return (a, b, c, d)

    def shifted(self, dy: int, dx: int) -> Pattern:
        """The pattern of the mosaic cropped at offset ``(dy, dx)``."""
        v = self.value
        return Pattern("".join(v[2 * ((i + dy) % 2) + (j + dx) % 2] for i in range(2) for j in range(2)))

    def hflipped(self, width: int = 2) -> Pattern:
        """The pattern after a horizontal flip of a mosaic ``width`` pixels wide (unchanged if odd)."""
        return self.shifted(0, (width - 1) % 2)

    def vflipped(self, height: int = 2) -> Pattern:
        """The pattern after a vertical flip of a mosaic ``height`` pixels tall (unchanged if odd)."""
        return self.shifted((height - 1) % 2, 0)


PatternLike = Pattern | str


def as_patterns(pattern: PatternLike | Sequence[PatternLike], batch: int, name: str = "pattern") -> list[Pattern]:
    """One Bayer pattern for every sample, or one per sample, as a list of ``batch`` :class:`Pattern`.

    Raises:
        ShapeError: a sequence of another length than ``batch``, or a value that is not a Bayer pattern.
    """
    if isinstance(pattern, (Pattern, str)):
        values = [pattern] * batch
    elif isinstance(pattern, Sequence):
        values = list(pattern)
        if len(values) != batch:
            raise ShapeError(f"{name} must be one Bayer pattern or a list of {batch} (one per sample in the "
                             f"batch), got {len(values)}: {values!r}")
    else:
        raise ShapeError(f"{name} must be one Bayer pattern or a list of {batch}, got {pattern!r}")
    out = []
    for p in values:
        try:
            out.append(Pattern(p))
        except ValueError:
            raise ShapeError(f"unknown Bayer pattern {p!r}; use one of {[q.value for q in Pattern]}") from None
    return out


def _color_index(patterns: list[Pattern], h: int, w: int, device) -> torch.Tensor:
    """``(B, 1, H, W)`` int64 colour index of every pixel."""
    block = torch.tensor([p.colors for p in patterns], dtype=torch.long, device=device)  # (B, 2, 2)
    idx = block.repeat(1, (h + 1) // 2, (w + 1) // 2)[:, :h, :w]
    return idx[:, None]


def cfa_masks(pattern, batch: int, height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(B, 3, H, W)`` one-hot masks: ``masks[b, c, y, x] = 1`` where pixel ``(y, x)`` sees colour ``c``."""
    idx = _color_index(as_patterns(pattern, batch), height, width, device)
    return (idx == torch.arange(3, device=device)[None, :, None, None]).to(dtype)


def mosaic(linear: torch.Tensor, pattern: PatternLike | Sequence[PatternLike]) -> torch.Tensor:
    """Sample each pixel's CFA colour (Eq. 11's ``X^mosaic``).

    Args:
        linear: ``(B, 3, H, W)`` float linear camera RGB (any range).
        pattern: one pattern or ``B`` patterns.

    Returns:
        ``(B, 1, H, W)``, same dtype/device; differentiable w.r.t. ``linear``.
    """
    check_bchw(linear, "linear", channels=3)
    b, _, h, w = linear.shape
    idx = _color_index(as_patterns(pattern, b), h, w, linear.device)
    return torch.gather(linear, 1, idx)


def _slot_index(patterns: list[Pattern], device) -> torch.Tensor:
    """``(B, 4)``: for each canonical plane (R, G1, G2, B) its pixel_unshuffle channel (2·row + col)."""
    return torch.tensor([[2 * r + c for r, c in p.offsets] for p in patterns], dtype=torch.long, device=device)


def pack(raw: torch.Tensor, pattern: PatternLike | Sequence[PatternLike]) -> torch.Tensor:
    """``(B, 1, H, W)`` mosaic → ``(B, 4, H/2, W/2)`` planes R, G1, G2, B (H, W even)."""
    check_bchw(raw, "raw", channels=1, floating=False)
    check_even(raw, "raw")
    b = raw.shape[0]
    planes = F.pixel_unshuffle(raw, 2)  # channel 2·row + col of each 2×2 block
    idx = _slot_index(as_patterns(pattern, b), raw.device)
    return torch.gather(planes, 1, idx[:, :, None, None].expand(-1, -1, *planes.shape[-2:]))


def unpack(packed: torch.Tensor, pattern: PatternLike | Sequence[PatternLike]) -> torch.Tensor:
    """Inverse of :func:`pack`: ``(B, 4, H/2, W/2)`` R, G1, G2, B → ``(B, 1, H, W)`` mosaic."""
    check_bchw(packed, "packed", channels=4, floating=False)
    b = packed.shape[0]
    slot = _slot_index(as_patterns(pattern, b), packed.device)
    inv = torch.argsort(slot, dim=1)  # position k of the 2×2 block holds canonical plane inv[k]
    planes = torch.gather(packed, 1, inv[:, :, None, None].expand(-1, -1, *packed.shape[-2:]))
    return F.pixel_shuffle(planes, 2)


_K_G = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]) / 4.0
_K_RB = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 4.0


def demosaic_bilinear(raw: torch.Tensor, pattern: PatternLike | Sequence[PatternLike]) -> torch.Tensor:
    """Reference bilinear demosaic (normalised convolution, so borders are averaged over the
    neighbours that exist rather than zero-padded).

    Args:
        raw: ``(B, 1, H, W)`` float mosaic.
        pattern: one pattern or ``B`` patterns.

    Returns:
        ``(B, 3, H, W)``; measured pixels are kept exactly. Differentiable.
    """
    check_bchw(raw, "raw", channels=1)
    b, _, h, w = raw.shape
    m = cfa_masks(pattern, b, h, w, raw.device, raw.dtype)
    k = torch.stack([_K_RB, _K_G, _K_RB])[:, None].to(raw)  # (3, 1, 3, 3)
    num = F.conv2d(raw * m, k, padding=1, groups=3)
    den = F.conv2d(m, k, padding=1, groups=3)
    return num / den


def hflip(raw: torch.Tensor, pattern: PatternLike | Sequence[PatternLike]):
    """Flip a ``(B, 1, H, W)`` mosaic left–right. Returns ``(flipped, new_pattern)`` (one pattern or a list,
    as given)."""
    check_bchw(raw, "raw", channels=1, floating=False)
    ps = as_patterns(pattern, raw.shape[0])
    new = [p.hflipped(raw.shape[-1]) for p in ps]
    return raw.flip(-1), (new if isinstance(pattern, (list, tuple)) else new[0])


def vflip(raw: torch.Tensor, pattern: PatternLike | Sequence[PatternLike]):
    """Flip a ``(B, 1, H, W)`` mosaic top–bottom. Returns ``(flipped, new_pattern)``."""
    check_bchw(raw, "raw", channels=1, floating=False)
    ps = as_patterns(pattern, raw.shape[0])
    new = [p.vflipped(raw.shape[-2]) for p in ps]
    return raw.flip(-2), (new if isinstance(pattern, (list, tuple)) else new[0])


def crop(raw: torch.Tensor, pattern: PatternLike | Sequence[PatternLike], top: int, left: int,
         height: int, width: int):
    """Crop a ``(B, 1, H, W)`` mosaic (any offset). Returns ``(cropped, new_pattern)``."""
    check_bchw(raw, "raw", channels=1, floating=False)
    h, w = raw.shape[-2:]
    if not (0 <= top and 0 <= left and height > 0 and width > 0 and top + height <= h and left + width <= w):
        raise ShapeError(f"crop box (top={top}, left={left}, {height}x{width}) is outside the {h}x{w} mosaic")
    ps = as_patterns(pattern, raw.shape[0])
    new = [p.shifted(top, left) for p in ps]
    return raw[..., top:top + height, left:left + width], (new if isinstance(pattern, (list, tuple)) else new[0])


class Mosaic(torch.nn.Module):
    """Module form of :func:`mosaic`."""

    def forward(self, linear: torch.Tensor, pattern) -> torch.Tensor:
        return mosaic(linear, pattern)


class DemosaicBilinear(torch.nn.Module):
    """Module form of :func:`demosaic_bilinear`."""

    def forward(self, raw: torch.Tensor, pattern) -> torch.Tensor:
        return demosaic_bilinear(raw, pattern)
