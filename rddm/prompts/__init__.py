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

from ._common import NEGATIVE_PROMPT, PatternsLike
from .encoder import PromptEncoder
from .extractors import FixedPrompt, PromptExtractor, RAMTagger, build_extractor
from .rpe import RawPromptExtractor, raw_to_srgb

__all__ = ["NEGATIVE_PROMPT", "PromptEncoder", "PromptExtractor", "FixedPrompt", "RAMTagger", "build_extractor",
           "raw_to_srgb", "RawPromptExtractor", "PatternsLike"]
