"""What a synthesis run makes: :class:`SynthConfig` (mode, crop, distributions, what to store).
See ``docs/generate.md``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum

from ._config import ConfigMixin, from_mapping, to_dict
from .degrade import DegradationConfig
from .errors import ConfigError
from .isp import ISPConfig
from .mns import NoiseProfile, Pattern, SensorParams, load_noise_profile
from .mns.physics import PhysicsProfile

__all__ = ["Mode", "SmallPolicy", "SynthConfig"]


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
