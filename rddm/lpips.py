"""LPIPS (Zhang et al., CVPR 2018) as a training loss, with weights read from a local folder only.
See ``docs/training.md``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from .errors import WeightsError

__all__ = ["LPIPS", "BACKBONE_FILES", "LIN_FILES", "SEARCH_SUBFOLDERS", "find_lpips_files"]

#: torchvision's file names of the ImageNet weights of the backbones.
BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}
#: The LPIPS linear-layer files: pyiqa's name first, then the ``lpips`` package's.
LIN_FILES = {"vgg": ("LPIPS_v0.1_vgg-a78928a0.pth", "vgg.pth"), "alex": ("LPIPS_v0.1_alex-df73285e.pth", "alex.pth")}
#: Where in the folder files are looked for.
SEARCH_SUBFOLDERS = ("", "pyiqa", "checkpoints", "hub/pyiqa", "hub/checkpoints")

_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
#: Index (in ``features``) of the ReLU after which each LPIPS layer is taken (pyiqa's slices).
_TAPS = {"vgg": (3, 8, 15, 22, 29), "alex": (1, 4, 7, 9, 11)}
_CHANNELS = {"vgg": (64, 128, 256, 512, 512), "alex": (64, 192, 384, 256, 256)}
#: pyiqa's slice boundaries (to read a backbone stored as net.sliceM.N.*).
_SLICES = {"vgg": (0, 4, 9, 16, 23, 30), "alex": (0, 2, 5, 8, 10, 12)}


def _vgg16_features() -> nn.Sequential:
    layers, c = [], 3
    for v in _VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(*layers)


def _alexnet_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))


def _find(folder: Path, names: tuple[str, ...]) -> Path | None:
    for sub in SEARCH_SUBFOLDERS:
        for name in names:
            for cand in (name, str(Path(name).with_suffix(".safetensors"))):
                p = folder / sub / cand if sub else folder / cand
                if p.is_file():
                    return p
    return None


def find_lpips_files(folder: str | os.PathLike, net: str = "vgg") -> tuple[Path | None, Path]:
    """The ``(backbone, linear layers)`` files of ``net`` in ``folder`` (``backbone`` may be ``None`` if the
    linear-layer file holds it too).

    Raises:
        WeightsError: no such folder, or a file is missing (the message lists the expected names).
    """
    if net not in BACKBONE_FILES:
        raise WeightsError(f"unknown LPIPS net {net!r}; use 'vgg' or 'alex'")
    root = Path(folder)
    fix = (f"put {BACKBONE_FILES[net]} (torchvision) and {LIN_FILES[net][0]} (pyiqa) in that folder, e.g. copy them "
           "from ~/.cache/torch/hub/checkpoints and ~/.cache/torch/hub/pyiqa of a machine with internet; or set "
           "loss.lpips: 0")
    if not root.is_dir():
        raise WeightsError("no such LPIPS weights folder", path=root, fix=fix)
    lin = _find(root, LIN_FILES[net])
    if lin is None:
        raise WeightsError(f"LPIPS linear layers not found (looked for {list(LIN_FILES[net])} in "
                           f"{[s or '.' for s in SEARCH_SUBFOLDERS]})", path=root, fix=fix)
    backbone = _find(root, (BACKBONE_FILES[net],))
    if backbone is None and not any(k.startswith("net.") for k in _load(lin)):
        raise WeightsError(f"LPIPS backbone {BACKBONE_FILES[net]} not found (looked in "
                           f"{[s or '.' for s in SEARCH_SUBFOLDERS]})", path=root, fix=fix)
    return backbone, lin


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read the file is the same user problem
        raise WeightsError(f"cannot read weights ({type(e).__name__}: {e})", path=path,
                           fix="replace the file with an intact copy (safetensors, or a plain state dict)") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise WeightsError("not a state dict", path=path)
    return {k.removeprefix("module."): v for k, v in sd.items()}


class LPIPS(nn.Module):
    """LPIPS v0.1 distance, frozen, differentiable with respect to its inputs.

    Args:
        net: ``"vgg"`` or ``"alex"``.

    Build it with :meth:`from_folder`; a bare ``LPIPS()`` has random weights (for shape tests only).
    """

    def __init__(self, net: str = "vgg"):
        super().__init__()
        if net not in _TAPS:
            raise WeightsError(f"unknown LPIPS net {net!r}; use 'vgg' or 'alex'")
        self.net_name = net
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None], persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None], persistent=False)
        self.features = _vgg16_features() if net == "vgg" else _alexnet_features()
        self.lins = nn.ModuleList([nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS[net]])
        self.taps = _TAPS[net]
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # always in eval mode (no dropout, fixed)
        return super().train(False)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, net: str = "vgg") -> LPIPS:
        """LPIPS with weights from a local folder (see ``docs/training.md`` for the file names).

        Raises:
            WeightsError: missing, unreadable or mismatching files (named, with the fix).
        """
        backbone, lin = find_lpips_files(folder, net)
        model = cls(net)
        lin_sd = _load(lin)
        feats = {}
        if backbone is not None:
            feats = {k.removeprefix("features."): v for k, v in _load(backbone).items() if k.startswith("features.")}
        else:
            bounds = _SLICES[net]
            for k, v in lin_sd.items():
                m = re.fullmatch(r"net\.slice(\d)\.(\d+)\.(weight|bias)", k)
                if m and int(m[1]) <= len(bounds) - 1:
                    feats[f"{int(m[2])}.{m[3]}"] = v
        lins = {}
        for k, v in lin_sd.items():
            m = re.fullmatch(r"lin(\d)\.model\.\d\.weight", k)
            if m:
                lins[f"{m[1]}.weight"] = v
        try:
            model.features.load_state_dict(feats, strict=True)
            model.lins.load_state_dict(lins, strict=True)
        except RuntimeError as e:
            raise WeightsError(f"LPIPS {net} weights do not match the network ({str(e).splitlines()[0]})",
                               path=backbone or lin, fix=f"use the {net} files named in rddm.lpips") from None
        return model

    def forward(self, x: torch.Tensor, y: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Per-sample distance ``(B,)`` between ``(B, 3, H, W)`` images in ``[0, 1]`` (``normalize=True``) or
        ``[-1, 1]``."""
        if normalize:
            x, y = 2 * x - 1, 2 * y - 1
        hx, hy = (x - self.shift) / self.scale, (y - self.shift) / self.scale
        total = 0
        k = 0
        for i, layer in enumerate(self.features):
            hx, hy = layer(hx), layer(hy)
            if i == self.taps[k]:
                fx = hx / (hx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                fy = hy / (hy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                total = total + self.lins[k]((fx - fy) ** 2).mean((2, 3))
                k += 1
                if k == len(self.taps):
                    break
        return total[:, 0]
