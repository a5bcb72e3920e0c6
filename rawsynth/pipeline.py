"""One sample of the paper's chain (Fig. 5): an HQ sRGB crop → (RAW LQ mosaic, linear HQ) with its metadata,
:func:`synthesize`. See ``docs/architecture.md``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._config import load_yaml
from .crop import CropBox, apply_crop, sample_crop
from .degrade import degrade
from .errors import ConfigError, ShapeError
from .isp import ISPParams, linear_lut, unprocess
from .mns import NoiseParams, Pattern, SensorParams, add_noise, mosaic, quantize
from .mns.physics import PhysicsParams, apply_physics_noise
from .recipe import Recipe, SampleRecipe, recipe_meta, sample_recipe
from .rng import torch_generator
from .synth_config import Mode, SmallPolicy, SynthConfig

__all__ = ["Mode", "SmallPolicy", "SynthConfig", "CropBox", "Sample", "SampleRecipe", "Recipe", "sample_recipe",
           "recipe_meta", "sample_crop", "apply_crop", "synthesize", "srgb_to_linear_lut"]


@dataclass
class Sample:
    """One synthesised pair.

    Attributes:
        key: the sample key (no dots).
        raw_dn: ``(H, W)`` uint16 noisy Bayer mosaic in DN.
        hq_linear: ``(H, W, 3)`` float32 linear camera RGB in ``[0, 1]`` (the training target).
        pattern: the mosaic's Bayer pattern.
        meta: JSON-ready metadata (every parameter drawn).
        lq_srgb: ``(H, W, 3)`` uint8 degraded sRGB (``rddm`` mode with ``save_srgb``), else ``None``.
        gt_srgb: ``(H, W, 3)`` uint8 HQ sRGB crop (with ``save_srgb``), else ``None``.
        isp: the ISP parameters (also in ``meta``).
        sensor: the sensor (also in ``meta``).
        noise: the noise parameters (also in ``meta``).
    """

    key: str
    raw_dn: np.ndarray
    hq_linear: np.ndarray
    pattern: Pattern
    meta: dict
    isp: ISPParams
    sensor: SensorParams
    noise: NoiseParams | PhysicsParams
    lq_srgb: np.ndarray | None = None
    gt_srgb: np.ndarray | None = None


def _as_bchw(u8: np.ndarray) -> torch.Tensor:
    """An ``(H, W, 3)`` uint8 image as a ``(1, 3, H, W)`` tensor view (channels-last strides, no copy)."""
    return torch.from_numpy(np.ascontiguousarray(u8)).permute(2, 0, 1)[None]


def srgb_to_linear_lut(srgb: np.ndarray, isp: ISPParams, channels_last: bool = False) -> torch.Tensor:
    """IPTP of one ``(H, W, 3)`` uint8 image: :func:`rawsynth.isp.unprocess` on the 8-bit grid (a table lookup
    for the pointwise part). Equal to ``unprocess(torch.from_numpy(srgb / 255))`` to float rounding.

    Args:
        srgb: ``(H, W, 3)`` uint8.
        isp: the sample's parameters.
        channels_last: store the result pixel-interleaved, so that ``out[0].permute(1, 2, 0)`` is a contiguous
            ``(H, W, 3)`` array (same values).

    Returns:
        ``(1, 3, H, W)`` float32 linear camera RGB in ``[0, 1]``.
    """
    if srgb.dtype != np.uint8 or srgb.ndim != 3 or srgb.shape[2] != 3:
        raise ShapeError(f"srgb must be (H, W, 3) uint8, got {srgb.dtype} {srgb.shape}")
    x = unprocess(_as_bchw(srgb), isp, backend="torch")
    return x if channels_last else x.contiguous()


_srgb_to_linear = srgb_to_linear_lut  # the old private name (benchmarks/perf)
_LINEAR_LUT = linear_lut().numpy()  # the old private table (now rawsynth.isp.linear_lut)


def _to_u8(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def synthesize(srgb_hq: np.ndarray, key: str, seed: int, config: SynthConfig,
               source: dict | None = None, crop: CropBox | None = None) -> Sample:
    """Make one pair from an HQ sRGB crop: degrade → unprocess → mosaic → add_noise → quantize.

    Args:
        srgb_hq: ``(H, W, 3)`` sRGB crop, uint8 or float32 in ``[0, 1]`` (float input is rounded to 8 bits:
            the degradation and IPTP work on the 8-bit grid, as Real-ESRGAN does). ``H``, ``W`` even (and
            multiples of the degradation scale in ``rddm`` mode).
        key: the sample key; with ``seed`` it decides every random draw.
        seed: the run seed.
        config: what to make.
        source: provenance recorded in the metadata (``{"path": ..., "sha256": ...}``).
        crop: the crop box recorded in the metadata.

    Returns:
        A :class:`Sample`.

    Draw streams (:func:`rawsynth.rng.numpy_rng`): ``"isp"``, ``"pattern"``, ``"noise"``, ``"degradation"``
    (all drawn by :func:`sample_recipe`); the noise field comes from :func:`rawsynth.rng.torch_generator`
    stream ``"noise-field"``.
    """
    if not isinstance(srgb_hq, np.ndarray) or srgb_hq.ndim != 3 or srgb_hq.shape[2] != 3:
        raise ShapeError(f"srgb_hq must be an (H, W, 3) array, got {getattr(srgb_hq, 'shape', type(srgb_hq))}")
    if not key or "." in key or "/" in key:
        raise ConfigError(f"sample key must be non-empty without dots or slashes, got {key!r}")
    h, w = srgb_hq.shape[:2]
    if h % 2 or w % 2:
        raise ShapeError(f"srgb_hq must have even height and width, got {h}x{w}")
    hq8 = _to_u8(srgb_hq)  # the crop (cut by the caller: sample_crop + apply_crop), on the 8-bit grid
    recipe = sample_recipe(seed, key, config, (h, w))
    isp, pattern, noise, sensor = recipe.isp, recipe.pattern, recipe.noise, recipe.sensor

    # paper Fig. 5: crop → degrade → unprocess (IPTP) → mosaic → add_noise → quantize (MNS)
    lq8 = None  # ddnet mode: the HQ itself is mosaicked
    if config.mode is Mode.RDDM:
        lq8 = degrade(hq8, recipe.degradation)
        if lq8.shape[:2] != hq8.shape[:2]:
            raise ConfigError("rddm pairs need the LQ at the HQ size: set degradation.resize_back: true")
    hq_lin = unprocess(_as_bchw(hq8), isp)  # channels-last: hq_linear below is a view, not a copy
    src_lin = hq_lin if lq8 is None else unprocess(_as_bchw(lq8), isp)
    clean, gen = mosaic(src_lin, pattern), torch_generator(seed, key, "noise-field")
    if isinstance(noise, PhysicsParams):  # a camera profile's physics model (rawsynth.mns.physics)
        noisy = apply_physics_noise(clean, noise, sensor, pattern, gen)
    else:  # paper Eq. 11
        noisy = add_noise(clean, noise, gen)
    raw_dn = quantize(noisy, sensor)[0, 0].numpy()
    hq_linear = hq_lin[0].permute(1, 2, 0).numpy()

    meta = recipe_meta(recipe, key, seed, config, (h, w), source, crop)
    return Sample(key, raw_dn, np.ascontiguousarray(hq_linear), pattern, meta, isp, sensor, noise,
                  lq8 if config.save_srgb else None, hq8 if config.save_srgb else None)


#: Deprecated alias of :func:`rawsynth._config.load_yaml` (every fault is a :class:`ConfigError` naming the file).
load_config = load_yaml
