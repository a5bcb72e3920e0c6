"""Cameras drawn per sample (bundled or calibrated profiles, or LED-style virtual cameras) and which colour matrix a
sample uses. See ``docs/cameras.md``."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ._config import from_mapping, to_dict
from .errors import ConfigError
from .mns.physics import COMPONENTS, CalibrationPoint, CameraInfo, LogLinearLaw, PhysicsProfile
from .rng import numpy_rng

__all__ = ["CameraConfig", "LED_VIRTUAL_RANGES", "virtual_cameras", "camera_profiles", "sample_camera"]

#: LED's virtual-camera parameter ranges (``Srameo/LED`` ``options/base/noise_g/noise_g_virtual.yaml``: the
#: span of the five ELD calibrations), in DN of a 14-bit sensor.
LED_VIRTUAL_RANGES = {
    "K": (0.1, 30.0),
    "sigma_tl": {"slope": (0.46210495986526035, 0.6558756156508007), "bias": (-0.09044499670414502, 1.5370438794284738),
                 "sigma": (0.23920060971003035, 0.3888189465002228)},
    "tukey_lambda": (-0.24285714285714288, 0.2),
    "sigma_row": {"slope": (0.44829219631519307, 0.7292220505388829),
                  "bias": (-1.7977103277112132, -0.5917002648887661),
                  "sigma": (0.2321799439489326, 0.29428813016491145)},
    "color_bias": {"bias": (-1.9080039, 4.080531), "sigma": (0.006866596, 3.0379589), "count": 16},
}
_MAX_VIRTUAL = 16


@dataclass(frozen=True)
class CameraConfig:
    """Which cameras ``generate`` draws from.

    Attributes:
        names: camera profiles (bundled names, see ``rawsynth profiles``, or JSON paths); empty with ``virtual``.
        weights: relative probabilities (same length as ``names``), or ``None`` for uniform.
        virtual: number of LED-style virtual cameras (0: off; 1..16), drawn once per run seed from
            :data:`LED_VIRTUAL_RANGES` with LED's "coverage" strategy; replaces ``names``.
        ccm: ``"brooks"`` (random mix of Brooks' four matrices, the default) or ``"camera"`` (the sampled
            camera's own ``ColorMatrix``; cameras without one fall back to Brooks' mix, recorded in the metadata).
    """

    names: tuple[str, ...] = ()
    weights: tuple[float, ...] | None = None
    virtual: int = 0
    ccm: str = "brooks"

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        if self.ccm not in ("brooks", "camera"):
            raise ConfigError(f"cameras.ccm must be 'brooks' or 'camera', got {self.ccm!r}")
        if isinstance(self.virtual, bool) or not isinstance(self.virtual, int) or not 0 <= self.virtual <= _MAX_VIRTUAL:
            raise ConfigError(f"cameras.virtual must be an integer in 0..{_MAX_VIRTUAL}, got {self.virtual!r}")
        if bool(self.names) == bool(self.virtual):
            raise ConfigError("cameras: give either names (camera profiles) or virtual (a count), not both or neither")
        if self.weights is not None:
            w = tuple(float(v) for v in self.weights)
            if len(w) != len(self.names) or not all(math.isfinite(v) and v >= 0 for v in w) or sum(w) <= 0:
                raise ConfigError(f"cameras.weights must be {len(self.names)} non-negative numbers with a positive "
                                  f"sum, got {self.weights!r}")
            object.__setattr__(self, "weights", w)
        for n in self.names:  # fail early, naming the camera
            _load_camera(n)

    @classmethod
    def parse(cls, text: str, ccm: str | None = None) -> CameraConfig:
        """From the command line: ``"A,B"``, ``"A:3,B:1"`` (weights) or ``"virtual"`` / ``"virtual:N"``."""
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise ConfigError("--cameras needs at least one camera (see `rawsynth profiles`)")
        kw = {"ccm": ccm} if ccm else {}
        if items[0].split(":")[0] == "virtual":
            if len(items) > 1:
                raise ConfigError("--cameras virtual[:N] cannot be combined with named cameras")
            n = items[0].split(":", 1)[1] if ":" in items[0] else "5"
            try:
                return cls(virtual=int(n), **kw)
            except ValueError:
                raise ConfigError(f"--cameras virtual:N needs an integer N, got {n!r}") from None
        names, weights = [], []
        for it in items:
            name, _, w = it.rpartition(":") if ":" in it and not it.endswith(".json") else (it, "", "")
            names.append(name)
            try:
                weights.append(float(w) if w else None)
            except ValueError:
                raise ConfigError(f"--cameras: weight of {name!r} must be a number, got {w!r}") from None
        if any(w is not None for w in weights) and any(w is None for w in weights):
            raise ConfigError("--cameras: give a weight to every camera (A:3,B:1) or to none")
        return cls(tuple(names), tuple(weights) if weights[0] is not None else None, **kw)

    def to_dict(self) -> dict:
        """JSON/YAML-ready dict (lists for the tuples); ``CameraConfig.from_dict(c.to_dict()) == c``."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, d) -> CameraConfig:
        """From a config: a mapping of the fields (:func:`~rawsynth._config.from_mapping`: unknown keys named), a
        list of camera names, or the command-line text of :meth:`parse`."""
        if isinstance(d, str):
            return cls.parse(d)
        if isinstance(d, (list, tuple)):
            return cls(tuple(d))
        if not isinstance(d, Mapping):
            raise ConfigError(f"cameras must be a mapping, a list of names or a string, got {type(d).__name__}")
        if d.get("names") is None and "names" in d:  # `names: null` with `virtual: N`
            d = {**d, "names": ()}
        return from_mapping(cls, d, "cameras", init=True)


@functools.lru_cache(maxsize=64)
def _load_camera(name: str) -> PhysicsProfile:
    from .mns.noise import load_noise_profile

    prof = load_noise_profile(name)
    if not isinstance(prof, PhysicsProfile):
        raise ConfigError(f"camera {name!r} is an Eq. 11 noise profile, not a camera profile; cameras are the "
                          "'physics' profiles listed by `rawsynth profiles` or made by `rawsynth calibrate`")
    return prof


def _coverage(n: int, lo: float, hi: float) -> list[float]:
    """LED's "coverage" strategy: ``n`` evenly spaced values from ``lo`` to ``hi`` (the midpoint when n = 1)."""
    return [(lo + hi) / 2] if n == 1 else [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def virtual_cameras(rng: np.random.Generator, n: int) -> tuple[PhysicsProfile, ...]:
    """``n`` LED-style virtual cameras ``IC0..IC{n-1}``.

    As LED's ``VirtualNoisyPairGenerator`` (coverage strategy, no shuffle): camera ``i`` takes the ``i``-th of
    ``n`` evenly spaced values of every law coefficient and of λ; its colour bias has ``count`` K bins, each
    ``U(bias range) + N(0, 1)·U(sigma interval i)`` per channel (the sigma range split into ``count`` intervals
    overlapping by 10 %), drawn from ``rng``. Sensor: 14-bit, black 512, white 16383 (SID's Sony, on which
    LED's ranges were calibrated); no colour matrix.
    """
    if not 1 <= n <= _MAX_VIRTUAL:
        raise ConfigError(f"virtual camera count must be in 1..{_MAX_VIRTUAL}, got {n}")
    r = LED_VIRTUAL_RANGES
    tl = {k: _coverage(n, *v) for k, v in r["sigma_tl"].items()}
    row = {k: _coverage(n, *v) for k, v in r["sigma_row"].items()}
    lams = _coverage(n, *r["tukey_lambda"])
    cb = r["color_bias"]
    count, (s_lo, s_hi) = cb["count"], cb["sigma"]
    step = (s_hi - s_lo) / (count * 0.9 + 0.1)
    k_lo, k_hi = r["K"]
    width = (k_hi - k_lo) / count
    out = []
    for i in range(n):
        s_a = s_lo + step * 0.9 * i
        bins = []
        for j in range(count):
            bias = rng.uniform(*cb["bias"])
            sd = rng.uniform(s_a, s_a + step)
            vals = bias + rng.normal(size=4) * sd
            bins.append(CalibrationPoint(k_lo + (j + 0.5) * width, lams[i], tuple(float(v) for v in vals)))
        out.append(PhysicsProfile(
            name=f"IC{i}", k_range=(k_lo, k_hi), points=tuple(bins),
            sigma_tl=LogLinearLaw(tl["slope"][i], tl["bias"][i], tl["sigma"][i]),
            sigma_row=LogLinearLaw(row["slope"][i], row["bias"][i], row["sigma"][i]),
            read_model="tukey", lambda_choice="nearest", components=COMPONENTS,
            camera=CameraInfo("rawsynth", f"virtual IC{i}", 14, 512, 16383, None, "LED virtual camera"),
            description="LED-style virtual camera", source="LED (Jin et al., ICCV 2023) virtual-camera ranges"))
    return tuple(out)


@functools.lru_cache(maxsize=16)
def camera_profiles(config: CameraConfig, seed: int) -> tuple[PhysicsProfile, ...]:
    """The cameras of a run: the named profiles, or the virtual cameras of ``seed`` (stream
    ``"virtual-cameras"`` of the empty key)."""
    if config.virtual:
        return virtual_cameras(numpy_rng(seed, "", "virtual-cameras"), config.virtual)
    return tuple(_load_camera(n) for n in config.names)


def sample_camera(rng: np.random.Generator, config: CameraConfig, seed: int) -> PhysicsProfile:
    """Draw a sample's camera: one ``U(0, 1)`` draw against the cumulative weights (uniform by default)."""
    cams = camera_profiles(config, seed)
    w = np.asarray(config.weights if config.weights is not None else [1.0] * len(cams), dtype=np.float64)
    u = rng.uniform() * w.sum()
    i = int(np.searchsorted(np.cumsum(w), u, side="right"))
    return cams[min(i, len(cams) - 1)]
