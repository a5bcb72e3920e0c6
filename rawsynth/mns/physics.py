"""Physics-based sensor noise (ELD, Wei et al. CVPR 2020 / TPAMI 2021; LED, Jin et al. ICCV 2023), beside the
heteroscedastic Gaussian of paper Eq. 11 (:mod:`rawsynth.mns.noise`).

In digital numbers (DN) above the black level, with ``s = x·(white − black)`` the clean signal:

``y = K·Poisson(s / K)  +  σ_read·R  +  σ_row·r_row  +  b_c``, then ``round(y)``

* shot noise: Poisson in electrons, ``K`` the overall system gain (DN per electron);
* read noise ``R``: standard normal, or Tukey lambda with shape ``λ`` (scipy's ``tukeylambda(λ)``, scale
  ``σ_TL``: ``Q(u) = (u^λ − (1 − u)^λ)/λ``, ``log(u/(1 − u))`` at ``λ = 0``);
* row noise: one ``N(0, σ_row²)`` offset per mosaic row (banding);
* colour bias ``b_c``: a constant per CFA colour (R, G1, G2, B), the black-level error;
* quantisation: rounding to whole DN (the float output then already lies on the DN grid).

Each component is switchable (:attr:`PhysicsParams.components`). A :class:`PhysicsProfile` holds a camera's
calibration: the K range, log-linear laws ``log σ = a·log K + b + N(0, s²)`` for the read and row scales, and
calibration points (K, Tukey λ, colour bias[, ISO]). :func:`sample_physics_params` draws one image's
:class:`PhysicsParams` from it; :func:`apply_physics_noise` is the pure, batched torch noise.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch

from .._checks import per_sample
from ..errors import ConfigError, ShapeError
from .cfa import Pattern, as_patterns
from .sensor import SensorParams

__all__ = ["ReadModel", "COMPONENTS", "LogLinearLaw", "CalibrationPoint", "CameraInfo", "PhysicsProfile",
           "PhysicsParams", "sample_physics_params", "apply_physics_noise", "tukey_lambda_ppf"]

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


@dataclass(frozen=True)
class PhysicsParams:
    """Physics noise of one RAW image (everything :func:`apply_physics_noise` needs besides the generator).

    Attributes:
        K: system gain, DN per electron.
        read_model: ``"gaussian"`` or ``"tukey"``.
        sigma_read: read-noise scale in DN (Gaussian σ or Tukey-lambda scale σ_TL).
        tukey_lambda: Tukey shape (ignored for Gaussian read noise).
        sigma_row: row-noise σ in DN.
        color_bias: 4 DN offsets, R, G1, G2, B.
        components: the enabled components.
        iso: the ISO this corresponds to (calibrated profiles), or ``None``.
        camera: the profile's name.
    """

    K: float
    read_model: str
    sigma_read: float
    tukey_lambda: float
    sigma_row: float
    color_bias: tuple[float, float, float, float]
    components: tuple[str, ...] = COMPONENTS
    iso: float | None = None
    camera: str = ""

    def __post_init__(self):
        for name in ("K", "sigma_read", "tukey_lambda", "sigma_row"):
            object.__setattr__(self, name, _finite(getattr(self, name), f"PhysicsParams.{name}"))
        if self.K <= 0 or self.sigma_read < 0 or self.sigma_row < 0:
            raise ConfigError(f"PhysicsParams needs K > 0 and sigma_read, sigma_row >= 0, got K={self.K}, "
                              f"sigma_read={self.sigma_read}, sigma_row={self.sigma_row}")
        object.__setattr__(self, "read_model", ReadModel(self.read_model).value)
        object.__setattr__(self, "color_bias", tuple(_finite(v, "color_bias") for v in self.color_bias))
        if len(self.color_bias) != 4:
            raise ConfigError("PhysicsParams.color_bias needs 4 values (R, G1, G2, B)")
        bad = sorted(set(self.components) - set(COMPONENTS))
        if bad:
            raise ConfigError(f"PhysicsParams: unknown component(s) {bad}")
        object.__setattr__(self, "components", tuple(c for c in COMPONENTS if c in self.components))
        if self.iso is not None:
            object.__setattr__(self, "iso", _finite(self.iso, "iso"))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["color_bias"] = list(self.color_bias)
        d["components"] = list(self.components)
        d["model"] = "physics"
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PhysicsParams:
        d = dict(d)
        if d.pop("model", "physics") != "physics":
            raise ConfigError("PhysicsParams.from_dict: model must be 'physics'")
        _strict_keys(d, [f.name for f in dataclasses.fields(cls)], ("K", "read_model", "sigma_read",
                                                                     "tukey_lambda", "sigma_row", "color_bias"),
                     "PhysicsParams")
        d["color_bias"] = tuple(d["color_bias"])
        d["components"] = tuple(d.get("components", COMPONENTS))
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _iso_at(points: Sequence[CalibrationPoint], k: float) -> float | None:
    """ISO at gain ``k``, interpolated linearly in log–log between calibrated points (``None`` without ISOs)."""
    pts = [(math.log(p.K), math.log(p.iso)) for p in points if p.iso is not None]
    if len(pts) != len(points):
        return None
    if len(pts) == 1:
        return points[0].iso * k / points[0].K  # ISO ∝ gain
    lk = math.log(k)
    xs, ys = zip(*pts)
    i = int(np.clip(np.searchsorted(xs, lk) - 1, 0, len(xs) - 2))
    t = (lk - xs[i]) / (xs[i + 1] - xs[i]) if xs[i + 1] != xs[i] else 0.0
    return float(math.exp(ys[i] + t * (ys[i + 1] - ys[i])))


def sample_physics_params(rng: np.random.Generator, profile: PhysicsProfile) -> PhysicsParams:
    """Draw one image's :class:`PhysicsParams` from ``profile``.

    Draw order (fixed; every draw is made whatever the enabled components): ``log K ~ U(log K_min, log K_max)``,
    ``z_read ~ N(0, 1)``, ``z_row ~ N(0, 1)``, ``u_λ ~ U(0, 1)``. Then ``σ_read = exp(a·log K + b + s·z_read)``
    from the read model's law, ``σ_row`` likewise; ``λ`` is the point ``⌊u_λ·n⌋`` (``random``) or the point
    nearest in K (``nearest``); the colour bias is that of the point nearest in K (for ELD's equal-width K bins,
    whose points sit at the bin centres, the bin holding K, as LED indexes them).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if not isinstance(profile, PhysicsProfile):
        raise ConfigError(f"profile must be a PhysicsProfile, got {type(profile).__name__}")
    lo, hi = profile.k_range
    k = min(max(float(math.exp(rng.uniform(math.log(lo), math.log(hi)))), lo), hi)
    z_read, z_row, u_lam = float(rng.normal()), float(rng.normal()), float(rng.uniform())
    pts = profile.points
    law = profile.sigma_tl if profile.read_model is ReadModel.TUKEY else profile.sigma_gauss
    sigma_read = law.draw(k, z_read) if law is not None else 0.0
    sigma_row = profile.sigma_row.draw(k, z_row) if profile.sigma_row is not None else 0.0
    nearest = pts[int(np.argmin([abs(p.K - k) for p in pts]))]
    if profile.lambda_choice == "random":
        lam = pts[min(int(u_lam * len(pts)), len(pts) - 1)].tukey_lambda
    else:
        lam = nearest.tukey_lambda
    return PhysicsParams(k, profile.read_model.value, sigma_read, lam, sigma_row, nearest.color_bias,
                         profile.components, _iso_at(pts, k), profile.name)


def tukey_lambda_ppf(u: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Tukey-lambda quantile function (scipy's ``tukeylambda.ppf``): ``(u^λ − (1 − u)^λ)/λ``, and
    ``log(u/(1 − u))`` where ``|λ| < 1e-6``. ``u`` in ``(0, 1)``; ``lam`` broadcasts against it."""
    small = lam.abs() < 1e-6
    safe = torch.where(small, torch.ones_like(lam), lam)
    general = (u.pow(safe) - (1 - u).pow(safe)) / safe
    return torch.where(small, torch.log(u) - torch.log1p(-u), general)


def _bias_map(color_bias: torch.Tensor, patterns: Sequence[Pattern], h: int, w: int) -> torch.Tensor:
    """``(B, 1, H, W)`` colour-bias field: each pixel gets its CFA colour's value (R, G1, G2, B order)."""
    b = color_bias.shape[0]
    tile = torch.zeros(b, 1, 2, 2, dtype=color_bias.dtype, device=color_bias.device)
    for i, p in enumerate(patterns):
        for c, (r, col) in enumerate(p.offsets):
            tile[i, 0, r, col] = color_bias[i, c]
    return tile.repeat(1, 1, h // 2, w // 2)


def apply_physics_noise(x: torch.Tensor, params: PhysicsParams | Sequence[PhysicsParams],
                        sensor: SensorParams | Sequence[SensorParams], pattern,
                        generator: torch.Generator) -> torch.Tensor:
    """Add physics noise to a clean normalised mosaic (pure given the generator's state).

    Args:
        x: ``(B, 1, H, W)`` float clean normalised RAW mosaic (``H``, ``W`` even), on any device.
        params: one :class:`PhysicsParams` for the batch or ``B`` of them.
        sensor: one :class:`SensorParams` or ``B``: ``white − black`` converts to DN (the profile's units).
        pattern: the Bayer pattern(s) of ``x`` (places the colour bias).
        generator: ``torch.Generator`` on ``x``'s device, seeded from (seed, sample key). Draw order: Poisson
            (shot), then the read field (``randn`` or ``rand``), then one ``randn`` per row; a disabled
            component draws nothing.

    Returns:
        Noisy normalised mosaic, same shape and dtype (not clipped; on the DN grid when ``quant`` is enabled).
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 1 or not x.is_floating_point():
        raise ShapeError(f"x must be a float (B, 1, H, W) mosaic, got {getattr(x, 'shape', type(x))}")
    if x.shape[2] % 2 or x.shape[3] % 2:
        raise ShapeError(f"x must have even height and width, got {tuple(x.shape[2:])}")
    if not isinstance(generator, torch.Generator):
        raise TypeError("apply_physics_noise needs an explicit torch.Generator, seeded per sample")
    b, _, h, w = x.shape
    ps = per_sample(list(params) if isinstance(params, (list, tuple)) else params, b, "physics params")
    if not all(isinstance(p, PhysicsParams) for p in ps):
        raise ShapeError("params must be PhysicsParams or a sequence of them")
    ss = per_sample(list(sensor) if isinstance(sensor, (list, tuple)) else sensor, b, "sensor")
    patterns = as_patterns(pattern, b)
    dt, dev = x.dtype, x.device

    def col(values):
        return torch.tensor(values, dtype=dt, device=dev).view(-1, 1, 1, 1)

    scale = col([s.range for s in ss])
    y = x * scale
    if any("shot" in p.components for p in ps):
        k = col([p.K for p in ps])
        on = col([1.0 if "shot" in p.components else 0.0 for p in ps])
        shot = torch.poisson((y / k).clamp_min(0.0), generator=generator) * k
        y = torch.where(on > 0, shot, y)
    if any("read" in p.components for p in ps):
        sig = col([p.sigma_read if "read" in p.components else 0.0 for p in ps])
        if any(p.read_model == ReadModel.TUKEY.value for p in ps):
            eps = 1e-10 if dt == torch.float64 else 1e-7
            u = torch.rand(x.shape, generator=generator, device=dev, dtype=dt).clamp_(eps, 1 - eps)
            lam = col([p.tukey_lambda for p in ps])
            tl = tukey_lambda_ppf(u, lam)
            gauss = col([1.0 if p.read_model == ReadModel.GAUSSIAN.value else 0.0 for p in ps])
            if bool(gauss.any()):  # a mixed batch: Gaussian samples use the normal quantile of the same u
                tl = torch.where(gauss > 0, torch.special.ndtri(u), tl)
            y = y + sig * tl
        else:
            y = y + sig * torch.randn(x.shape, generator=generator, device=dev, dtype=dt)
    if any("row" in p.components for p in ps):
        sig = col([p.sigma_row if "row" in p.components else 0.0 for p in ps])
        y = y + sig * torch.randn((b, 1, h, 1), generator=generator, device=dev, dtype=dt)
    if any("color_bias" in p.components for p in ps):
        cb = torch.tensor([p.color_bias if "color_bias" in p.components else (0.0,) * 4 for p in ps],
                          dtype=dt, device=dev)
        y = y + _bias_map(cb, patterns, h, w)
    quant = col([1.0 if "quant" in p.components else 0.0 for p in ps])
    if bool(quant.any()):
        y = torch.where(quant > 0, torch.round(y), y)
    return y / scale
