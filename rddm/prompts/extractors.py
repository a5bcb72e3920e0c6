"""Prompt extractors (``none``, ``fixed:``, ``tagger:``, ``python:``) and :func:`build_extractor`.
See ``docs/rddm.md``."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from rawsynth._checks import check_bchw

from ..errors import ConfigError, WeightsError
from ._common import _DAPE_FILE, _IMAGENET_MEAN, _IMAGENET_STD, _RAM_FILE, _RAM_PIP, _first_line


@runtime_checkable
class PromptExtractor(Protocol):
    """What RPE calls: sRGB images → one prompt per image.

    ``__call__(srgb)`` takes ``(B, 3, H, W)`` float sRGB in ``[0, 1]`` (PTP output, any device) and returns ``B``
    strings. An extractor may declare ``uses_image = False`` (as :class:`FixedPrompt` does): RPE then skips DDNet
    and PTP and passes an empty ``(B, 3, 0, 0)`` tensor that only carries the batch size. Without the attribute
    the image is used. A ``spec`` attribute, when present, is the string :func:`build_extractor` rebuilds it from.
    """

    def __call__(self, srgb: torch.Tensor) -> list[str]: ...


def _uses_image(extractor) -> bool:
    return bool(getattr(extractor, "uses_image", True))


@dataclass(frozen=True)
class FixedPrompt:
    """The same text for every image (``none`` = the empty prompt, the default; ``fixed:"…"``)."""

    text: str = ""
    uses_image = False

    @property
    def spec(self) -> str:
        return "none" if self.text == "" else f'fixed:"{self.text}"'

    def __call__(self, srgb: torch.Tensor) -> list[str]:
        return [self.text] * srgb.shape[0]


class RAMTagger:
    """RAM / DAPE image tagger (Recognize Anything; DAPE is SeeSR's degradation-aware fine-tune of RAM Swin-L),
    called like OSEDiff and SeeSR call it: sRGB resized to ``image_size`` (384, bilinear with antialias, as
    ``torchvision.transforms.Resize`` on tensors), ImageNet normalisation, ``model.generate_tag`` → the tags of
    each image joined by ``", "``.

    The ``ram`` package is imported only here (not installed by default: ``pip install
    git+https://github.com/xinyu1205/recognize-anything.git``). DAPE needs the ``ram.models.ram_lora`` module that
    SeeSR and OSEDiff ship in their ``ram/`` folder (put that folder on ``PYTHONPATH``).

    Args:
        path: ``ram_swin_large_14m.pth``, or a folder holding it and optionally ``DAPE.pth`` (then DAPE is used).
        device: where the tagger runs.
        dtype: its dtype (OSEDiff: fp16 on the GPU).
        image_size: the backbone's input size (384 for RAM Swin-L).

    Raises:
        WeightsError: missing weight files.
        ConfigError: the ``ram`` package (or its ``ram_lora`` module, for DAPE) cannot be imported.
    """

    uses_image = True

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, image_size: int = 384):
        p = Path(path)
        fix = (f"pass tagger:FILE with RAM's {_RAM_FILE}, or tagger:DIR with {_RAM_FILE} (and {_DAPE_FILE} for "
               "DAPE) in it")
        if p.is_dir():
            ram_file, dape_file = p / _RAM_FILE, p / _DAPE_FILE
            if not ram_file.is_file():
                raise WeightsError(f"no {_RAM_FILE} in the tagger folder", path=p, fix=fix)
            dape_file = dape_file if dape_file.is_file() else None
        elif p.is_file():
            ram_file, dape_file = p, None
        else:
            raise WeightsError("no such tagger weights file or folder", path=p, fix=fix)
        self.path, self.ram_file, self.dape_file = p, ram_file, dape_file
        self.image_size = int(image_size)
        module = "ram.models.ram_lora" if dape_file else "ram.models"
        try:
            builder = importlib.import_module(module).ram
        except ImportError as e:
            hint = (_RAM_PIP if not dape_file else
                    f"{_RAM_PIP}; for DAPE also put the ram/ folder of SeeSR or OSEDiff (with models/ram_lora.py) "
                    "on PYTHONPATH")
            raise ConfigError(f"the {'DAPE' if dape_file else 'RAM'} tagger needs the `{module}` module ({e})",
                              path=p, fix=hint) from None
        try:
            model = builder(pretrained=str(ram_file), image_size=self.image_size, vit="swin_l")
            if dape_file:  # SeeSR/OSEDiff: load_state_dict(torch.load(DAPE), strict=False), here weights_only
                state = torch.load(dape_file, map_location="cpu", weights_only=True)
                model.load_state_dict(state, strict=False)
        except (OSError, RuntimeError, ValueError, KeyError) as e:
            raise WeightsError(f"cannot load the tagger ({_first_line(e)})", path=p,
                               fix=fix) from None
        self.model = model.eval().requires_grad_(False).to(device=device, dtype=dtype)

    @property
    def spec(self) -> str:
        return f"tagger:{self.path}"

    def preprocess(self, srgb: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` sRGB ``[0, 1]`` → the backbone's ``(B, 3, S, S)`` normalised input (model dtype)."""
        check_bchw(srgb, "srgb", channels=3)
        x = F.interpolate(srgb.float(), size=(self.image_size, self.image_size), mode="bilinear",
                          align_corners=False, antialias=True)
        mean = x.new_tensor(_IMAGENET_MEAN)[None, :, None, None]
        std = x.new_tensor(_IMAGENET_STD)[None, :, None, None]
        p = next(self.model.parameters())
        return ((x - mean) / std).to(device=p.device, dtype=p.dtype)

    @torch.no_grad()
    def __call__(self, srgb: torch.Tensor) -> list[str]:
        out = self.model.generate_tag(self.preprocess(srgb))
        tags = out[0] if isinstance(out, tuple) else out  # (english, chinese) in every RAM release we know
        if isinstance(tags, str):
            tags = [tags]
        if not isinstance(tags, (list, tuple)) or len(tags) != srgb.shape[0] or \
                not all(isinstance(t, str) for t in tags):
            raise ConfigError(f"unexpected output of this ram version's generate_tag: {type(out).__name__}",
                              path=self.path, fix=f"install the release this code was written for: {_RAM_PIP}")
        # upstream RAM joins the tags with " | ", the SeeSR/OSEDiff fork with ", " (what the prompts use)
        return [", ".join(s.strip() for s in t.split(" | ")) if " | " in t else t for t in tags]


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    return s


def build_extractor(spec: str = "none", device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> PromptExtractor:
    """Build a prompt extractor from its spec string (``docs/rddm.md`` lists them).

    Args:
        spec: ``none`` | ``fixed:"TEXT"`` | ``tagger:PATH`` | ``python:module:Class[:PATH]``.
        device: where a tagger runs (ignored by the others).
        dtype: the tagger's dtype (ignored by the others).

    Raises:
        ConfigError: an unknown or malformed spec, a plugin that cannot be imported or built or is not callable.
        WeightsError: missing tagger weights.

    Example:
        >>> import torch
        >>> from rawsynth.isp import fixed_isp_params
        >>> from rddm.prompts import RawPromptExtractor
        >>> ex = build_extractor('fixed:"a photo of a cat"')
        >>> ex(torch.rand(2, 3, 8, 8)), ex.spec
        (['a photo of a cat', 'a photo of a cat'], 'fixed:"a photo of a cat"')
        >>> rpe = RawPromptExtractor(build_extractor("none"), encoder=None)
        >>> rpe.texts(torch.rand(2, 1, 8, 8), "RGGB", fixed_isp_params())
        ['', '']
    """
    if not isinstance(spec, str):
        raise ConfigError(f"the prompt extractor spec must be a string, got {spec!r}")
    kind, sep, arg = spec.strip().partition(":")
    fix = ('use none, fixed:"TEXT", tagger:PATH (RAM/DAPE weights) or python:module:Class[:PATH]')
    if kind == "none" and not sep:
        return FixedPrompt("")
    if kind == "fixed" and sep:
        return FixedPrompt(_unquote(arg))
    if kind == "tagger" and sep and arg.strip():
        return RAMTagger(_unquote(arg), device=device, dtype=dtype)
    if kind == "python" and sep:
        parts = arg.split(":", 2)
        if len(parts) < 2 or not all(parts[:2]):
            raise ConfigError(f"malformed plugin spec {spec!r}", fix="write python:module:Class or "
                                                                     "python:module:Class:PATH")
        mod_name, cls_name = parts[0], parts[1]
        path = _unquote(parts[2]) if len(parts) == 3 and parts[2] else None
        try:
            cls = getattr(importlib.import_module(mod_name), cls_name)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"cannot import the prompt extractor {mod_name}:{cls_name} ({e})",
                              fix="make the module importable (PYTHONPATH) and check the class name") from None
        extractor = cls(path) if path is not None else cls()
        if not callable(extractor):
            raise ConfigError(f"{mod_name}:{cls_name} instances are not callable", fix="define __call__(self, srgb) "
                              "-> list[str] (the PromptExtractor protocol)")
        return extractor
    raise ConfigError(f"unknown prompt extractor spec {spec!r}", fix=fix)
