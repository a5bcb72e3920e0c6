"""Deprecated module name: :mod:`rawsynth.degrade.blur_kernels` (blur kernels; the Triton kernels are
:mod:`rawsynth.kernels`); kept so old imports work."""

from .blur_kernels import build_kernel

__all__ = ["build_kernel"]
