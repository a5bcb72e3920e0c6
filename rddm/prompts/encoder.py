"""The SD text encoder with a per-prompt cache (:class:`PromptEncoder`). See ``docs/rddm.md``."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch

from rawsynth.errors import ShapeError

from ..errors import ConfigError, WeightsError
from ._common import _SD_FIX, _first_line


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
