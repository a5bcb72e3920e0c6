"""Builders of the RAW test sets: recipes (:mod:`.recipe`), dataset layouts (:mod:`.layouts`), the choice of
layout (:mod:`.detect`) and the synthetic-set builder (:mod:`.build`). DND is read by :mod:`benchmarks.dnd`.
See ``docs/benchmarks.md``."""

from .build import BuildSummary, build_benchmark, crop_box, iso_levels, plan_images
from .detect import detect_layout
from .layouts import Scan, SourceImage, find_root, scan_layout
from .recipe import Group, Recipe, layout_recipe_names, load_recipe, recipe_names

__all__ = ["BuildSummary", "Group", "Recipe", "Scan", "SourceImage", "build_benchmark", "crop_box", "detect_layout",
           "find_root", "iso_levels", "layout_recipe_names", "load_recipe", "plan_images", "recipe_names",
           "scan_layout"]
