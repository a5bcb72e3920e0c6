"""The detail degradation for a whole batch on the GPU (or CPU), every sample with its own parameters.

:func:`degrade_batch_gpu` runs the chain of :func:`~rawsynth.degrade.apply_degradation` — blur, resize,
8-bit rounding and JPEG in Real-ESRGAN's order — on a ``(B, 3, H, W)`` tensor without leaving its device.
After the first resize every sample has its own size, so the batch travels as a *ragged batch*: one
zero-filled ``(B, 3, H_max, W_max)`` canvas holding sample ``i`` in its top-left ``h_i × w_i`` corner.

The steps, one module each:

* :mod:`~rawsynth.degrade.gpu.kernels` — the batch's blur kernels built on the device from their parameters
  (basicsr's closed forms, bit-identical for the Gaussian families, sinc within 3e-7);
* :mod:`~rawsynth.degrade.gpu.blur` — per-sample blur, reflect-101 borders, grouped ``conv2d`` or FFT;
* :mod:`~rawsynth.degrade.gpu.resize` — per-sample ``F.interpolate`` by sparse taps (gathers), ``area`` by
  ATen's pooling;
* 8-bit rounding: ``clamp(round(255·x), 0, 255)`` (round half to even) where the CPU chain rounds;
* :mod:`~rawsynth.degrade.gpu.jpeg` — one call per JPEG stage: the batched tensor JPEG
  (:mod:`~rawsynth.degrade.gpu.tensor_jpeg`, libjpeg's 4:2:0 path in tensor maths, the default on CUDA),
  torchvision's libjpeg (the shards' codec, the default on CPU tensors) or nvJPEG;
* :mod:`~rawsynth.degrade.gpu.chain` — the chain itself.

Matmuls, convolutions and FFTs run in true float32 (TF32 is switched off for the call), so on the CPU the
result differs from :func:`~rawsynth.degrade.apply_degradation` only where float rounding flips an 8-bit
rounding (the tests bound it). Every public name of the former single module ``rawsynth/degrade/gpu.py`` is
importable from here.
"""

from __future__ import annotations

from ._common import Ragged as _Ragged
from ._common import precision_knobs as _precision_knobs
from ._common import quantize as _quantize
from ._common import to_float as _to_float
from ._common import true_fp32 as _true_fp32
from .blur import BLUR_METHODS, FFT_MIN_KERNEL, blur_batch, blur_method
from .chain import degrade_batch_gpu
from .jpeg import JPEG_CODECS
from .jpeg import bytes_to_host as _bytes_to_host
from .jpeg import jpeg_u8 as _jpeg_u8
from .kernels import KERNEL_TOL, build_kernels
from .resize import resize_batch, resize_weights
from .tensor_jpeg import jpeg_tensor

__all__ = ["degrade_batch_gpu", "blur_batch", "resize_batch", "resize_weights", "blur_method", "FFT_MIN_KERNEL",
           "BLUR_METHODS", "JPEG_CODECS", "build_kernels", "KERNEL_TOL", "jpeg_tensor"]
