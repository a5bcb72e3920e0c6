"""Pick the source layout of a test set from what ``--src`` holds.

A test set can come from more than one download: RealSR and DRealSR from their official releases or from
StableSR's 512×512 test crops (the 100 / 93 images most one-step SR papers score on), DIV2K-Val from the
official HR images or StableSR's ``DIV2K_V2_val`` crops. Each layout is a bundled recipe
(:func:`~benchmarks.builders.recipe.layout_recipe_names`); :func:`detect_layout` scans ``--src`` with each, official
first, and takes the first complete match (names, counts and, for the crops, sizes). The choice is recorded in
the manifest (``source.layout``).
"""

from __future__ import annotations

import os

from ..errors import LayoutError
from .layouts import Scan, scan_layout
from .recipe import Recipe, layout_recipe_names, load_recipe

__all__ = ["detect_layout"]


def detect_layout(name: str, src: str | os.PathLike, **overrides) -> tuple[Recipe, Scan]:
    """The bundled recipe of test set ``name`` whose layout ``src`` holds, and its scan.

    The first layout whose scan is complete wins; when none is complete, the one that found the most images
    (the builder then reports what is missing, or builds a partial set with ``allow_partial``).

    Args:
        name: ``div2k-val``, ``realsr`` or ``drealsr``.
        src: the folder given with ``--src``.
        overrides: top-level recipe keys to replace (``crop``, ``seed``), as :func:`load_recipe`.

    Raises:
        LayoutError: ``src`` holds none of the layouts; the message describes each one tried.
    """
    found: list[tuple[Recipe, Scan]] = []
    errors: list[str] = []
    for rname in layout_recipe_names(name):
        recipe = load_recipe(rname, **overrides)
        try:
            scan = scan_layout(src, recipe)
        except LayoutError as e:
            errors.append(f"[{recipe.layout_title}] {e}")
            continue
        if scan.complete:
            return recipe, scan
        found.append((recipe, scan))
    if found:
        return max(found, key=lambda rs: len(rs[1].images))
    if len(errors) == 1:
        raise LayoutError(errors[0].split(": ", 1)[-1], path=src)
    raise LayoutError(f"holds none of the {len(errors)} known layouts of this test set:\n  " + "\n  ".join(errors),
                      path=src)
