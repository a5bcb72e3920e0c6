"""Pick the source layout of a test set (official download or StableSR's crops) from what ``--src`` holds.
See ``docs/benchmarks.md``."""

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
