"""A camera's physics-noise calibration (:class:`PhysicsProfile`: gain range, read/row-noise laws, calibration
points) and its JSON form. See ``docs/cameras.md``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import numpy as np

from .._config import ConfigMixin, from_mapping
from ..errors import ConfigError
from .sensor import SensorParams

__all__ = ["ReadModel", "COMPONENTS", "LogLinearLaw", "CalibrationPoint", "CameraInfo", "PhysicsProfile"]


#: The switchable components, in the order :func:`apply_physics_noise` applies them.
COMPONENTS = ("shot", "read", "row", "color_bias", "quant")


_LAMBDA_LIMIT = 1.0  # |λ| bound: ELD's calibrations lie in [-0.25, 0.2]


_MAX_ABS_BIAS = 1e4  # DN


class ReadModel(str, Enum):
    """Read-noise distribution: ``GAUSSIAN`` (ELD's ``g_scale`` law) or ``TUKEY`` lambda (``G_scale``)."""

    GAUSSIAN = "gaussian"
    TUKEY = "tukey"


def _finite(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
        raise ConfigError(f"{what} must be a finite number, got {v!r}")
    return float(v)


@dataclass(frozen=True)
class LogLinearLaw(ConfigMixin):
    """``log σ = slope·log K + bias + N(0, sigma²)`` (natural logs; σ and K in DN)."""

    slope: float
    bias: float
    sigma: float = 0.0

    def __post_init__(self):
        for name in ("slope", "bias", "sigma"):
            object.__setattr__(self, name, _finite(getattr(self, name), f"law.{name}"))
        if self.sigma < 0:
            raise ConfigError(f"law.sigma must be >= 0, got {self.sigma}")

    def draw(self, k: float, z: float) -> float:
        """σ at gain ``k`` for the standard-normal draw ``z``."""
        return math.exp(self.slope * math.log(k) + self.bias + self.sigma * z)


@dataclass(frozen=True)
class CalibrationPoint(ConfigMixin):
    """One calibration (an ISO, or a bin of ELD's K range): gain, Tukey shape, colour bias, measured scales.

    Attributes:
        K: system gain (DN/e⁻) of the point.
        tukey_lambda: Tukey-lambda shape of the read noise.
        color_bias: 4 values in DN, order R, G1, G2, B.
        iso: the ISO it was measured at, or ``None`` (ELD's bins).
        sigma_tl, sigma_gauss, sigma_row: measured scales (DN), or ``None``.
    """

    K: float
    tukey_lambda: float
    color_bias: tuple[float, float, float, float]
    iso: float | None = None
    sigma_tl: float | None = None
    sigma_gauss: float | None = None
    sigma_row: float | None = None

    def __post_init__(self):
        k = _finite(self.K, "K")
        if k <= 0:
            raise ConfigError(f"K must be > 0, got {k}")
        object.__setattr__(self, "K", k)
        lam = _finite(self.tukey_lambda, "tukey_lambda")
        if abs(lam) > _LAMBDA_LIMIT:
            raise ConfigError(f"tukey_lambda must be in [-{_LAMBDA_LIMIT}, {_LAMBDA_LIMIT}], got {lam}")
        object.__setattr__(self, "tukey_lambda", lam)
        cb = tuple(_finite(v, "color_bias") for v in self.color_bias)
        if len(cb) != 4 or max(abs(v) for v in cb) > _MAX_ABS_BIAS:
            raise ConfigError(f"color_bias must be 4 values (R, G1, G2, B) within ±{_MAX_ABS_BIAS:g} DN, got {cb}")
        object.__setattr__(self, "color_bias", cb)
        for name in ("iso", "sigma_tl", "sigma_gauss", "sigma_row"):
            v = getattr(self, name)
            if v is not None:
                v = _finite(v, name)
                if v <= 0:
                    raise ConfigError(f"{name} must be > 0, got {v}")
                object.__setattr__(self, name, v)

    def to_dict(self) -> dict:
        """As :meth:`ConfigMixin.to_dict`, without the ``None`` entries."""
        return {k: v for k, v in super().to_dict().items() if v is not None}


@dataclass(frozen=True)
class CameraInfo(ConfigMixin):
    """What a camera profile says about the camera besides noise.

    Attributes:
        make, model: as in the camera's EXIF (``Make``/``Model``); written to DNGs.
        bit_depth, black_level, white_level: its sensor encoding (the K and σ of the profile are in these DN).
        xyz2cam: D65 XYZ → camera matrix (``ColorMatrix``), or ``None`` when no table has the camera.
        source: where the levels and the matrix come from.
    """

    make: str
    model: str
    bit_depth: int = 14
    black_level: int = 512
    white_level: int = 16383
    xyz2cam: tuple[tuple[float, float, float], ...] | None = None
    source: str = ""

    def __post_init__(self):
        self.sensor()  # validates the levels
        if self.xyz2cam is not None:
            m = np.asarray(self.xyz2cam, dtype=np.float64)
            if m.shape != (3, 3) or not np.all(np.isfinite(m)):
                raise ConfigError(f"camera.xyz2cam must be a finite 3x3 matrix, got {self.xyz2cam!r}")
            object.__setattr__(self, "xyz2cam", tuple(tuple(float(v) for v in r) for r in m))

    def sensor(self) -> SensorParams:
        return SensorParams(self.bit_depth, self.black_level, self.white_level)


@dataclass(frozen=True)
class _ProfileFile:
    """The JSON layout of a profile (``docs/cameras.md``), key-checked by :func:`from_mapping` and then built
    into a :class:`PhysicsProfile` (laws by name, points under ``iso`` or ``bins``)."""

    name: str
    laws: dict
    kind: str = "physics"
    description: str = ""
    source: str = ""
    read_model: str = "tukey"
    k_range: list | None = None
    lambda_choice: str | None = None  # default: "nearest" with ``iso``, "random" with ``bins``
    components: tuple = COMPONENTS
    iso: dict | None = None
    bins: list | None = None
    camera: dict | None = None


@dataclass(frozen=True)
class _Laws:
    """The names a profile's ``laws`` mapping may hold (each a :class:`LogLinearLaw` mapping)."""

    sigma_tl: dict | None = None
    sigma_gauss: dict | None = None
    sigma_row: dict | None = None


def _points(f: _ProfileFile) -> list[CalibrationPoint]:
    """The calibration points of a profile file: ``iso`` (ISO → point) or ``bins`` (a list)."""
    if (f.iso is None) == (f.bins is None):
        raise ConfigError("give exactly one of 'iso' (calibrated points by ISO) or 'bins' (points over the K range)")
    points = []
    if f.iso is not None:
        if not isinstance(f.iso, Mapping) or not f.iso:
            raise ConfigError("'iso' must map ISO values to calibrations")
        for iso, p in f.iso.items():
            where = f"iso.{iso}"
            if isinstance(p, Mapping) and "iso" in p:  # the ISO is the key
                raise ConfigError(f"unknown key(s) ['iso'] in section '{where}'", fix=f"remove {where}.iso")
            try:
                points.append(from_mapping(CalibrationPoint, {**p, "iso": float(iso)} if isinstance(p, Mapping)
                                           else p, where))
            except ConfigError:
                raise
            except (ValueError, TypeError) as e:
                raise ConfigError(f"{where}: {e}") from None
    else:
        if not isinstance(f.bins, list):
            raise ConfigError(f"'bins' must be a list of calibrations, got {type(f.bins).__name__}")
        for i, p in enumerate(f.bins):
            where = f"bins[{i}]"
            try:
                points.append(from_mapping(CalibrationPoint, p, where))
            except TypeError as e:
                raise ConfigError(f"{where}: {e}") from None
    return points


@dataclass(frozen=True)
class PhysicsProfile:
    """A camera's physics noise calibration (bundled ELD cameras, ``rawsynth calibrate`` output, or a virtual
    camera). JSON layout: see ``docs/cameras.md``; :meth:`from_dict` refuses unknown keys and out-of-range
    values by name.

    Attributes:
        name: identifier (recorded in sample metadata).
        k_range: ``(K_min, K_max)``; samples draw ``log K ~ U(log K_min, log K_max)``.
        read_model: :class:`ReadModel`.
        sigma_tl, sigma_gauss, sigma_row: log-linear laws of the Tukey-lambda scale, the Gaussian read σ and the
            row σ (``sigma_tl`` is needed for ``tukey``, ``sigma_gauss`` for ``gaussian``).
        points: calibration points sorted by K (>= 1).
        lambda_choice: ``"random"`` (ELD/LED: λ uniformly among the points' values) or ``"nearest"`` (the point
            nearest in K; calibrated profiles).
        components: the enabled components (subset of :data:`COMPONENTS`).
        camera: a :class:`CameraInfo`, or ``None`` (noise only; the synthetic sensor is used).
        description, source: free text.
    """

    name: str
    k_range: tuple[float, float]
    points: tuple[CalibrationPoint, ...]
    sigma_row: LogLinearLaw | None = None
    sigma_tl: LogLinearLaw | None = None
    sigma_gauss: LogLinearLaw | None = None
    read_model: ReadModel = ReadModel.TUKEY
    lambda_choice: str = "random"
    components: tuple[str, ...] = COMPONENTS
    camera: CameraInfo | None = None
    description: str = ""
    source: str = ""

    def __post_init__(self):
        try:
            object.__setattr__(self, "read_model", ReadModel(self.read_model))
        except ValueError:
            raise ConfigError(f"profile {self.name!r}: read_model must be one of "
                              f"{[m.value for m in ReadModel]}, got {self.read_model!r}") from None
        lo, hi = (_finite(v, f"profile {self.name!r}: k_range") for v in self.k_range)
        if not 0 < lo <= hi:
            raise ConfigError(f"profile {self.name!r}: k_range must be (lo, hi) with 0 < lo <= hi, got {self.k_range}")
        object.__setattr__(self, "k_range", (lo, hi))
        if not self.points:
            raise ConfigError(f"profile {self.name!r}: needs at least one calibration point")
        object.__setattr__(self, "points", tuple(sorted(self.points, key=lambda p: p.K)))
        if self.lambda_choice not in ("random", "nearest"):
            raise ConfigError(f"profile {self.name!r}: lambda_choice must be 'random' or 'nearest', "
                              f"got {self.lambda_choice!r}")
        comps = tuple(self.components)
        bad = sorted(set(comps) - set(COMPONENTS))
        if bad:
            raise ConfigError(f"profile {self.name!r}: unknown component(s) {bad}; valid: {list(COMPONENTS)}")
        object.__setattr__(self, "components", tuple(c for c in COMPONENTS if c in comps))
        need = {"read": ("sigma_tl" if self.read_model is ReadModel.TUKEY else "sigma_gauss"), "row": "sigma_row"}
        for comp, law in need.items():
            if comp in self.components and getattr(self, law) is None:
                raise ConfigError(f"profile {self.name!r}: component {comp!r} needs the law {law!r}")

    @property
    def kind(self) -> str:
        return "physics"

    def sensor(self, default: SensorParams) -> SensorParams:
        """The camera's sensor encoding, or ``default`` when the profile names no camera."""
        return self.camera.sensor() if self.camera is not None else default

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict:
        """JSON-ready dict (calibrated points with an ISO go under ``iso``, the others under ``bins``)."""
        d: dict = {"name": self.name, "kind": "physics", "description": self.description, "source": self.source,
                   "read_model": self.read_model.value, "k_range": list(self.k_range),
                   "lambda_choice": self.lambda_choice, "components": list(self.components),
                   "laws": {n: getattr(self, n).to_dict() for n in ("sigma_tl", "sigma_gauss", "sigma_row")
                            if getattr(self, n) is not None}}
        if all(p.iso is not None for p in self.points):
            d["iso"] = {f"{p.iso:g}": {k: v for k, v in p.to_dict().items() if k != "iso"} for p in self.points}
        else:
            d["bins"] = [p.to_dict() for p in self.points]
        d["camera"] = self.camera.to_dict() if self.camera is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PhysicsProfile:
        """Inverse of :meth:`to_dict`; every fault is a :class:`ConfigError` naming the profile and the key."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"physics profile must be a mapping, got {type(d).__name__}")
        name = d.get("name")
        try:
            f = from_mapping(_ProfileFile, d, init=True, what="physics profile")
            if f.kind != "physics":
                raise ConfigError("kind must be 'physics'")
            from_mapping(_Laws, f.laws, "laws")  # unknown law names
            laws = {k: from_mapping(LogLinearLaw, v, f"laws.{k}") for k, v in f.laws.items()}
            points = _points(f)
            ks = [p.K for p in points]
            k_range = f.k_range or [min(ks), max(ks)]
            if not isinstance(k_range, (list, tuple)) or len(k_range) != 2:
                raise ConfigError(f"k_range must be [lo, hi], got {k_range!r}")
            camera = from_mapping(CameraInfo, f.camera, "camera") if f.camera is not None else None
            lambda_choice = f.lambda_choice if "lambda_choice" in d else "nearest" if f.iso is not None else "random"
            try:
                return cls(name=f.name, k_range=tuple(k_range), points=tuple(points), read_model=f.read_model,
                           lambda_choice=lambda_choice, components=tuple(f.components), camera=camera,
                           description=f.description, source=f.source, **laws)
            except TypeError as e:
                raise ConfigError(str(e)) from None
        except ConfigError as e:
            if name is None or e.message.startswith(f"profile {name!r}"):  # PhysicsProfile's own checks
                raise
            raise ConfigError(f"profile {name!r}: {e.message}", path=e.path, fix=e.fix) from None
