"""Pair synthesis (paper Fig. 5, Eq. 7): one sRGB HQ crop → (RAW LQ mosaic, linear HQ) with its metadata.

Two modes (:class:`Mode`):
* ``rddm``: detail degradation → IPTP of HQ and LQ with the same ISP parameters → MNS on the LQ.
  The pair is (noisy RAW mosaic of the degraded image, linear HQ), same ``H×W``.
* ``ddnet``: IPTP of the HQ → MNS, no detail degradation: (noisy RAW mosaic, its clean linear image).

Every random draw of a sample comes from generators derived from ``(seed, key)`` only (:mod:`rawsynth.rng`),
one named stream per stage, so any sample can be regenerated alone and adding a stage never shifts another's
draws.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum

import cv2
import numpy as np
import torch

from ._config import ConfigMixin, from_mapping, load_yaml, to_dict
from ._version import __version__
from .degrade import DegradationConfig, sample_degradation
from .degrade.ops import apply_degradation_u8
from .errors import ConfigError, InputError, ShapeError
from .isp import ISPConfig, ISPParams, inverse_gamma, inverse_tone, sample_isp_params
from .isp.iptp import apply_matrix, inverse_white_balance
from .isp.params import ISPBatch
from .mns import (NoiseParams, NoiseProfile, Pattern, SensorParams, add_noise, load_noise_profile, mosaic, quantize,
                  sample_noise_params)
from .mns.physics import PhysicsParams, PhysicsProfile, apply_physics_noise, sample_physics_params
from .rng import derive_seed, numpy_rng, torch_generator

__all__ = ["Mode", "SmallPolicy", "SynthConfig", "CropBox", "Sample", "SampleRecipe", "Recipe", "sample_recipe",
           "recipe_meta", "sample_crop", "apply_crop", "synthesize", "srgb_to_linear_lut"]


class Mode(str, Enum):
    """What pairs to make: ``RDDM`` (degraded RAW ↔ linear HQ) or ``DDNET`` (RAW ↔ its clean linear image)."""

    RDDM = "rddm"
    DDNET = "ddnet"


class SmallPolicy(str, Enum):
    """What to do with a source smaller than the crop: ``SKIP`` it (recorded as a failure row with reason
    ``"too small"``) or ``REFLECT``-pad it to the crop size (recorded in the crop box)."""

    SKIP = "skip"
    REFLECT = "reflect"


@dataclass(frozen=True)
class SynthConfig(ConfigMixin):
    """Everything that decides a sample's content besides ``(seed, key)`` and the source image.

    Attributes:
        mode: :class:`Mode`.
        crop: side of the square HQ crop in pixels (even, multiple of the degradation scale in ``rddm`` mode).
        crops_per_image: random crops taken from each source.
        small_policy: :class:`SmallPolicy` for sources smaller than ``crop``.
        patterns: Bayer patterns drawn uniformly per sample.
        noise_profile: bundled profile name or JSON path (:func:`~rawsynth.mns.load_noise_profile`).
        iso_range: ``(lo, hi)`` overriding the profile's ISO range, or ``None``.
        sensor: bit depth, black and white level of the synthetic sensor.
        isp: distributions of the ISP parameters.
        degradation: a :class:`~rawsynth.degrade.DegradationConfig` (``rddm`` mode only).
        save_srgb: also store the 8-bit sRGB LQ (``rddm``) and GT crops.
        save_dng: also store each RAW as a DNG.
        members: how the mosaic and the HQ are stored: ``"npy"`` (``raw.npy``/``hq.npy``, default) or ``"png"``
            (16-bit PNG as ``raw.png16``/``hq.png16``); see :mod:`rawsynth.shards.fields`.
        format_version: shard format to write: 2 (default) or 1 (the former format, with ``members="png"``:
            ``raw.png``/``hq.png`` and ``null`` metadata values; for fixtures and old readers).
        cameras: a :class:`~rawsynth.cameras.CameraConfig` drawing a camera per sample (noise, sensor, colour
            matrix, DNG make/model; ``docs/cameras.md``), or ``None`` (the default: ``noise_profile`` and
            ``sensor``; left out of :meth:`to_dict` so default manifests stay as they were).
    """

    mode: Mode = Mode.RDDM
    crop: int = 512
    crops_per_image: int = 1
    small_policy: SmallPolicy = SmallPolicy.SKIP
    patterns: tuple[Pattern, ...] = tuple(Pattern)
    noise_profile: str = "default"
    iso_range: tuple[float, float] | None = None
    sensor: SensorParams = field(default_factory=SensorParams)
    isp: ISPConfig = field(default_factory=ISPConfig)
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    save_srgb: bool = False
    save_dng: bool = False
    members: str = "npy"
    format_version: int = 2
    cameras: object = None

    def __post_init__(self):
        def setf(name, value):
            object.__setattr__(self, name, value)

        try:
            setf("mode", Mode(self.mode))
            setf("small_policy", SmallPolicy(self.small_policy))
            setf("patterns", tuple(Pattern(p) for p in self.patterns))
        except ValueError as e:
            raise ConfigError(f"SynthConfig: {e}") from None
        if not self.patterns or len(set(self.patterns)) != len(self.patterns):
            raise ConfigError(f"SynthConfig.patterns must be a non-empty list of distinct patterns, got "
                              f"{[p.value for p in self.patterns]}")
        for name in ("crop", "crops_per_image"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"SynthConfig.{name} must be a positive integer, got {v!r}")
        if self.crop % 2:
            raise ConfigError(f"SynthConfig.crop must be even (whole Bayer blocks), got {self.crop}")
        if isinstance(self.sensor, dict):
            setf("sensor", SensorParams.from_dict(self.sensor))
        if isinstance(self.isp, dict):
            setf("isp", ISPConfig.from_dict(self.isp))
        if isinstance(self.degradation, dict):
            setf("degradation", DegradationConfig.from_dict(self.degradation))
        if not isinstance(self.degradation, DegradationConfig):
            raise ConfigError(f"SynthConfig.degradation must be a DegradationConfig, got {type(self.degradation)}")
        if self.mode is Mode.RDDM and self.crop % self.degradation.scale:
            raise ConfigError(f"SynthConfig.crop ({self.crop}) must be a multiple of the degradation scale "
                              f"({self.degradation.scale})")
        if self.iso_range is not None:
            lo, hi = (float(v) for v in self.iso_range)
            if not 0 < lo <= hi:
                raise ConfigError(f"SynthConfig.iso_range must be (lo, hi) with 0 < lo <= hi, got {self.iso_range}")
            setf("iso_range", (lo, hi))
        if self.cameras is not None:
            from .cameras import CameraConfig

            if not isinstance(self.cameras, CameraConfig):
                setf("cameras", CameraConfig.from_dict(self.cameras))
        if self.members not in ("npy", "png"):
            raise ConfigError(f"SynthConfig.members must be 'npy' or 'png', got {self.members!r}")
        if self.format_version not in (1, 2) or (self.format_version == 1 and self.members != "png"):
            raise ConfigError(f"SynthConfig.format_version must be 2, or 1 with members='png', got "
                              f"{self.format_version!r} with members={self.members!r}")
        self.profile()  # fail early on a missing or invalid profile

    def profile(self) -> NoiseProfile | PhysicsProfile:
        """The noise profile, with ``iso_range`` applied (Eq. 11 profiles only: a physics profile draws its gain
        K over its own ``k_range``)."""
        prof = load_noise_profile(self.noise_profile)
        if isinstance(prof, PhysicsProfile):
            if self.iso_range:
                raise ConfigError(f"iso_range applies to Eq. 11 noise profiles; {self.noise_profile!r} is a physics "
                                  "profile that draws its gain K over its k_range (edit that in its JSON)")
            return prof
        return dataclasses.replace(prof, iso_range=self.iso_range) if self.iso_range else prof

    def to_dict(self) -> dict:
        """JSON-ready dict; ``SynthConfig.from_dict(c.to_dict()) == c``."""
        d = to_dict(self)
        if self.cameras is None:  # configs without cameras keep the manifest they always had
            d.pop("cameras", None)
        else:
            d["cameras"] = self.cameras.to_dict()
        return d

    @classmethod
    def from_dict(cls, d, where: str | None = None) -> SynthConfig:
        """Build from a mapping (YAML/JSON); unknown keys raise :class:`ConfigError` naming them."""
        return from_mapping(cls, d, where)


@dataclass(frozen=True)
class CropBox(ConfigMixin):
    """Where a sample's HQ crop lies in its source image.

    ``top``/``left`` are even, so the crop keeps the source's pixel grid phase; ``pad_bottom``/``pad_right``
    are the reflect-padding added to a small source (``policy = "reflect"``).
    """

    top: int
    left: int
    height: int
    width: int
    policy: str = "skip"
    pad_bottom: int = 0
    pad_right: int = 0


def sample_crop(rng: np.random.Generator, size: tuple[int, int], crop: int, policy: SmallPolicy | str,
                name: str = "<image>") -> CropBox:
    """Draw a ``crop × crop`` box with even offsets inside an image of ``size = (H, W)``."""
    policy = SmallPolicy(policy)
    h, w = size
    pad_b, pad_r = max(crop - h, 0), max(crop - w, 0)
    if (pad_b or pad_r) and policy is SmallPolicy.SKIP:
        raise InputError(name, "too small", detail=f"{h}x{w} < crop {crop}x{crop}",
                         hint="use a smaller --crop or the 'reflect' small-image policy")
    top = 2 * int(rng.integers(0, (h + pad_b - crop) // 2 + 1))
    left = 2 * int(rng.integers(0, (w + pad_r - crop) // 2 + 1))
    return CropBox(top, left, crop, crop, policy.value, pad_b, pad_r)


def apply_crop(img: np.ndarray, box: CropBox) -> np.ndarray:
    """Cut ``box`` out of ``img`` (``(H, W, C)``), reflect-padding first if the box says so."""
    if box.pad_bottom or box.pad_right:
        img = np.pad(img, ((0, box.pad_bottom), (0, box.pad_right), (0, 0)), mode="reflect")
    return np.ascontiguousarray(img[box.top:box.top + box.height, box.left:box.left + box.width])


@dataclass(frozen=True)
class SampleRecipe:
    """Every parameter of one sample, drawn from ``(seed, key)`` alone by :func:`sample_recipe`.

    :func:`synthesize` (the shards) and :class:`rawsynth.onthefly.OnTheFlySynth` (training on the GPU) both
    draw through :func:`sample_recipe`, so the same ``(seed, key, config, size)`` gives the same parameters.

    Attributes:
        isp: the ISP parameters (stream ``"isp"``).
        pattern: the Bayer pattern (stream ``"pattern"``, uniform over ``config.patterns``).
        noise: the noise parameters (stream ``"noise"``, from ``config.profile()`` or the sample's camera):
            :class:`~rawsynth.mns.NoiseParams` (Eq. 11) or :class:`~rawsynth.mns.physics.PhysicsParams`.
        sensor: the sensor (``config.sensor``, or the camera's; not random).
        degradation: the detail degradation (stream ``"degradation"``) in ``rddm`` mode, ``None`` in ``ddnet``.
        noise_seed: the seed of the noise field, ``derive_seed(seed, key, "noise-field")`` (the CPU path seeds a
            ``torch.Generator`` with it, the GPU kernel its counter-based RNG).
    """

    isp: ISPParams
    pattern: Pattern
    noise: NoiseParams
    sensor: SensorParams
    degradation: object | None
    noise_seed: int
    camera: dict | None = None


def _camera_and_profile(seed: int, key: str, config: SynthConfig):
    """The sample's camera profile (stream ``"camera"``) when ``config.cameras`` is set, else the noise profile."""
    if config.cameras is None:
        return config.profile()
    from .cameras import sample_camera

    return sample_camera(numpy_rng(seed, key, "camera"), config.cameras, seed)


#: Deprecated name of :class:`SampleRecipe` (``benchmarks.builders.Recipe`` is a benchmark's recipe, another thing).
Recipe = SampleRecipe


def sample_recipe(seed: int, key: str, config: SynthConfig, size: tuple[int, int]) -> SampleRecipe:
    """Draw every parameter of sample ``key`` (the draws of :func:`synthesize`, without the image).

    Args:
        seed: the run seed.
        key: the sample key.
        config: what to make.
        size: ``(H, W)`` of the HQ crop (the degradation is drawn for it).

    Returns:
        The sample's :class:`SampleRecipe`.

    Raises:
        ShapeError: ``size`` does not suit the degradation (not a multiple of its scale, or too small).
    """
    prof = _camera_and_profile(seed, key, config)
    isp_cfg, camera, sensor = config.isp, None, config.sensor
    if isinstance(prof, PhysicsProfile):
        sensor = prof.sensor(config.sensor)
        info = prof.camera
        ccm = "brooks"
        if config.cameras is not None and config.cameras.ccm == "camera" and info is not None and info.xyz2cam:
            isp_cfg, ccm = dataclasses.replace(config.isp, xyz2cam=(info.xyz2cam,)), "camera"
        camera = {"name": prof.name, "make": info.make if info else None, "model": info.model if info else None,
                  "ccm": ccm}
        noise = sample_physics_params(numpy_rng(seed, key, "noise"), prof)
    else:
        noise = sample_noise_params(numpy_rng(seed, key, "noise"), prof)
    isp = sample_isp_params(numpy_rng(seed, key, "isp"), isp_cfg)
    patterns = config.patterns
    pattern = patterns[int(numpy_rng(seed, key, "pattern").integers(len(patterns)))]
    deg = None
    if config.mode is Mode.RDDM:
        deg = sample_degradation(numpy_rng(seed, key, "degradation"), config.degradation, tuple(size))
    elif config.mode is not Mode.DDNET:
        raise ConfigError(f"unknown mode {config.mode!r}")
    return SampleRecipe(isp, pattern, noise, sensor, deg, derive_seed(seed, key, "noise-field"), camera)


def recipe_meta(recipe: SampleRecipe, key: str, seed: int, config: SynthConfig, size: tuple[int, int],
                source: dict | None = None, crop: CropBox | None = None) -> dict:
    """The metadata a shard records for a sample (``meta.json``, see ``docs/format.md``)."""
    deg = recipe.degradation
    meta = {
        "key": key, "seed": int(seed), "mode": config.mode.value, "pattern": recipe.pattern.value,
        "sensor": recipe.sensor.to_dict(), "isp": recipe.isp.to_dict(), "noise": recipe.noise.to_dict(),
        "noise_profile": config.noise_profile,
        "degradation": deg.to_dict() if deg is not None else None,
        "source": source, "crop": crop.to_dict() if crop is not None else None,
        "size": [int(size[0]), int(size[1])], "version": __version__,
    }
    if recipe.camera is not None:  # only with cameras or a physics profile: default metadata is unchanged
        meta["camera"] = recipe.camera
    return meta


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


def srgb_to_linear_lut(srgb: np.ndarray, isp: ISPParams, channels_last: bool = False) -> torch.Tensor:
    """IPTP of an image on the 8-bit grid through a 256-entry lookup table for the pointwise part.

    Inverse tone and inverse gamma act on each value alone, so for 8-bit input they are a table lookup
    (the float maths is done once per level); the CCM and white balance follow as in
    :func:`~rawsynth.isp.unprocess`. Equal to ``unprocess(torch.from_numpy(srgb / 255))`` to float rounding.

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
    # cv2.LUT: the same table lookup as _LINEAR_LUT[srgb] (a copy of the entries), ~4x faster
    x = torch.from_numpy(cv2.LUT(np.ascontiguousarray(srgb), _LINEAR_LUT_ROW)).permute(2, 0, 1)[None]
    p = ISPBatch.from_params(isp, 1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = inverse_white_balance(apply_matrix(x, p.rgb2cam), p, memory_format=fmt)
    return x.clamp_(0.0, 1.0)


_srgb_to_linear = srgb_to_linear_lut  # the old private name (benchmarks/perf)


def _linear_lut() -> np.ndarray:
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    return inverse_gamma(inverse_tone(levels)).float().numpy()


_LINEAR_LUT = _linear_lut()
_LINEAR_LUT_ROW = np.ascontiguousarray(_LINEAR_LUT.reshape(1, 256))  # cv2.LUT's table shape


def _to_u8(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _degrade_u8(hq8: np.ndarray, recipe: SampleRecipe, config: SynthConfig) -> np.ndarray | None:
    """The detail degradation of ``hq8`` as uint8 at the HQ size (``rddm`` mode), or ``None`` (``ddnet``)."""
    if config.mode is Mode.DDNET:
        return None
    if config.mode is not Mode.RDDM:
        raise ConfigError(f"unknown mode {config.mode!r}")
    # apply_degradation's 8-bit result as uint8 (it is exactly k / 255 as float)
    lq8 = apply_degradation_u8(np.divide(hq8, np.float32(255.0), dtype=np.float32), recipe.degradation)
    if lq8.shape[:2] != hq8.shape[:2]:
        raise ConfigError("rddm pairs need the LQ at the HQ size: set degradation.resize_back: true")
    return lq8


def synthesize(srgb_hq: np.ndarray, key: str, seed: int, config: SynthConfig,
               source: dict | None = None, crop: CropBox | None = None) -> Sample:
    """Make one pair from an HQ sRGB crop.

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
    lq8 = _degrade_u8(hq8, recipe, config)  # None in ddnet mode
    hq_lin = srgb_to_linear_lut(hq8, isp, channels_last=True)  # hq_linear below is then a view, not a copy
    src_lin = hq_lin if lq8 is None else srgb_to_linear_lut(lq8, isp)
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
