"""Draw one sample's degradation parameters from an explicit generator, in a fixed order (listed in the docs).
See ``docs/degrade.md``."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError
from ._fields import as_size
from .config import (DegradationConfig, FinalConfig, FinalOrder, KernelConfig, KernelType, ResizeDirection,
                     StageConfig)
from .params import DegradationParams, FinalParams, KernelParams, StageParams

__all__ = ["sample_degradation"]

_DIRECTIONS = (ResizeDirection.UP, ResizeDirection.DOWN, ResizeDirection.KEEP)
_GENERALIZED = (KernelType.GENERALIZED_ISO, KernelType.GENERALIZED_ANISO)


def _choose(rng: np.random.Generator, probs: tuple[float, ...]) -> int:
    """Index ``i`` with probability ``probs[i]`` from one ``rng.random()`` (like ``random.choices``)."""
    u = rng.random() * math.fsum(probs)
    acc = 0.0
    for i, p in enumerate(probs):
        acc += p
        if u < acc:
            return i
    return max(i for i, p in enumerate(probs) if p > 0)  # u landed on the rounding gap at the top


def _sample_kernel(rng: np.random.Generator, kc: KernelConfig) -> KernelParams:
    sizes = kc.sizes
    size = sizes[int(rng.integers(len(sizes)))]
    if rng.random() < kc.sinc_prob:
        lo, hi = kc.sinc_omega_range if size < kc.sinc_large_size else kc.sinc_omega_range_large
        return KernelParams("sinc", size, omega_c=float(rng.uniform(lo, hi)))
    kind = kc.kernel_list[_choose(rng, kc.kernel_prob)]
    sigma_x = float(rng.uniform(*kc.sigma_range))
    if kind.isotropic:
        sigma_y, theta = sigma_x, 0.0
    else:
        sigma_y = float(rng.uniform(*kc.sigma_range))
        theta = float(rng.uniform(*kc.rotation_range))
    beta = None
    if kind.has_beta:
        lo, hi = kc.betag_range if kind in _GENERALIZED else kc.betap_range
        beta = float(rng.uniform(lo, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, hi))
    return KernelParams(kind, size, sigma_x, sigma_y, theta, beta)


def _sample_stage(rng: np.random.Generator, sc: StageConfig, size_of) -> StageParams:
    kernel = _sample_kernel(rng, sc.kernel) if rng.random() < sc.blur_prob else None
    direction = _DIRECTIONS[_choose(rng, sc.resize_prob)]
    if direction is ResizeDirection.UP:
        factor = float(rng.uniform(1.0, sc.resize_range[1]))
    elif direction is ResizeDirection.DOWN:
        factor = float(rng.uniform(sc.resize_range[0], 1.0))
    elif direction is ResizeDirection.KEEP:
        factor = 1.0
    else:  # pragma: no cover
        raise AssertionError(direction)
    mode = sc.resize_modes[int(rng.integers(len(sc.resize_modes)))]
    quality = None if sc.jpeg_range is None else int(rng.integers(sc.jpeg_range[0], sc.jpeg_range[1] + 1))
    return StageParams(kernel, direction, factor, mode, size_of(factor), quality)


def _sample_final(rng: np.random.Generator, fc: FinalConfig) -> FinalParams:
    order = FinalOrder.RESIZE_SINC_JPEG if rng.random() < fc.resize_first_prob else FinalOrder.JPEG_RESIZE_SINC
    mode = fc.resize_modes[int(rng.integers(len(fc.resize_modes)))]
    sinc = None
    if rng.random() < fc.sinc_prob:
        sizes = fc.sinc_sizes
        size = sizes[int(rng.integers(len(sizes)))]
        sinc = KernelParams("sinc", size, omega_c=float(rng.uniform(*fc.sinc_omega_range)))
    quality = int(rng.integers(fc.jpeg_range[0], fc.jpeg_range[1] + 1))
    return FinalParams(order, mode, sinc, quality)


def _first_size(h: int, w: int, factor: float) -> tuple[int, int]:
    # F.interpolate(scale_factor=f) makes floor(size * f) (torch/nn/functional.py, _interp_output_size)
    return math.floor(float(h) * factor), math.floor(float(w) * factor)


def _second_size(h: int, w: int, scale: int, factor: float) -> tuple[int, int]:
    # Real-ESRGAN: size=(int(ori_h / scale * factor), int(ori_w / scale * factor))
    return int(h / scale * factor), int(w / scale * factor)


def sample_degradation(rng: np.random.Generator, cfg: DegradationConfig | None, size: tuple[int, int]
                       ) -> DegradationParams:
    """Draw every parameter of one sample's degradation (draw order: see the module docstring).

    Args:
        rng: the sample's generator (derive it from (seed, sample key) with :func:`rawsynth.rng.numpy_rng`);
            numpy's and torch's global RNGs are never touched.
        cfg: the distributions; Real-ESRGAN's (:class:`DegradationConfig` defaults) if ``None``.
        size: ``(H, W)`` of the HQ image, multiples of ``cfg.scale``.

    Returns:
        The frozen, JSON-serialisable :class:`DegradationParams`.

    Raises:
        TypeError: ``rng`` is not a ``numpy.random.Generator``.
        ShapeError: ``size`` is not a multiple of ``cfg.scale``, or so small that the smallest allowed resize
            would give an empty image.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    cfg = DegradationConfig() if cfg is None else cfg
    if not isinstance(cfg, DegradationConfig):
        raise TypeError(f"cfg must be a DegradationConfig, got {type(cfg).__name__}")
    try:
        h, w = as_size(size, "size")
    except ValueError as e:
        raise ShapeError(str(e)) from None
    s = cfg.scale
    if h % s or w % s:
        raise ShapeError(f"size {(h, w)} must be a multiple of scale {s}; crop the image first")
    smallest = (min(_first_size(h, w, cfg.first.resize_range[0])),
                min(_second_size(h, w, s, cfg.second.resize_range[0])))
    if min(smallest) < 1:
        raise ShapeError(f"size {(h, w)} is too small: the smallest allowed resizes (first.resize_range[0] = "
                         f"{cfg.first.resize_range[0]}, second.resize_range[0] = {cfg.second.resize_range[0]}) "
                         "would give an empty image")
    first = _sample_stage(rng, cfg.first, lambda f: _first_size(h, w, f))
    second = _sample_stage(rng, cfg.second, lambda f: _second_size(h, w, s, f))
    final = _sample_final(rng, cfg.final)
    out = (h, w) if cfg.resize_back else (h // s, w // s)
    return DegradationParams((h, w), s, first, second, final, cfg.resize_back, cfg.resize_back_mode, out)
