"""Detail degradation: Real-ESRGAN's two-order blur / resize / JPEG chain without its noise steps (noise is added
in the RAW domain, :mod:`rawsynth.mns`). See ``docs/degrade.md``."""

from .config import (REAL_ESRGAN_KERNEL_PROBS, REAL_ESRGAN_KERNELS, DegradationConfig, FinalConfig, FinalOrder,
                     KernelConfig, KernelType, ResizeDirection, ResizeMode, StageConfig)
from .blur_kernels import build_kernel
from .ops import apply_degradation, degrade_batch
from .params import DegradationParams, FinalParams, KernelParams, StageParams
from .sample import sample_degradation
from .stage import DEGRADE_BACKENDS, degrade

__all__ = [
    "DEGRADE_BACKENDS", "REAL_ESRGAN_KERNELS", "REAL_ESRGAN_KERNEL_PROBS", "DegradationConfig", "DegradationParams",
    "FinalConfig", "FinalOrder", "FinalParams", "KernelConfig", "KernelParams", "KernelType", "ResizeDirection",
    "ResizeMode", "StageConfig", "StageParams", "apply_degradation", "build_kernel", "degrade", "degrade_batch",
    "sample_degradation",
]
