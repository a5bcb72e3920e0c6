"""A camera's physics-noise calibration (:class:`PhysicsProfile`: gain range, read/row-noise laws, calibration
points) and its JSON form. See ``docs/cameras.md``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

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


def _strict_keys(d, allowed: Sequence[str], required: Sequence[str], what: str) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"{what} must be a mapping, got {type(d).__name__}")
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise ConfigError(f"{what}: unknown key(s) {unknown}; valid keys are {sorted(allowed)}")
    missing = sorted(set(required) - set(d))
    if missing:
        raise ConfigError(f"{what}: missing key(s) {missing}")


@dataclass(frozen=True)
class LogLinearLaw:
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

    @classmethod
    def from_dict(cls, d: dict, what: str = "law") -> LogLinearLaw:
        _strict_keys(d, ("slope", "bias", "sigma"), ("slope", "bias"), what)
        try:
            return cls(**d)
        except ConfigError as e:
            raise ConfigError(f"{what}: {e}") from None


@dataclass(frozen=True)
class CalibrationPoint:
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
        d = dataclasses.asdict(self)
        d["color_bias"] = list(self.color_bias)
        return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class CameraInfo:
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

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["xyz2cam"] = [list(r) for r in self.xyz2cam] if self.xyz2cam is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CameraInfo:
        names = [f.name for f in dataclasses.fields(cls)]
        _strict_keys(d, names, ("make", "model"), "camera")
        return cls(**d)


_POINT_KEYS = ("K", "tukey_lambda", "color_bias", "sigma_tl", "sigma_gauss", "sigma_row")


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
                   "laws": {n: dataclasses.asdict(getattr(self, n)) for n in ("sigma_tl", "sigma_gauss", "sigma_row")
                            if getattr(self, n) is not None}}
        if all(p.iso is not None for p in self.points):
            d["iso"] = {f"{p.iso:g}": {k: v for k, v in p.to_dict().items() if k != "iso"} for p in self.points}
        else:
            d["bins"] = [p.to_dict() for p in self.points]
        d["camera"] = self.camera.to_dict() if self.camera is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PhysicsProfile:
        allowed = ("name", "kind", "description", "source", "read_model", "k_range", "lambda_choice",
                   "components", "laws", "iso", "bins", "camera")
        _strict_keys(d, allowed, ("name", "laws"), "physics profile")
        name = d["name"]
        if d.get("kind", "physics") != "physics":
            raise ConfigError(f"physics profile {name!r}: kind must be 'physics'")
        laws = d["laws"]
        _strict_keys(laws, ("sigma_tl", "sigma_gauss", "sigma_row"), (), f"profile {name!r}: laws")
        laws = {k: LogLinearLaw.from_dict(v, f"profile {name!r}: laws.{k}") for k, v in laws.items()}
        if ("iso" in d) == ("bins" in d):
            raise ConfigError(f"physics profile {name!r}: give exactly one of 'iso' (calibrated points by ISO) "
                              "or 'bins' (points over the K range)")
        points = []
        if "iso" in d:
            if not isinstance(d["iso"], dict) or not d["iso"]:
                raise ConfigError(f"profile {name!r}: 'iso' must map ISO values to calibrations")
            for iso, p in d["iso"].items():
                where = f"profile {name!r}: iso.{iso}"
                _strict_keys(p, _POINT_KEYS, ("K", "tukey_lambda", "color_bias"), where)
                try:
                    points.append(CalibrationPoint(iso=float(iso), **p))
                except (ConfigError, ValueError, TypeError) as e:
                    raise ConfigError(f"{where}: {e}") from None
        else:
            for i, p in enumerate(d["bins"] if isinstance(d["bins"], list) else [None]):
                where = f"profile {name!r}: bins[{i}]"
                _strict_keys(p, _POINT_KEYS, ("K", "tukey_lambda", "color_bias"), where)
                try:
                    points.append(CalibrationPoint(**p))
                except (ConfigError, TypeError) as e:
                    raise ConfigError(f"{where}: {e}") from None
        ks = [p.K for p in points]
        k_range = d.get("k_range") or [min(ks), max(ks)]
        if not isinstance(k_range, (list, tuple)) or len(k_range) != 2:
            raise ConfigError(f"profile {name!r}: k_range must be [lo, hi], got {k_range!r}")
        camera = d.get("camera")
        try:
            return cls(name=name, k_range=tuple(k_range), points=tuple(points), read_model=d.get("read_model", "tukey"),
                       lambda_choice=d.get("lambda_choice", "nearest" if "iso" in d else "random"),
                       components=tuple(d.get("components", COMPONENTS)),
                       camera=CameraInfo.from_dict(camera) if camera is not None else None,
                       description=d.get("description", ""), source=d.get("source", ""), **laws)
        except TypeError as e:
            raise ConfigError(f"physics profile {name!r}: {e}") from None
