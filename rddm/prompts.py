"""RAW prompt extraction (RPE, paper §3.2 and Table 6): RAW → DDNet → PTP → sRGB → prompt extractor → text →
the SD text encoder.

A text-to-image prior needs a text prompt, but a tagger (DAPE/RAM) only understands sRGB pictures. RPE therefore
renders the degraded RAW first: DDNet denoises and demosaics it (:class:`~rddm.models.ddnet.DDNet`), PTP
(:func:`rawsynth.isp.process`) turns the linear camera RGB into sRGB with the sample's own white balance and
colour matrix, and the extractor reads that picture. Without a DDNet the bilinear demosaic
(:func:`rawsynth.mns.demosaic_bilinear`) stands in: that is the paper's "ISPPE" variant of Table 6, RPE with
DDNet its best one.

Three pieces, each usable alone:

* :class:`PromptEncoder` — the tokenizer and CLIP text encoder of the user's local SD-2.1 folder; text → the
  ``(B, 77, D)`` embedding ``StableDiffusionPipeline.encode_prompt`` gives (last hidden state, no clip skip),
  with a bounded LRU cache per prompt string.
* Prompt extractors, built from a spec string by :func:`build_extractor`:

  | spec | extractor |
  |---|---|
  | ``none`` (default) | the empty prompt ``""`` (:class:`FixedPrompt`) |
  | ``fixed:"a photo"`` | that text for every image (quotes optional) |
  | ``tagger:PATH`` | RAM, or DAPE = RAM + its fine-tuned weights (:class:`RAMTagger`); PATH is \
``ram_swin_large_14m.pth`` or a folder holding it (and ``DAPE.pth``) |
  | ``python:module:Class[:PATH]`` | your own class, built as ``Class(PATH)`` (or ``Class()``), following \
:class:`PromptExtractor` |

* :class:`RawPromptExtractor` — the RPE chain, from a RAW batch to texts or embeddings. Extractors that ignore
  the image (``none``, ``fixed``) skip DDNet and PTP entirely.

Example:
    >>> import torch
    >>> from rawsynth.isp import fixed_isp_params
    >>> ex = build_extractor('fixed:"a photo of a cat"')
    >>> ex(torch.rand(2, 3, 8, 8)), ex.spec
    (['a photo of a cat', 'a photo of a cat'], 'fixed:"a photo of a cat"')
    >>> rpe = RawPromptExtractor(build_extractor("none"), encoder=None)
    >>> rpe.texts(torch.rand(2, 1, 8, 8), "RGGB", fixed_isp_params())
    ['', '']
"""

from __future__ import annotations

import importlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from rawsynth._checks import check_bchw
from rawsynth.errors import ShapeError
from rawsynth.isp import ISPBatch, ISPParams
from rawsynth.mns import Pattern, demosaic_bilinear

from .errors import ConfigError, WeightsError
from .losses import to_srgb

#: One Bayer pattern for the whole batch, or one per sample.
PatternsLike = Pattern | str | Sequence[Pattern | str]

__all__ = ["NEGATIVE_PROMPT", "PromptEncoder", "PromptExtractor", "FixedPrompt", "RAMTagger", "build_extractor",
           "raw_to_srgb", "RawPromptExtractor"]

#: OSEDiff's negative prompt for the classifier-free guidance of its VSD regulariser (``--neg_prompt`` of its
#: training command). ``PromptEncoder.encode([""])`` is the unconditional embedding instead.
NEGATIVE_PROMPT = ("painting, oil painting, illustration, drawing, art, sketch, cartoon, CG Style, 3D render, "
                   "unreal engine, blurring, dirty, messy, worst quality, low quality, frames, watermark, signature, "
                   "jpeg artifacts, deformed, lowres, over-smooth")

_SD_FIX = ("pass the local Stable Diffusion 2.1 diffusers folder (the one holding model_index.json, tokenizer/ and "
           "text_encoder/)")

#: ImageNet statistics the RAM/DAPE Swin backbone was trained with.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_RAM_PIP = "pip install git+https://github.com/xinyu1205/recognize-anything.git"
_RAM_FILE = "ram_swin_large_14m.pth"
_DAPE_FILE = "DAPE.pth"


def _first_line(e: BaseException) -> str:
    lines = str(e).splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


# ---------------------------------------------------------------------------------------------- text encoder


class PromptEncoder:
    """Text → SD text-encoder embeddings, exactly as ``StableDiffusionPipeline.encode_prompt`` computes them
    (tokens padded/truncated to ``model_max_length``; ``text_encoder(ids)[0]``, the final-layer-normed last
    hidden state; no attention mask unless the encoder's config asks for one).

    Embeddings are cached per prompt string in a bounded LRU (``cache_size`` entries; keyed by text, device and
    dtype, so moving the encoder never returns stale tensors). Within one :meth:`encode` call every distinct
    text that is not cached is encoded once, all of them in one batch.

    Args:
        tokenizer: a ``transformers`` CLIP tokenizer.
        text_encoder: a ``transformers.CLIPTextModel`` (frozen here: eval mode, no grad).
        cache_size: most embeddings kept (0 disables the cache; repeats within a call are still encoded once).
    """

    def __init__(self, tokenizer: object, text_encoder: torch.nn.Module, cache_size: int = 256):
        if cache_size < 0:
            raise ConfigError(f"cache_size must be >= 0, got {cache_size}")
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[tuple[str, str, torch.dtype], torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @classmethod
    def from_sd(cls, sd_model: str | os.PathLike, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, cache_size: int = 256) -> PromptEncoder:
        """Load ``tokenizer/`` and ``text_encoder/`` of a **local** SD diffusers folder (never downloads).

        Raises:
            WeightsError: no such folder, a missing or unreadable ``tokenizer/`` or ``text_encoder/``.
        """
        from transformers import CLIPTextModel, CLIPTokenizer

        root = Path(sd_model)
        if not root.is_dir():
            raise WeightsError("no such Stable Diffusion folder", path=root, fix=_SD_FIX)
        for sub, needed in (("tokenizer", "tokenizer_config.json"), ("text_encoder", "config.json")):
            if not (root / sub / needed).is_file():
                raise WeightsError(f"not a Stable Diffusion folder: no {sub}/{needed}", path=root, fix=_SD_FIX)
        try:
            tokenizer = CLIPTokenizer.from_pretrained(str(root / "tokenizer"), local_files_only=True)
        except (OSError, ValueError, TypeError) as e:
            raise WeightsError(f"cannot load the tokenizer ({_first_line(e)})",
                               path=root / "tokenizer", fix=_SD_FIX) from None
        try:
            text_encoder = CLIPTextModel.from_pretrained(str(root / "text_encoder"), local_files_only=True,
                                                         dtype=dtype)
        except (OSError, ValueError, RuntimeError) as e:
            raise WeightsError(f"cannot load the text encoder ({_first_line(e)})",
                               path=root / "text_encoder", fix=_SD_FIX) from None
        return cls(tokenizer, text_encoder.to(device), cache_size=cache_size)

    @property
    def device(self) -> torch.device:
        return next(self.text_encoder.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.text_encoder.parameters()).dtype

    @property
    def max_length(self) -> int:
        """Tokens per prompt (77 for SD)."""
        return int(self.tokenizer.model_max_length)

    @property
    def hidden_size(self) -> int:
        """``D``, the embedding width (1024 for SD-2.1's OpenCLIP ViT-H)."""
        return int(self.text_encoder.config.hidden_size)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> PromptEncoder:
        """Move the text encoder (in place; returns ``self``)."""
        self.text_encoder.to(device=device, dtype=dtype)
        return self

    def clear_cache(self) -> None:
        self._cache.clear()

    def cache_info(self) -> dict[str, int]:
        """``{"hits", "misses", "size", "maxsize"}`` like :func:`functools.lru_cache` (hits and misses count
        the distinct texts of each :meth:`encode` call)."""
        return {"hits": self.hits, "misses": self.misses, "size": len(self._cache), "maxsize": self.cache_size}

    @torch.no_grad()
    def _encode_uncached(self, texts: list[str]) -> torch.Tensor:
        inputs = self.tokenizer(texts, padding="max_length", max_length=self.max_length, truncation=True,
                                return_tensors="pt")
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = inputs.attention_mask.to(self.device)
        out = self.text_encoder(inputs.input_ids.to(self.device), attention_mask=mask)[0]
        return out.to(dtype=self.dtype)

    def encode(self, texts: Sequence[str] | str) -> torch.Tensor:
        """Embed prompts.

        Args:
            texts: ``B`` prompts (a single string counts as one). ``""`` gives the unconditional embedding of CFG;
                :data:`NEGATIVE_PROMPT` OSEDiff's negative one. Longer prompts are truncated to
                :attr:`max_length` tokens, like diffusers does.

        Returns:
            ``(B, max_length, D)`` on the encoder's device and dtype, no grad.

        Raises:
            ShapeError: no texts, or an entry that is not a string.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ShapeError(f"texts must be a non-empty list of strings, got {texts!r}")
        dev, dt = self.device, self.dtype
        found: dict[str, torch.Tensor] = {}
        for t in dict.fromkeys(texts):  # distinct, in order
            key = (t, str(dev), dt)
            if key in self._cache:
                self._cache.move_to_end(key)
                found[t] = self._cache[key]
                self.hits += 1
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            self.misses += len(missing)
            new = self._encode_uncached(missing)
            for t, e in zip(missing, new):
                found[t] = e
                if self.cache_size:
                    self._cache[(t, str(dev), dt)] = e
                    if len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        return torch.stack([found[t] for t in texts])


# ------------------------------------------------------------------------------------------------ extractors


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
    """Build a prompt extractor from its spec string (the module docstring lists them).

    Args:
        spec: ``none`` | ``fixed:"TEXT"`` | ``tagger:PATH`` | ``python:module:Class[:PATH]``.
        device: where a tagger runs (ignored by the others).
        dtype: the tagger's dtype (ignored by the others).

    Raises:
        ConfigError: an unknown or malformed spec, a plugin that cannot be imported or built or is not callable.
        WeightsError: missing tagger weights.
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


# ------------------------------------------------------------------------------------------------------- RPE


def raw_to_srgb(raw: torch.Tensor, patterns: PatternsLike, isp: ISPBatch | ISPParams | Sequence[ISPParams],
                ddnet: torch.nn.Module | None = None) -> torch.Tensor:
    """RPE's rendering: RAW → DDNet (or the bilinear demosaic) → PTP → sRGB, without gradients.

    Args:
        raw: ``(B, 1, H, W)`` float normalised RAW mosaic (``H``, ``W`` even).
        patterns: the Bayer pattern of each sample (one for all, or ``B``).
        isp: each sample's PTP parameters (e.g. :func:`rddm.losses.isp_from_meta` of the batch's meta, or the
            file's white balance and colour matrix at inference).
        ddnet: a :class:`~rddm.models.ddnet.DDNet`, run on its own device and dtype; ``None``: the bilinear
            demosaic (Table 6's "ISPPE").

    Returns:
        ``(B, 3, H, W)`` float32 sRGB in ``[0, 1]`` on the DDNet's device (``raw``'s without DDNet).
    """
    check_bchw(raw, "raw", channels=1)
    with torch.no_grad():
        if ddnet is None:
            linear = demosaic_bilinear(raw.float(), patterns)
        else:
            p = next(ddnet.parameters())
            linear = ddnet(raw.to(device=p.device, dtype=p.dtype), patterns)
        return to_srgb(linear.float(), isp).clamp(0.0, 1.0)


class RawPromptExtractor:
    """RPE: RAW → DDNet (bilinear without) → PTP → sRGB → ``extractor`` → texts → ``encoder`` → embeddings.

    Args:
        extractor: a :class:`PromptExtractor` (:func:`build_extractor`).
        encoder: the :class:`PromptEncoder`; may be ``None`` when only :meth:`texts` is used.
        ddnet: a trained :class:`~rddm.models.ddnet.DDNet` (RPE proper) or ``None`` (bilinear: "ISPPE").
    """

    def __init__(self, extractor: PromptExtractor, encoder: PromptEncoder | None, ddnet: torch.nn.Module | None = None):
        if not callable(extractor):
            raise ConfigError(f"the prompt extractor must be callable, got {type(extractor).__name__}")
        self.extractor = extractor
        self.encoder = encoder
        self.ddnet = None if ddnet is None else ddnet.eval()

    @classmethod
    def build(cls, sd_model: str | os.PathLike, extractor: str = "none",
              ddnet: str | os.PathLike | torch.nn.Module | None = None, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32, cache_size: int = 256) -> RawPromptExtractor:
        """Everything from paths: the SD folder's text encoder, ``build_extractor(extractor)`` and, for an
        extractor that reads images, the DDNet of a ``rddm train-ddnet`` folder (skipped otherwise).

        Raises:
            WeightsError / ConfigError: as :meth:`PromptEncoder.from_sd`, :func:`build_extractor`,
                :meth:`DDNet.from_pretrained <rddm.models.ddnet.DDNet.from_pretrained>`.
        """
        ex = build_extractor(extractor, device=device, dtype=dtype)
        net = ddnet
        if isinstance(ddnet, (str, os.PathLike)):
            if _uses_image(ex):
                from .models.ddnet import DDNet

                net = DDNet.from_pretrained(ddnet).to(device=device)
            else:
                net = None
        return cls(ex, PromptEncoder.from_sd(sd_model, device=device, dtype=dtype, cache_size=cache_size), net)

    @property
    def uses_image(self) -> bool:
        """Whether the extractor reads the image (``False``: DDNet and PTP are skipped)."""
        return _uses_image(self.extractor)

    def srgb(self, raw: torch.Tensor, patterns: PatternsLike, isp) -> torch.Tensor:
        """The picture the extractor sees: :func:`raw_to_srgb` with this RPE's DDNet."""
        return raw_to_srgb(raw, patterns, isp, self.ddnet)

    def texts(self, raw: torch.Tensor, patterns: PatternsLike, isp: ISPBatch | ISPParams | Sequence[ISPParams] | None
              ) -> list[str]:
        """One prompt per sample.

        Args:
            raw: ``(B, 1, H, W)`` float normalised RAW mosaic.
            patterns: one Bayer pattern or ``B``.
            isp: the samples' PTP parameters (may be ``None`` when the extractor ignores images).

        Raises:
            ShapeError: bad ``raw``/``patterns``, or no ``isp`` for an extractor that reads images.
            ConfigError: the extractor returned something else than ``B`` strings.
        """
        check_bchw(raw, "raw", channels=1)
        b = raw.shape[0]
        if self.uses_image:
            if isp is None:
                raise ShapeError("RPE needs the samples' ISP parameters (isp=) to render the RAW for the prompt "
                                 "extractor")
            if not isinstance(patterns, (str, Pattern)) and len(patterns) != b:
                raise ShapeError(f"got {len(patterns)} patterns for a batch of {b}")
            image = self.srgb(raw, patterns, isp)
        else:
            image = raw.new_empty(b, 3, 0, 0)
        with torch.no_grad():
            out = self.extractor(image)
        if isinstance(out, str) or not isinstance(out, Sequence) or len(out) != b or \
                not all(isinstance(t, str) for t in out):
            raise ConfigError(f"prompt extractor {type(self.extractor).__name__} returned {out!r}; expected a list "
                              f"of {b} strings", fix="return one prompt string per image")
        return list(out)

    def embeds(self, raw: torch.Tensor, patterns: PatternsLike, isp: ISPBatch | ISPParams | Sequence[ISPParams] | None
               ) -> torch.Tensor:
        """``(B, 77, D)`` prompt embeddings of :meth:`texts` (encoder device and dtype)."""
        if self.encoder is None:
            raise ConfigError("this RawPromptExtractor has no PromptEncoder", fix="pass encoder=PromptEncoder.from_sd"
                              "(SD_FOLDER)")
        return self.encoder.encode(self.texts(raw, patterns, isp))
