"""Fused GPU kernels (Triton) for the heavy synthesis steps, each beside the torch reference it replaces.

* :func:`iptp_mns`: sRGB → noisy RAW mosaic in DN (+ linear HQ) in one pass; reference :func:`iptp_mns_reference`.
* :func:`ptp`: the forward ISP (:func:`rawsynth.isp.process`) fused, with a fused backward;
  :func:`rawsynth.isp.process` uses it by itself on CUDA tensors.

``backend="auto"`` picks the Triton kernel for CUDA tensors (when ``triton`` is importable and the environment
variable ``RAWSYNTH_KERNELS`` is not ``0``) and the torch reference otherwise; the CPU path is the reference.
"""

from ._common import Backend, kernels_enabled, triton_available
from .iptp_mns import iptp_mns, iptp_mns_reference, pattern_code, srgb_lut
from .ptp import ptp, ptp_reference

__all__ = ["Backend", "iptp_mns", "iptp_mns_reference", "kernels_enabled", "pattern_code", "ptp", "ptp_reference",
           "srgb_lut", "triton_available"]
