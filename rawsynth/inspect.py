"""Deprecated module name: :mod:`rawsynth.dataset_check` (``rawsynth inspect``/``preview``; the old name shadowed
the standard library's ``inspect`` inside the package); kept so old imports work."""

from .dataset_check import InspectReport, inspect_dataset, jpeg_qualities, preview_dataset

__all__ = ["InspectReport", "inspect_dataset", "preview_dataset", "jpeg_qualities"]
