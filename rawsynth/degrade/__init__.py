"""Detail degradation: Real-ESRGAN's two-order blur / resize / JPEG chain without its noise steps.

Noise belongs to the sensor and is added later in the RAW domain (:mod:`rawsynth.mns`). Every parameter is
drawn per sample from an explicit generator by :func:`sample_degradation` and recorded in a frozen,
JSON-serialisable :class:`DegradationParams`; :func:`apply_degradation` is a pure function of the image and
those parameters. basicsr (kernel constructors only) is imported lazily, on the first kernel built.
"""

from .config import (REAL_ESRGAN_KERNEL_PROBS, REAL_ESRGAN_KERNELS, DegradationConfig, FinalConfig, FinalOrder,
                     KernelConfig, KernelType, ResizeDirection, ResizeMode, StageConfig)
from .blur_kernels import build_kernel
from .ops import apply_degradation, degrade_batch
from .params import DegradationParams, FinalParams, KernelParams, StageParams
from .sample import sample_degradation
from .stage import DEGRADE_BACKENDS, degrade

__all__ = [
    "DEGRADE_BACKENDS", "REAL_ESRGAN_KERNELS", "REAL_ESRGAN_KERNEL_PROBS", "DegradationConfig", "DegradationParams", "FinalConfig",
    "FinalOrder", "FinalParams", "KernelConfig", "KernelParams", "KernelType", "ResizeDirection", "ResizeMode",
    "StageConfig", "StageParams", "apply_degradation", "build_kernel", "degrade", "degrade_batch", "sample_degradation",
]
