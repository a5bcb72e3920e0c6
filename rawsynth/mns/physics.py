"""Physics-based sensor noise (ELD, Wei et al. 2020; LED, Jin et al. 2023) beside paper Eq. 11: one image's
:class:`PhysicsParams`, drawn from a :class:`PhysicsProfile` and applied in torch. See ``docs/cameras.md``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import per_sample
from .._config import ConfigMixin, from_mapping
from ..errors import ConfigError, ShapeError
from .cfa import Pattern, as_patterns
from .physics_profile import (COMPONENTS, CalibrationPoint, CameraInfo, LogLinearLaw, PhysicsProfile, ReadModel,
                              _finite)
from .sensor import SensorParams

__all__ = ["ReadModel", "COMPONENTS", "LogLinearLaw", "CalibrationPoint", "CameraInfo", "PhysicsProfile",
           "PhysicsParams", "sample_physics_params", "apply_physics_noise", "tukey_lambda_ppf"]


@dataclass(frozen=True)
class PhysicsParams(ConfigMixin):
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
        """:meth:`ConfigMixin.to_dict` plus ``"model": "physics"`` (tells it from Eq. 11's ``NoiseParams``)."""
        return {**super().to_dict(), "model": "physics"}

    @classmethod
    def from_dict(cls, d: dict, where: str | None = None) -> PhysicsParams:
        """Inverse of :meth:`to_dict`: unknown and missing keys raise :class:`ConfigError` naming them."""
        if isinstance(d, Mapping):
            d = dict(d)
            if d.pop("model", "physics") != "physics":
                raise ConfigError("PhysicsParams.from_dict: model must be 'physics'")
        return from_mapping(cls, d, where, what="PhysicsParams")


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
                        sensor: SensorParams | Sequence[SensorParams],
                        pattern: Pattern | str | Sequence[Pattern | str],
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
