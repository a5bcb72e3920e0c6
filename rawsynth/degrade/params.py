"""Everything one sample's degradation drew (:class:`DegradationParams`): frozen, validated, exact JSON round
trip. See ``docs/degrade.md``."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError
from .._config import ConfigMixin
from ._fields import as_bool, as_enum, as_float, as_instance, as_int, as_size
from .config import FinalOrder, KernelType, ResizeDirection, ResizeMode

__all__ = ["KernelParams", "StageParams", "FinalParams", "DegradationParams"]


def _opt_float(v, name: str, **kw) -> float | None:
    return None if v is None else as_float(v, name, **kw)


@dataclass(frozen=True)
class KernelParams(ConfigMixin):
    """One blur kernel: its family, unpadded odd size and shape parameters.

    Attributes:
        kind: the family.
        size: side length before zero-padding (odd).
        sigma_x, sigma_y, theta: Gaussian-family spread (pixels) and rotation (radians); isotropic kinds
            have ``sigma_y == sigma_x`` and ``theta == 0`` (as basicsr passes them). ``None`` for sinc.
        beta: shape of generalized / plateau kernels, ``None`` otherwise.
        omega_c: sinc cutoff in ``(0, π]`` radians, ``None`` for the other kinds.
    """

    kind: KernelType
    size: int
    sigma_x: float | None = None
    sigma_y: float | None = None
    theta: float | None = None
    beta: float | None = None
    omega_c: float | None = None

    def __post_init__(self):
        s = object.__setattr__
        kind = as_enum(KernelType, self.kind, "kind")
        s(self, "kind", kind)
        s(self, "size", as_int(self.size, "size", 1, odd=True))
        s(self, "sigma_x", _opt_float(self.sigma_x, "sigma_x", lo=0.0, lo_open=True))
        s(self, "sigma_y", _opt_float(self.sigma_y, "sigma_y", lo=0.0, lo_open=True))
        s(self, "theta", _opt_float(self.theta, "theta"))
        s(self, "beta", _opt_float(self.beta, "beta", lo=0.0, lo_open=True))
        s(self, "omega_c", _opt_float(self.omega_c, "omega_c", lo=0.0, hi=math.pi, lo_open=True))
        if kind is KernelType.SINC:
            if self.omega_c is None or any(v is not None for v in (self.sigma_x, self.sigma_y, self.theta, self.beta)):
                raise ConfigError("a sinc kernel takes omega_c only (sigma_x, sigma_y, theta, beta must be null)")
            return
        if self.omega_c is not None or None in (self.sigma_x, self.sigma_y, self.theta):
            raise ConfigError(f"a {kind.value} kernel needs sigma_x, sigma_y and theta, and no omega_c")
        if kind.isotropic and (self.sigma_y != self.sigma_x or self.theta != 0.0):
            raise ConfigError(f"an isotropic kernel ({kind.value}) has sigma_y == sigma_x and theta == 0, got "
                              f"sigma_x={self.sigma_x}, sigma_y={self.sigma_y}, theta={self.theta}")
        if kind.has_beta != (self.beta is not None):
            raise ConfigError(f"a {kind.value} kernel {'needs' if kind.has_beta else 'takes no'} beta")


@dataclass(frozen=True)
class StageParams(ConfigMixin):
    """One degradation order as drawn.

    Attributes:
        kernel: the blur kernel, or ``None`` when this order did not blur.
        resize: up / down / keep.
        resize_scale: the drawn factor (1.0 for keep). The first order resizes with
            ``F.interpolate(x, scale_factor=resize_scale)``; the second to
            ``(int(H / scale * resize_scale), int(W / scale * resize_scale))`` of the original ``(H, W)``.
        resize_mode: interpolation mode.
        resize_size: ``(h, w)`` after the resize.
        jpeg_quality: libjpeg quality (1..100) of this order's JPEG, or ``None`` for an order without one
            (Real-ESRGAN's second order: its JPEG is the final step's).
    """

    kernel: KernelParams | None
    resize: ResizeDirection
    resize_scale: float
    resize_mode: ResizeMode
    resize_size: tuple[int, int]
    jpeg_quality: int | None

    def __post_init__(self):
        s = object.__setattr__
        if self.kernel is not None:
            as_instance(KernelParams, self.kernel, "kernel")
        s(self, "resize", as_enum(ResizeDirection, self.resize, "resize"))
        s(self, "resize_scale", as_float(self.resize_scale, "resize_scale", 0.0, lo_open=True))
        s(self, "resize_mode", as_enum(ResizeMode, self.resize_mode, "resize_mode"))
        s(self, "resize_size", as_size(self.resize_size, "resize_size"))
        if self.jpeg_quality is not None:
            s(self, "jpeg_quality", as_int(self.jpeg_quality, "jpeg_quality", 1, 100))
        r, f = self.resize, self.resize_scale
        if (r is ResizeDirection.KEEP and f != 1.0) or (r is ResizeDirection.UP and f < 1.0) or (
                r is ResizeDirection.DOWN and f > 1.0):
            raise ConfigError(f"resize_scale {f} does not match resize {r.value!r}")


@dataclass(frozen=True)
class FinalParams(ConfigMixin):
    """The final step as drawn.

    Attributes:
        order: resize+sinc then JPEG, or JPEG then resize+sinc.
        resize_mode: mode of the resize to ``(H/scale, W/scale)``.
        sinc: the sinc kernel, or ``None`` when not applied (Real-ESRGAN's pulse = identity).
        jpeg_quality: libjpeg quality (1..100).
    """

    order: FinalOrder
    resize_mode: ResizeMode
    sinc: KernelParams | None
    jpeg_quality: int

    def __post_init__(self):
        s = object.__setattr__
        s(self, "order", as_enum(FinalOrder, self.order, "order"))
        s(self, "resize_mode", as_enum(ResizeMode, self.resize_mode, "resize_mode"))
        if self.sinc is not None:
            as_instance(KernelParams, self.sinc, "sinc")
            if self.sinc.kind is not KernelType.SINC:
                raise ConfigError(f"final sinc must be a sinc kernel, got {self.sinc.kind.value}")
        s(self, "jpeg_quality", as_int(self.jpeg_quality, "jpeg_quality", 1, 100))


@dataclass(frozen=True)
class DegradationParams(ConfigMixin):
    """Everything drawn for one sample by :func:`~rawsynth.degrade.sample_degradation`.

    Attributes:
        in_size: ``(H, W)`` of the HQ input (multiples of ``scale``).
        scale: the SR factor; the LQ is made at ``(H/scale, W/scale)``.
        first: the first order (blur, resize by factor, JPEG).
        second: the second order (blur or not, resize relative to the original size; by default no JPEG of
            its own).
        final: resize to ``(H/scale, W/scale)`` + sinc and JPEG, in ``final.order``.
        resize_back: whether the LQ is resized back to ``in_size``.
        resize_back_mode: mode of that resize.
        out_size: ``(h, w)`` of the result: ``in_size`` if ``resize_back`` else ``in_size // scale``.
    """

    in_size: tuple[int, int]
    scale: int
    first: StageParams
    second: StageParams
    final: FinalParams
    resize_back: bool
    resize_back_mode: ResizeMode
    out_size: tuple[int, int]

    def __post_init__(self):
        s = object.__setattr__
        s(self, "in_size", as_size(self.in_size, "in_size"))
        s(self, "scale", as_int(self.scale, "scale", 1))
        as_instance(StageParams, self.first, "first")
        as_instance(StageParams, self.second, "second")
        as_instance(FinalParams, self.final, "final")
        s(self, "resize_back", as_bool(self.resize_back, "resize_back"))
        s(self, "resize_back_mode", as_enum(ResizeMode, self.resize_back_mode, "resize_back_mode"))
        s(self, "out_size", as_size(self.out_size, "out_size"))
        h, w = self.in_size
        if h % self.scale or w % self.scale:
            raise ConfigError(f"in_size {self.in_size} must be a multiple of scale {self.scale}")
        want = self.in_size if self.resize_back else self.lq_size
        if self.out_size != want:
            raise ConfigError(f"out_size {self.out_size} must be {want} (resize_back={self.resize_back})")

    @property
    def lq_size(self) -> tuple[int, int]:
        """``(H/scale, W/scale)``: the size of the LQ before any resize back."""
        return self.in_size[0] // self.scale, self.in_size[1] // self.scale
