"""Constants and helpers shared by the prompt modules."""

from __future__ import annotations

from collections.abc import Sequence

from rawsynth.mns import Pattern

#: One Bayer pattern for the whole batch, or one per sample.
PatternsLike = Pattern | str | Sequence[Pattern | str]


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
