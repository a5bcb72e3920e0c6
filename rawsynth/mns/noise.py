"""Sensor noise of paper Eq. 11, ``y ~ N(x, λ_shot·x + λ_read)`` (normalised units), its ISO-tied parameters,
noise profiles and an estimator. See ``docs/isp.md``."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .._checks import per_sample
from .._config import ConfigMixin
from ..errors import ConfigError, InputError, ShapeError
from .physics import PhysicsProfile

__all__ = ["NoiseModel", "NoiseParams", "NoiseProfile", "NoiseEstimate", "load_noise_profile",
           "list_noise_profiles", "sample_noise_params", "noise_params_at_iso", "add_noise",
           "estimate_noise_level"]


class NoiseModel(str, Enum):
    """How a :class:`NoiseProfile` maps ISO to ``(λ_shot, λ_read)``.

    * ``LOGLINEAR``: ``λ_shot = shot_per_iso · ISO``; ``log λ_read = a·log λ_shot + b + N(0, σ)``
      (Brooks et al.'s law, the default).
    * ``TABLE``: calibrated ``(ISO, λ_shot, λ_read)`` points (e.g. from ELD/LED-style calibration or DNG
      ``NoiseProfile`` tags of several shots), interpolated linearly in log–log space (and extrapolated
      along the end segments); ``λ_read`` is jittered by ``exp(N(0, σ))``.
    """

    LOGLINEAR = "loglinear"
    TABLE = "table"


@dataclass(frozen=True)
class NoiseParams(ConfigMixin):
    """Noise of one RAW image: its ISO and the Eq. 11 variances (normalised units)."""

    iso: float
    lambda_shot: float
    lambda_read: float

    def __post_init__(self):
        for name in ("iso", "lambda_shot", "lambda_read"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"NoiseParams.{name} must be finite and >= 0, got {v}")
            object.__setattr__(self, name, v)



@dataclass(frozen=True)
class NoiseProfile(ConfigMixin):
    """A camera's (or the default) noise law: which ISOs to draw and how ISO sets ``(λ_shot, λ_read)``.

    Attributes:
        name: identifier (recorded in sample metadata).
        kind: a :class:`NoiseModel`.
        description: free text (source of the calibration).
        iso_range: ISOs are drawn log-uniformly in ``[lo, hi]``.
        shot_per_iso, read_log_slope, read_log_intercept: ``LOGLINEAR`` coefficients.
        read_log_sigma: standard deviation of the log-normal jitter of ``λ_read``.
        points: ``TABLE`` calibration, ``((iso, λ_shot, λ_read), ...)`` with increasing ISO.
    """

    name: str
    kind: NoiseModel = NoiseModel.LOGLINEAR
    description: str = ""
    iso_range: tuple[float, float] = (100.0, 12000.0)
    shot_per_iso: float = 1e-6
    read_log_slope: float = 2.18
    read_log_intercept: float = 1.20
    read_log_sigma: float = 0.26
    points: tuple[tuple[float, float, float], ...] = ()

    def __post_init__(self):
        try:
            object.__setattr__(self, "kind", NoiseModel(self.kind))
        except ValueError:
            raise ConfigError(f"NoiseProfile {self.name!r}: kind must be one of "
                              f"{[k.value for k in NoiseModel]}, got {self.kind!r}") from None
        pts = tuple(tuple(float(v) for v in p) for p in self.points)
        if any(len(p) != 3 or min(p) <= 0 for p in pts):
            raise ConfigError(f"NoiseProfile {self.name!r}: points must be (iso, lambda_shot, lambda_read) > 0")
        object.__setattr__(self, "points", pts)
        if self.kind is NoiseModel.TABLE:
            if len(pts) < 1 or any(a[0] >= b[0] for a, b in zip(pts, pts[1:])):
                raise ConfigError(f"NoiseProfile {self.name!r}: a table needs >= 1 point with strictly "
                                  "increasing ISO")
        elif self.shot_per_iso <= 0:
            raise ConfigError(f"NoiseProfile {self.name!r}: shot_per_iso must be > 0")
        lo, hi = (float(v) for v in self.iso_range)
        if not (0 < lo <= hi):
            raise ConfigError(f"NoiseProfile {self.name!r}: iso_range must be (lo, hi) with 0 < lo <= hi")
        object.__setattr__(self, "iso_range", (lo, hi))
        if self.read_log_sigma < 0:
            raise ConfigError(f"NoiseProfile {self.name!r}: read_log_sigma must be >= 0")


    def mean_params(self, iso: float) -> tuple[float, float]:
        """``(λ_shot, λ_read)`` at ``iso`` without the read jitter (the law's centre)."""
        if iso <= 0:
            raise ConfigError(f"ISO must be > 0, got {iso}")
        if self.kind is NoiseModel.LOGLINEAR:
            shot = self.shot_per_iso * iso
            return shot, math.exp(self.read_log_slope * math.log(shot) + self.read_log_intercept)
        if self.kind is NoiseModel.TABLE:
            pts = np.log(np.asarray(self.points))
            if len(pts) == 1:
                return float(np.exp(pts[0, 1]) * iso / self.points[0][0]), float(np.exp(pts[0, 2]))
            li = math.log(iso)
            k = int(np.clip(np.searchsorted(pts[:, 0], li) - 1, 0, len(pts) - 2))
            t = (li - pts[k, 0]) / (pts[k + 1, 0] - pts[k, 0])
            shot, read = (1 - t) * pts[k, 1:] + t * pts[k + 1, 1:]
            return float(math.exp(shot)), float(math.exp(read))
        raise ConfigError(f"unknown noise model {self.kind!r}")


def list_noise_profiles() -> list[str]:
    """Names of the profiles bundled with rawsynth."""
    return sorted(p.name[:-5] for p in resources.files("rawsynth.profiles").iterdir() if p.name.endswith(".json"))


def load_noise_profile(name_or_path: str | Path = "default") -> NoiseProfile | PhysicsProfile:
    """Load a bundled profile by name (see :func:`list_noise_profiles`) or a JSON file by path.

    A file whose ``kind`` is ``"physics"`` (the bundled ELD cameras, ``rawsynth calibrate`` output) gives a
    :class:`~rawsynth.mns.physics.PhysicsProfile`; any other a :class:`NoiseProfile` (Eq. 11)."""
    s = str(name_or_path)
    if s in list_noise_profiles():
        text = resources.files("rawsynth.profiles").joinpath(s + ".json").read_text()
        src = f"<bundled profile {s}>"
    else:
        path = Path(s)
        if not path.is_file():
            raise InputError(s, "no such noise profile",
                             hint=f"give a JSON file or one of the bundled profiles {list_noise_profiles()}")
        src, text = s, path.read_text()
    try:
        d = json.loads(text)
        if isinstance(d, dict) and d.get("kind") == "physics":
            return PhysicsProfile.from_dict(d)
        return NoiseProfile.from_dict(d)
    except json.JSONDecodeError as e:
        raise InputError(src, "invalid JSON", str(e)) from None
    except ConfigError as e:
        raise InputError(src, "invalid noise profile", str(e)) from None


def noise_params_at_iso(iso: float, profile: NoiseProfile | None = None) -> NoiseParams:
    """Deterministic :class:`NoiseParams` at ``iso`` (the law's centre, no jitter) — for benchmarks."""
    profile = profile or load_noise_profile("default")
    shot, read = profile.mean_params(iso)
    return NoiseParams(iso, shot, read)


def sample_noise_params(rng: np.random.Generator, profile: NoiseProfile | None = None,
                        iso: float | None = None) -> NoiseParams:
    """Draw one image's noise: ISO log-uniform over the profile's range (unless given), then
    ``λ_shot`` and ``λ_read`` from the profile's law.

    Draw order (fixed): ``log ISO ~ U`` (skipped when ``iso`` is given), then the read jitter ``N(0, 1)``
    (always drawn, also when ``read_log_sigma`` is 0).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    profile = profile or load_noise_profile("default")
    if iso is None:
        lo, hi = profile.iso_range
        iso = min(max(float(math.exp(rng.uniform(math.log(lo), math.log(hi)))), lo), hi)
    shot, read = profile.mean_params(iso)
    read *= math.exp(profile.read_log_sigma * rng.normal())
    return NoiseParams(float(iso), shot, read)


def _variance_coeffs(params, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b = x.shape[0]
    if isinstance(params, tuple) and len(params) == 2 and all(isinstance(t, torch.Tensor) for t in params):
        shot, read = (t.to(x).reshape(-1, 1, 1, 1) for t in params)
        if shot.shape[0] not in (1, b) or read.shape[0] not in (1, b):
            raise ShapeError(f"(lambda_shot, lambda_read) tensors must have 1 or {b} entries")
        return shot, read
    ps = per_sample(list(params) if isinstance(params, (list, tuple)) else params, b, "noise params")
    if not all(isinstance(p, NoiseParams) for p in ps):
        raise ShapeError("params must be NoiseParams, a sequence of them, or a (lambda_shot, lambda_read) tensor pair")
    shot = torch.tensor([p.lambda_shot for p in ps], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
    read = torch.tensor([p.lambda_read for p in ps], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
    return shot, read


def add_noise(x: torch.Tensor, params: NoiseParams | Sequence[NoiseParams] | tuple[torch.Tensor, torch.Tensor],
              generator: torch.Generator) -> torch.Tensor:
    """Eq. 11: draw ``y ~ N(x, λ_shot·x + λ_read)`` per pixel.

    Args:
        x: ``(B, C, H, W)`` float clean normalised RAW (a ``(B, 1, H, W)`` mosaic or packed planes).
        params: one :class:`NoiseParams`, ``B`` of them, or a ``(λ_shot, λ_read)`` pair of ``(B,)`` tensors
            (differentiable w.r.t. ``x`` and these).
        generator: a ``torch.Generator`` on ``x``'s device, seeded from (seed, sample key). Required: the
            library never touches the global RNG. The same generator state gives the same bytes on the
            same device (CPU and CUDA streams differ).

    Returns:
        Noisy ``x``, same shape/dtype, not clipped (clip with :func:`~rawsynth.mns.quantize`).
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise ShapeError(f"x must be a float (B, C, H, W) tensor, got {getattr(x, 'shape', type(x))}")
    if not isinstance(generator, torch.Generator):
        raise TypeError("add_noise needs an explicit torch.Generator (generator=...), seeded per sample")
    shot, read = _variance_coeffs(params, x)
    std = (shot * x + read).clamp_min(0.0).sqrt()
    n = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + std * n


@dataclass(frozen=True)
class NoiseEstimate:
    """Result of :func:`estimate_noise_level`: the fit and the per-patch statistics it used."""

    lambda_shot: float
    lambda_read: float
    means: np.ndarray
    variances: np.ndarray


def _wls(m: np.ndarray, v: np.ndarray, w: np.ndarray, cols: list[int]) -> np.ndarray:
    a = np.stack([m, np.ones_like(m)], axis=1)[:, cols]
    sw = np.sqrt(w)[:, None]
    sol, *_ = np.linalg.lstsq(a * sw, v * sw[:, 0], rcond=None)
    out = np.zeros(2)
    out[cols] = sol
    return out


def estimate_noise_level(patches: torch.Tensor | np.ndarray | Sequence, iterations: int = 5) -> NoiseEstimate:
    """Fit ``(λ_shot, λ_read)`` of Eq. 11 from flat patches of a noisy normalised RAW.

    Each patch must be one CFA colour of a uniformly lit region (e.g. one packed plane of a grey-card
    crop). The patch mean ``μ`` and unbiased variance ``s²`` satisfy ``E[s²] = λ_shot·μ + λ_read``; the
    line is fitted by iteratively reweighted least squares with weights ``(n − 1) / (2·var²)`` (the
    variance of a Gaussian sample variance), constrained to non-negative coefficients.

    Args:
        patches: a ``(N, ...)`` tensor/array of equally sized patches, or a sequence of patches of any
            sizes (each with >= 2 pixels). At least two distinct levels are needed to separate shot from read.
        iterations: reweighting rounds.
    """
    if isinstance(patches, (torch.Tensor, np.ndarray)):
        if isinstance(patches, torch.Tensor):
            patches = patches.detach().cpu().double().numpy()
        arr = np.asarray(patches, dtype=np.float64)
        if arr.ndim < 2:
            raise ShapeError(f"patches must be (N, ...) with N patches, got shape {arr.shape}")
        flat = [p.ravel() for p in arr]
    else:
        flat = [np.asarray(p.detach().cpu() if isinstance(p, torch.Tensor) else p, dtype=np.float64).ravel()
                for p in patches]
    if len(flat) < 2 or any(p.size < 2 for p in flat):
        raise ShapeError("estimate_noise_level needs at least 2 patches of at least 2 pixels each")
    means = np.array([p.mean() for p in flat])
    variances = np.array([p.var(ddof=1) for p in flat])
    n = np.array([p.size for p in flat], dtype=np.float64)
    if np.ptp(means) <= 0:
        raise ShapeError("all patches have the same mean; shot and read noise cannot be separated")
    coef = np.array([0.0, max(variances.mean(), 1e-12)])
    for _ in range(max(iterations, 1)):
        pred = np.maximum(coef[0] * means + coef[1], 1e-12)
        w = (n - 1) / (2 * pred**2)
        coef = _wls(means, variances, w, [0, 1])
        if coef[0] < 0:
            coef = _wls(means, variances, w, [1])
        elif coef[1] < 0:
            coef = _wls(means, variances, w, [0])
    return NoiseEstimate(float(coef[0]), float(coef[1]), means, variances)
