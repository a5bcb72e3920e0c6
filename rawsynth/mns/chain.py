"""sRGB → RAW for a batch in one call: IPTP then MNS (unprocess → mosaic → add_noise → quantize), the torch ops
composed or the fused Triton kernel. See ``docs/gpu.md``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import check_bchw, check_even, per_sample
from ..errors import ConfigError, ShapeError
from ..isp import ISPBatch, ISPParams, unprocess
from .cfa import Pattern, as_patterns, mosaic
from .noise import NoiseParams, add_noise
from .sensor import SensorParams, quantize

__all__ = ["SRGB_TO_RAW_BACKENDS", "srgb_to_raw"]

#: ``backend=`` choices of :func:`srgb_to_raw`.
SRGB_TO_RAW_BACKENDS = ("auto", "torch", "triton")


def _seed_list(seeds, b: int) -> list[int]:
    if isinstance(seeds, torch.Tensor):
        if seeds.dtype.is_floating_point or seeds.dtype.is_complex or seeds.ndim != 1:
            raise ShapeError(f"seeds must be a 1-D integer tensor, got {seeds.dtype} {tuple(seeds.shape)}")
        seeds = seeds.tolist()
    if isinstance(seeds, (int, bool)) or not isinstance(seeds, Sequence) or len(seeds) != b:
        raise ShapeError(f"seeds must be a sequence of {b} ints or a 1-D integer tensor, got {seeds!r}")
    if any(isinstance(s, bool) or not isinstance(s, int) or not -(2**63) <= s < 2**64 for s in seeds):
        raise ShapeError(f"seeds must be ints in [-2**63, 2**64), got {list(seeds)}")
    return [s % 2**64 for s in seeds]


def _typed(values, b: int, cls, name: str) -> list:
    out = per_sample(list(values) if isinstance(values, (list, tuple)) else values, b, name)
    if not all(isinstance(v, cls) for v in out):
        raise ShapeError(f"{name} must be a {cls.__name__} or a sequence of {b} of them")
    return out


def _srgb_to_raw_torch(srgb, isp, patterns, noise, sensor, seeds, hq, return_linear):
    """The chain in the library's torch ops (any device): per sample ``b`` the noise field is ``torch.randn``
    from a ``torch.Generator`` on ``srgb``'s device seeded with ``seeds[b]``."""
    check_bchw(srgb, "srgb", channels=3, floating=False)
    check_even(srgb, "srgb")
    b = srgb.shape[0]
    pats = as_patterns(patterns, b, "patterns")
    noises = _typed(noise, b, NoiseParams, "noise")
    sensors = _typed(sensor, b, SensorParams, "sensor")
    seed_list = _seed_list(seeds, b)
    with torch.no_grad():
        linear = unprocess(srgb, isp, backend="torch")
        clean = mosaic(linear, pats)
        gens = [torch.Generator(device=srgb.device).manual_seed(s) for s in seed_list]  # one stream per sample
        noisy = torch.cat([add_noise(clean[i:i + 1], noises[i], gens[i]) for i in range(b)]) if b else clean
        raw_dn = quantize(noisy, sensors)
        if hq is not None:
            linear = unprocess(hq, isp, backend="torch")
    return raw_dn, (linear if return_linear or hq is not None else None)


def srgb_to_raw(srgb: torch.Tensor, isp: ISPBatch | ISPParams | Sequence[ISPParams],
                patterns: Sequence[Pattern | str] | Pattern | str,
                noise: Sequence[NoiseParams] | NoiseParams,
                sensor: Sequence[SensorParams] | SensorParams,
                seeds: Sequence[int] | torch.Tensor, *,
                hq: torch.Tensor | None = None, return_linear: bool = False,
                backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor | None]:
    """IPTP + MNS of a batch: ``quantize(add_noise(mosaic(unprocess(srgb))))`` with per-sample parameters.

    Args:
        srgb: ``(B, 3, H, W)`` uint8 ``[0, 255]`` or float ``[0, 1]`` sRGB, ``H`` and ``W`` even, any device.
        isp: per-sample ISP parameters (an :class:`~rawsynth.isp.ISPBatch`, one ``ISPParams`` or ``B`` of them).
        patterns: one Bayer pattern or ``B`` of them.
        noise: one :class:`NoiseParams` (paper Eq. 11) or ``B`` of them (zero λs: no noise).
        sensor: one :class:`SensorParams` or ``B`` of them.
        seeds: ``B`` ints in ``[-2**63, 2**64)`` (``SampleRecipe.noise_seed``) or a 1-D integer tensor: the key
            of each sample's noise field.
        hq: optional second ``(B, 3, H, W)`` sRGB batch: the linear output is then the clean IPTP of ``hq`` (an
            LQ/HQ training pair: DN from the degraded ``srgb``, the target from ``hq``).
        return_linear: also return the linear camera RGB of ``srgb`` (implied by ``hq``).
        backend: ``"auto"`` (Triton on CUDA tensors when available and ``RAWSYNTH_KERNELS`` is not ``0``, torch
            otherwise), ``"torch"`` (the ops above composed; with ``seeds[b] = SampleRecipe.noise_seed`` and uint8
            input on the CPU, byte for byte :func:`rawsynth.pipeline.synthesize`'s mosaic) or ``"triton"``
            (:func:`rawsynth.kernels.iptp_mns`, one fused pass; Triton's interpreter on CPU tensors).

    Returns:
        ``(raw_dn, linear)``: ``(B, 1, H, W)`` ``torch.uint16`` DN in ``[0, white_level]`` and ``(B, 3, H, W)``
        float32 in ``[0, 1]`` (or ``None``), on ``srgb``'s device.

    The two backends agree exactly on the linear image and on the DN of uint8 input without noise; their noise
    fields are different draws of the same distribution (torch's generator vs the kernel's Philox).
    """
    if not isinstance(srgb, torch.Tensor):
        raise ShapeError(f"srgb must be a torch.Tensor of shape (B, 3, H, W), got {type(srgb).__name__}")
    if backend not in SRGB_TO_RAW_BACKENDS:
        raise ConfigError(f"srgb_to_raw: unknown backend {backend!r}; use one of {list(SRGB_TO_RAW_BACKENDS)}")
    if hq is not None and (not isinstance(hq, torch.Tensor) or hq.shape != srgb.shape or hq.device != srgb.device):
        raise ShapeError("hq must be a tensor with srgb's shape and device")
    if backend != "torch":
        from ..kernels._common import Backend, resolve_backend  # the kernels import this package

        if resolve_backend(backend, srgb.device) is Backend.TRITON:
            from ..kernels import iptp_mns

            return iptp_mns(srgb, isp, patterns, noise, sensor, seeds, return_linear, backend="triton", hq=hq)
    return _srgb_to_raw_torch(srgb, isp, patterns, noise, sensor, seeds, hq, return_linear)
