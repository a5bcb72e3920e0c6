"""ISP parameters (colour matrices, white-balance gains; Brooks et al. 2019 defaults), their sampler and their
tensor form. See ``docs/isp.md``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._config import ConfigMixin
from ..errors import ConfigError, ShapeError

__all__ = [
    "RGB2XYZ",
    "XYZ2CAMS",
    "ISPParams",
    "ISPConfig",
    "ISPBatch",
    "sample_isp_params",
    "fixed_isp_params",
    "rgb2cam_from_xyz2cam",
]

#: Linear sRGB (D65) → CIE XYZ.
RGB2XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)

#: XYZ → camera matrices of the four cameras Brooks et al. mix (Canon 5D Mark IV, Canon EOS-1Ds, Nikon D700,
#: Sony A7 II as used in their release).
XYZ2CAMS = (
    ((1.0234, -0.2969, -0.2266), (-0.5625, 1.6328, -0.0469), (-0.0703, 0.2188, 0.6406)),
    ((0.4913, -0.0541, -0.0202), (-0.613, 1.3513, 0.2906), (-0.1564, 0.2151, 0.7183)),
    ((0.838, -0.263, -0.0639), (-0.2887, 1.0725, 0.2496), (-0.0627, 0.1427, 0.5438)),
    ((0.6596, -0.2079, -0.0562), (-0.4782, 1.3016, 0.1933), (-0.097, 0.1581, 0.5181)),
)

Matrix3 = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]


def _as_matrix3(m, name: str) -> Matrix3:
    a = np.asarray(m, dtype=np.float64)
    if a.shape != (3, 3):
        raise ConfigError(f"{name} must be a 3x3 matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ConfigError(f"{name} has non-finite entries: {a.tolist()}")
    return tuple(tuple(float(v) for v in row) for row in a)  # type: ignore[return-value]


def rgb2cam_from_xyz2cam(xyz2cam: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """``rgb2cam = xyz2cam @ RGB2XYZ`` with each row normalised to sum to 1 (white maps to white).

    Args:
        xyz2cam: ``(3, 3)`` XYZ → camera matrix.

    Returns:
        ``(3, 3)`` float64 linear-sRGB → camera matrix.
    """
    m = np.asarray(xyz2cam, dtype=np.float64) @ np.asarray(RGB2XYZ)
    s = m.sum(axis=1, keepdims=True)
    if np.any(np.abs(s) < 1e-12):
        raise ConfigError(f"xyz2cam maps white to a zero row and cannot be normalised: {np.asarray(xyz2cam).tolist()}")
    return m / s


@dataclass(frozen=True)
class ISPParams(ConfigMixin):
    """Per-image ISP parameters shared by IPTP (:func:`~rawsynth.isp.unprocess`) and PTP
    (:func:`~rawsynth.isp.process`).

    Attributes:
        rgb2cam: ``3×3`` linear sRGB → camera RGB (rows sum to 1); IPTP applies it (inverse CCM, Eq. 9).
        cam2rgb: ``3×3`` camera RGB → linear sRGB, the inverse of ``rgb2cam``; PTP applies it (CCM, Eq. 9).
        rgb_gain: overall brightness gain (> 0); IPTP divides by it, PTP multiplies by it.
        red_gain: white-balance gain of the red channel (> 0), Eq. 8's ``M_gain`` for R.
        blue_gain: white-balance gain of the blue channel (> 0), Eq. 8's ``M_gain`` for B.

    Instances are immutable and round-trip through JSON exactly (``from_json(p.to_json()) == p``).
    """

    rgb2cam: Matrix3
    cam2rgb: Matrix3
    rgb_gain: float
    red_gain: float
    blue_gain: float

    def __post_init__(self):
        object.__setattr__(self, "rgb2cam", _as_matrix3(self.rgb2cam, "rgb2cam"))
        object.__setattr__(self, "cam2rgb", _as_matrix3(self.cam2rgb, "cam2rgb"))
        for name in ("rgb_gain", "red_gain", "blue_gain"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise ConfigError(f"ISPParams.{name} must be a number, got {v!r}")
            v = float(v)
            if not math.isfinite(v) or v <= 0:
                raise ConfigError(f"ISPParams.{name} must be finite and > 0, got {v}")
            object.__setattr__(self, name, v)
        prod = np.asarray(self.rgb2cam) @ np.asarray(self.cam2rgb)
        if not np.allclose(prod, np.eye(3), atol=1e-6):
            raise ConfigError("ISPParams.cam2rgb must be the inverse of rgb2cam; build with "
                              "ISPParams.from_rgb2cam(...) to compute it")

    @classmethod
    def from_rgb2cam(cls, rgb2cam, rgb_gain: float, red_gain: float, blue_gain: float) -> ISPParams:
        """Build from ``rgb2cam`` alone; ``cam2rgb`` is its inverse."""
        m = np.asarray(_as_matrix3(rgb2cam, "rgb2cam"))
        if abs(np.linalg.det(m)) < 1e-9:
            raise ConfigError(f"rgb2cam is singular: {m.tolist()}")
        return cls(m, np.linalg.inv(m), rgb_gain, red_gain, blue_gain)

    @property
    def wb_gains(self) -> tuple[float, float, float]:
        """The per-channel gains PTP multiplies camera RGB by: ``rgb_gain · (red_gain, 1, blue_gain)``."""
        return (self.rgb_gain * self.red_gain, self.rgb_gain, self.rgb_gain * self.blue_gain)



@dataclass(frozen=True)
class ISPConfig(ConfigMixin):
    """Distributions :func:`sample_isp_params` draws from (defaults: Brooks et al. 2019).

    Attributes:
        xyz2cam: XYZ → camera matrices mixed by a random convex combination.
        ccm_weight_range: the mixing weights are ``U(lo, hi)`` each, then normalised by their sum.
        rgb_gain_inv_mean, rgb_gain_inv_std: ``rgb_gain = 1 / N(mean, std)``; draws below
            ``rgb_gain_inv_min`` are redrawn (never happens with the defaults).
        red_gain_range, blue_gain_range: ``U(lo, hi)`` white-balance gains.
    """

    xyz2cam: tuple[Matrix3, ...] = XYZ2CAMS
    ccm_weight_range: tuple[float, float] = (1e-8, 1e8)
    rgb_gain_inv_mean: float = 0.8
    rgb_gain_inv_std: float = 0.1
    rgb_gain_inv_min: float = 0.05
    red_gain_range: tuple[float, float] = (1.9, 2.4)
    blue_gain_range: tuple[float, float] = (1.5, 1.9)

    def __post_init__(self):
        mats = tuple(_as_matrix3(m, f"xyz2cam[{i}]") for i, m in enumerate(self.xyz2cam))
        if not mats:
            raise ConfigError("ISPConfig.xyz2cam needs at least one matrix")
        object.__setattr__(self, "xyz2cam", mats)
        for name in ("ccm_weight_range", "red_gain_range", "blue_gain_range"):
            r = tuple(float(v) for v in getattr(self, name))
            if len(r) != 2 or not (0 < r[0] <= r[1]) or not all(map(math.isfinite, r)):
                raise ConfigError(f"ISPConfig.{name} must be (lo, hi) with 0 < lo <= hi, got {getattr(self, name)!r}")
            object.__setattr__(self, name, r)
        if not (self.rgb_gain_inv_std >= 0 and self.rgb_gain_inv_min > 0 and
                self.rgb_gain_inv_mean > self.rgb_gain_inv_min):
            raise ConfigError("ISPConfig: need rgb_gain_inv_std >= 0 and rgb_gain_inv_mean > rgb_gain_inv_min > 0")



def sample_isp_params(rng: np.random.Generator, cfg: ISPConfig | None = None) -> ISPParams:
    """Draw one image's ISP parameters.

    Draw order (fixed, so a seed reproduces the same parameters): the CCM mixing weights, then
    ``1/rgb_gain``, then ``red_gain``, then ``blue_gain``.

    Args:
        rng: the sample's generator (derive it from (seed, sample key); never the global one).
        cfg: distributions; Brooks et al.'s by default.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    cfg = cfg or ISPConfig()
    mats = np.asarray(cfg.xyz2cam)
    w = rng.uniform(*cfg.ccm_weight_range, size=len(mats))
    xyz2cam = np.tensordot(w / w.sum(), mats, axes=1)
    rgb2cam = rgb2cam_from_xyz2cam(xyz2cam)
    while True:
        inv = rng.normal(cfg.rgb_gain_inv_mean, cfg.rgb_gain_inv_std)
        if inv >= cfg.rgb_gain_inv_min:
            break
    red = rng.uniform(*cfg.red_gain_range)
    blue = rng.uniform(*cfg.blue_gain_range)
    return ISPParams.from_rgb2cam(rgb2cam, 1.0 / inv, red, blue)


def fixed_isp_params(xyz2cam=None, rgb_gain: float = 1.25, red_gain: float = 2.15,
                     blue_gain: float = 1.7) -> ISPParams:
    """Deterministic parameters for tests and benchmarks.

    Defaults are the centres of Brooks' distributions: the equal-weight mix of the four cameras,
    ``rgb_gain = 1/0.8``, ``red_gain = 2.15``, ``blue_gain = 1.7``.
    """
    if xyz2cam is None:
        xyz2cam = np.mean(np.asarray(XYZ2CAMS), axis=0)
    return ISPParams.from_rgb2cam(rgb2cam_from_xyz2cam(xyz2cam), rgb_gain, red_gain, blue_gain)


@dataclass
class ISPBatch:
    """Tensor form of a batch of :class:`ISPParams`, for the batched ops.

    Attributes:
        rgb2cam, cam2rgb: ``(B, 3, 3)``.
        rgb_gain, red_gain, blue_gain: ``(B,)``.

    The tensors may require grad (e.g. to fit parameters); the ops differentiate through them.
    """

    rgb2cam: torch.Tensor
    cam2rgb: torch.Tensor
    rgb_gain: torch.Tensor
    red_gain: torch.Tensor
    blue_gain: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.rgb2cam.shape[0]

    @classmethod
    def from_params(cls, params: ISPParams | Sequence[ISPParams], batch_size: int | None = None,
                    device=None, dtype=torch.float32) -> ISPBatch:
        """Stack per-sample params (a single :class:`ISPParams` is repeated ``batch_size`` times)."""
        if isinstance(params, ISPParams):
            params = [params] * (batch_size or 1)
        params = list(params)
        if not params or not all(isinstance(p, ISPParams) for p in params):
            raise ShapeError("params must be an ISPParams or a non-empty sequence of ISPParams")
        if batch_size is not None and len(params) != batch_size:
            raise ShapeError(f"got {len(params)} ISPParams for a batch of {batch_size}")

        def t(v):
            return torch.tensor(v, dtype=dtype, device=device)

        return cls(t([p.rgb2cam for p in params]), t([p.cam2rgb for p in params]),
                   t([p.rgb_gain for p in params]), t([p.red_gain for p in params]),
                   t([p.blue_gain for p in params]))

    def to(self, device=None, dtype=None) -> ISPBatch:
        return ISPBatch(*(getattr(self, f.name).to(device=device, dtype=dtype) for f in dataclasses.fields(self)))

    def wb_gains(self) -> torch.Tensor:
        """``(B, 3)`` gains PTP applies: ``rgb_gain · (red_gain, 1, blue_gain)``."""
        one = torch.ones_like(self.red_gain)
        return self.rgb_gain[:, None] * torch.stack([self.red_gain, one, self.blue_gain], dim=1)


def as_isp_batch(params, x: torch.Tensor) -> ISPBatch:
    """Normalise ``params`` (ISPParams, a sequence of them, or ISPBatch) to an :class:`ISPBatch` on
    ``x``'s device and dtype with ``x``'s batch size."""
    b = x.shape[0]
    if isinstance(params, ISPBatch):
        if params.batch_size not in (1, b):
            raise ShapeError(f"ISPBatch has batch size {params.batch_size}, input has {b}")
        out = params.to(device=x.device, dtype=x.dtype)
        if out.batch_size == 1 and b > 1:
            out = ISPBatch(*(getattr(out, f.name).expand(b, *getattr(out, f.name).shape[1:])
                             for f in dataclasses.fields(out)))
        return out
    if isinstance(params, ISPParams):
        return ISPBatch.from_params(params, b, device=x.device, dtype=x.dtype)
    if isinstance(params, (list, tuple)):
        return ISPBatch.from_params(params, b, device=x.device, dtype=x.dtype)
    raise ShapeError(f"params must be ISPParams, a sequence of ISPParams or an ISPBatch, got {type(params).__name__}")
