"""The distributions of the detail degradation (:class:`DegradationConfig`): Real-ESRGAN's defaults without its
noise steps. See ``docs/degrade.md``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from .._config import ConfigMixin
from ._fields import (as_bool, as_enum, as_enum_tuple, as_instance, as_int, as_int_range, as_prob, as_probs,
                      as_range)

__all__ = ["KernelType", "ResizeMode", "ResizeDirection", "FinalOrder", "KernelConfig", "StageConfig",
           "FinalConfig", "DegradationConfig", "REAL_ESRGAN_KERNELS", "REAL_ESRGAN_KERNEL_PROBS"]


class KernelType(str, Enum):
    """Blur kernel families (basicsr ``random_mixed_kernels`` names, plus Real-ESRGAN's ``sinc``).

    * ``ISO`` / ``ANISO``: Gaussian ``exp(-½ xᵀΣ⁻¹x)``; iso uses ``Σ = σ_x² I``.
    * ``GENERALIZED_ISO`` / ``GENERALIZED_ANISO``: ``exp(-½ (xᵀΣ⁻¹x)^β)``.
    * ``PLATEAU_ISO`` / ``PLATEAU_ANISO``: ``1 / (1 + (xᵀΣ⁻¹x)^β)``.
    * ``SINC``: circular low-pass ``ω_c J₁(ω_c r) / (2π r)`` (basicsr ``circular_lowpass_kernel``).

    Anisotropic ``Σ = R(θ) diag(σ_x², σ_y²) R(θ)ᵀ``. Every kernel is normalised to sum to 1.
    """

    ISO = "iso"
    ANISO = "aniso"
    GENERALIZED_ISO = "generalized_iso"
    GENERALIZED_ANISO = "generalized_aniso"
    PLATEAU_ISO = "plateau_iso"
    PLATEAU_ANISO = "plateau_aniso"
    SINC = "sinc"

    @property
    def isotropic(self) -> bool:
        return self in (KernelType.ISO, KernelType.GENERALIZED_ISO, KernelType.PLATEAU_ISO)

    @property
    def has_beta(self) -> bool:
        return self in (KernelType.GENERALIZED_ISO, KernelType.GENERALIZED_ANISO, KernelType.PLATEAU_ISO,
                        KernelType.PLATEAU_ANISO)


class ResizeMode(str, Enum):
    """``torch.nn.functional.interpolate`` modes (``align_corners=False``, no antialias, as Real-ESRGAN)."""

    AREA = "area"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


class ResizeDirection(str, Enum):
    """Random-resize choice: scale ``U(1, hi)`` (up), ``U(lo, 1)`` (down) or exactly 1 (keep)."""

    UP = "up"
    DOWN = "down"
    KEEP = "keep"


class FinalOrder(str, Enum):
    """Order of the final step: ``[resize to H/scale + sinc] → JPEG`` or ``JPEG → [resize + sinc]``."""

    RESIZE_SINC_JPEG = "resize_sinc_jpeg"
    JPEG_RESIZE_SINC = "jpeg_resize_sinc"


ALL_MODES = (ResizeMode.AREA, ResizeMode.BILINEAR, ResizeMode.BICUBIC)

#: Real-ESRGAN's ``kernel_list`` and ``kernel_prob``.
REAL_ESRGAN_KERNELS = (KernelType.ISO, KernelType.ANISO, KernelType.GENERALIZED_ISO, KernelType.GENERALIZED_ANISO,
                       KernelType.PLATEAU_ISO, KernelType.PLATEAU_ANISO)
REAL_ESRGAN_KERNEL_PROBS = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)


@dataclass(frozen=True)
class KernelConfig(ConfigMixin):
    """Distribution of one order's blur kernel (Real-ESRGAN dataset + basicsr ``random_mixed_kernels``).

    Attributes:
        kernel_list: the Gaussian-family kernel types (not ``sinc``).
        kernel_prob: their probabilities (sum to 1).
        size_range: kernel side length, uniform over the odd sizes in ``[lo, hi]`` (both odd).
        sigma_range: ``σ_x ~ U(lo, hi)``; anisotropic kinds also draw ``σ_y ~ U(lo, hi)``.
        rotation_range: anisotropic kinds draw ``θ ~ U(lo, hi)`` (radians).
        betag_range: generalized Gaussian ``β``: with prob 0.5 ``U(lo, 1)``, else ``U(1, hi)``
            (basicsr's sampler; needs ``lo <= 1 <= hi``).
        betap_range: plateau ``β``, drawn the same way (so with Real-ESRGAN's ``[1, 2]`` half the plateau
            kernels get ``β = 1`` exactly — basicsr's behaviour, kept).
        sinc_prob: probability of a sinc kernel instead of the Gaussian family.
        sinc_omega_range: sinc ``ω_c`` range for sizes ``< sinc_large_size``.
        sinc_omega_range_large: sinc ``ω_c`` range for sizes ``>= sinc_large_size``.
        sinc_large_size: the size threshold (13 in Real-ESRGAN).
    """

    kernel_list: tuple[KernelType, ...] = REAL_ESRGAN_KERNELS
    kernel_prob: tuple[float, ...] = REAL_ESRGAN_KERNEL_PROBS
    size_range: tuple[int, int] = (7, 21)
    sigma_range: tuple[float, float] = (0.2, 3.0)
    rotation_range: tuple[float, float] = (-math.pi, math.pi)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1
    sinc_omega_range: tuple[float, float] = (math.pi / 3, math.pi)
    sinc_omega_range_large: tuple[float, float] = (math.pi / 5, math.pi)
    sinc_large_size: int = 13

    def __post_init__(self):
        s = object.__setattr__
        kinds = as_enum_tuple(KernelType, self.kernel_list, "kernel_list", exclude=(KernelType.SINC,))
        s(self, "kernel_list", kinds)
        s(self, "kernel_prob", as_probs(self.kernel_prob, "kernel_prob", len(kinds)))
        s(self, "size_range", as_int_range(self.size_range, "size_range", 1, odd=True))
        s(self, "sigma_range", as_range(self.sigma_range, "sigma_range", 0.0, lo_open=True))
        s(self, "rotation_range", as_range(self.rotation_range, "rotation_range"))
        s(self, "betag_range", as_range(self.betag_range, "betag_range", 0.0, lo_open=True, contains=1.0))
        s(self, "betap_range", as_range(self.betap_range, "betap_range", 0.0, lo_open=True, contains=1.0))
        s(self, "sinc_prob", as_prob(self.sinc_prob, "sinc_prob"))
        for name in ("sinc_omega_range", "sinc_omega_range_large"):
            s(self, name, as_range(getattr(self, name), name, 0.0, math.pi, lo_open=True))
        s(self, "sinc_large_size", as_int(self.sinc_large_size, "sinc_large_size", 1))

    @property
    def sizes(self) -> tuple[int, ...]:
        """The odd kernel sizes drawn from, uniformly."""
        return tuple(range(self.size_range[0], self.size_range[1] + 1, 2))


def _second_kernel() -> KernelConfig:
    return KernelConfig(sigma_range=(0.2, 1.5))


@dataclass(frozen=True)
class StageConfig(ConfigMixin):
    """One degradation order: blur → random resize → JPEG (defaults: Real-ESRGAN's first order).

    Attributes:
        kernel: the blur kernel distribution.
        blur_prob: probability that this order blurs at all (1 for the first order, 0.8 for the second).
        resize_prob: probabilities of (up, down, keep).
        resize_range: ``(lo, hi)`` with ``lo <= 1 <= hi``: up draws ``U(1, hi)``, down ``U(lo, 1)``.
        resize_modes: interpolation modes, drawn uniformly.
        jpeg_range: JPEG quality, uniform over the integers in ``[lo, hi]`` (1..100); ``None``: this order
            does not compress (Real-ESRGAN's second order, whose JPEG is the final step's).
    """

    kernel: KernelConfig = field(default_factory=KernelConfig)
    blur_prob: float = 1.0
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    resize_modes: tuple[ResizeMode, ...] = ALL_MODES
    jpeg_range: tuple[int, int] | None = (30, 95)

    def __post_init__(self):
        s = object.__setattr__
        as_instance(KernelConfig, self.kernel, "kernel")
        s(self, "blur_prob", as_prob(self.blur_prob, "blur_prob"))
        s(self, "resize_prob", as_probs(self.resize_prob, "resize_prob", 3))
        s(self, "resize_range", as_range(self.resize_range, "resize_range", 0.0, lo_open=True, contains=1.0))
        s(self, "resize_modes", as_enum_tuple(ResizeMode, self.resize_modes, "resize_modes"))
        if self.jpeg_range is not None:
            s(self, "jpeg_range", as_int_range(self.jpeg_range, "jpeg_range", 1, 100))


def _second_stage() -> StageConfig:
    return StageConfig(kernel=_second_kernel(), blur_prob=0.8, resize_prob=(0.3, 0.4, 0.3),
                       resize_range=(0.3, 1.2), jpeg_range=None)


@dataclass(frozen=True)
class FinalConfig(ConfigMixin):
    """The final step: resize to ``(H/scale, W/scale)`` + sinc filter, and JPEG, in a random order.

    Attributes:
        resize_first_prob: probability of ``[resize + sinc] → JPEG`` (else ``JPEG → [resize + sinc]``).
        resize_modes: interpolation modes of the resize, drawn uniformly.
        sinc_prob: probability that the sinc filter is applied (else identity).
        sinc_size_range: sinc kernel size, uniform over the odd sizes in ``[lo, hi]``.
        sinc_omega_range: ``ω_c ~ U(lo, hi)``.
        jpeg_range: JPEG quality, uniform over the integers in ``[lo, hi]``.
    """

    resize_first_prob: float = 0.5
    resize_modes: tuple[ResizeMode, ...] = ALL_MODES
    sinc_prob: float = 0.8
    sinc_size_range: tuple[int, int] = (7, 21)
    sinc_omega_range: tuple[float, float] = (math.pi / 3, math.pi)
    jpeg_range: tuple[int, int] = (30, 95)

    def __post_init__(self):
        s = object.__setattr__
        s(self, "resize_first_prob", as_prob(self.resize_first_prob, "resize_first_prob"))
        s(self, "resize_modes", as_enum_tuple(ResizeMode, self.resize_modes, "resize_modes"))
        s(self, "sinc_prob", as_prob(self.sinc_prob, "sinc_prob"))
        s(self, "sinc_size_range", as_int_range(self.sinc_size_range, "sinc_size_range", 1, odd=True))
        s(self, "sinc_omega_range", as_range(self.sinc_omega_range, "sinc_omega_range", 0.0, math.pi, lo_open=True))
        s(self, "jpeg_range", as_int_range(self.jpeg_range, "jpeg_range", 1, 100))

    @property
    def sinc_sizes(self) -> tuple[int, ...]:
        return tuple(range(self.sinc_size_range[0], self.sinc_size_range[1] + 1, 2))


@dataclass(frozen=True)
class DegradationConfig(ConfigMixin):
    """Real-ESRGAN's two-order detail degradation without noise (defaults: ``train_realesrnet_x4plus.yml``).

    Attributes:
        scale: the super-resolution factor; the LQ is first made at ``(H/scale, W/scale)``.
        resize_back: resize the LQ back to ``(H, W)`` (RDDM needs LQ and HQ at the same size).
        resize_back_mode: interpolation mode of that resize.
        first: the first order (blur always, resize, JPEG).
        second: the second order (blur with prob 0.8, resize relative to the original size, no JPEG of its
            own: the final step's JPEG follows).
        final: resize to ``H/scale`` + sinc and JPEG, in a random order.

    Example YAML (only the keys that change)::

        scale: 2
        second:
          blur_prob: 0.5
          kernel: {sigma_range: [0.2, 1.0]}
    """

    scale: int = 4
    resize_back: bool = True
    resize_back_mode: ResizeMode = ResizeMode.BICUBIC
    first: StageConfig = field(default_factory=StageConfig)
    second: StageConfig = field(default_factory=_second_stage)
    final: FinalConfig = field(default_factory=FinalConfig)

    def __post_init__(self):
        s = object.__setattr__
        s(self, "scale", as_int(self.scale, "scale", 1))
        s(self, "resize_back", as_bool(self.resize_back, "resize_back"))
        s(self, "resize_back_mode", as_enum(ResizeMode, self.resize_back_mode, "resize_back_mode"))
        as_instance(StageConfig, self.first, "first")
        as_instance(StageConfig, self.second, "second")
        as_instance(FinalConfig, self.final, "final")

    @property
    def max_kernel_size(self) -> int:
        """The largest kernel any stage can draw (21 by default): the size kernels are padded to."""
        return max(self.first.kernel.size_range[1], self.second.kernel.size_range[1], self.final.sinc_size_range[1])
