"""RAW prompt extraction (RPE, paper §3.2, Table 6): RAW → DDNet → PTP → sRGB → prompt extractor → text →
the SD text encoder. See ``docs/rddm.md``."""

from __future__ import annotations

from ._common import NEGATIVE_PROMPT, PatternsLike
from .encoder import PromptEncoder
from .extractors import FixedPrompt, PromptExtractor, RAMTagger, build_extractor
from .rpe import RawPromptExtractor, raw_to_srgb

__all__ = ["NEGATIVE_PROMPT", "PromptEncoder", "PromptExtractor", "FixedPrompt", "RAMTagger", "build_extractor",
           "raw_to_srgb", "RawPromptExtractor", "PatternsLike"]
