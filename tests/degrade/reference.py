"""An independent re-statement of Real-ESRGAN's chain (``RealESRNetModel.feed_data`` without noise) for checks.

Kernels are rebuilt the way ``RealESRGANDataset.__getitem__`` builds them (basicsr constructors, ``np.pad`` to
21, ``torch.FloatTensor``, a 21×21 pulse when the final sinc is off); blur is basicsr's torch ``filter2D``;
resizes are Real-ESRGAN's exact ``F.interpolate`` calls (the resize back uses ``F.interpolate`` too); JPEG is
OpenCV's libjpeg on the image clamped and rounded with torch.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from rawsynth.degrade import DegradationParams, FinalOrder, KernelParams, KernelType


def kernel21(kp: KernelParams | None, pad: int = 21) -> torch.Tensor:
    """``(1, pad, pad)`` float32 kernel as Real-ESRGAN's dataset makes it (pulse for ``None``)."""
    from rawsynth.compat.basicsr import degradations

    deg = degradations()
    if kp is None:
        k = np.zeros((pad, pad))
        k[pad // 2, pad // 2] = 1
    elif kp.kind is KernelType.SINC:
        k = deg.circular_lowpass_kernel(kp.omega_c, kp.size, pad_to=pad)
    else:
        iso = kp.kind in (KernelType.ISO, KernelType.GENERALIZED_ISO, KernelType.PLATEAU_ISO)
        if kp.kind in (KernelType.ISO, KernelType.ANISO):
            k = deg.bivariate_Gaussian(kp.size, kp.sigma_x, kp.sigma_y, kp.theta, isotropic=iso)
        elif kp.kind in (KernelType.GENERALIZED_ISO, KernelType.GENERALIZED_ANISO):
            k = deg.bivariate_generalized_Gaussian(kp.size, kp.sigma_x, kp.sigma_y, kp.theta, kp.beta, isotropic=iso)
        else:
            k = deg.bivariate_plateau(kp.size, kp.sigma_x, kp.sigma_y, kp.theta, kp.beta, isotropic=iso)
        p = (pad - kp.size) // 2
        k = np.pad(k, ((p, p), (p, p)))
    return torch.FloatTensor(k)[None]


def ref_blur(x: torch.Tensor, kp: KernelParams | None) -> torch.Tensor:
    from rawsynth.compat.basicsr import filter2D

    return filter2D(x, kernel21(kp))


def ref_jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    u8 = torch.clamp((torch.clamp(x, 0, 1) * 255.0).round(), 0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(u8[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok
    dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(dec)).permute(2, 0, 1)[None].float() / 255.0


def reference_degradation(img: np.ndarray, p: DegradationParams) -> np.ndarray:
    """Real-ESRGAN's chain (noise removed) on an ``(H, W, 3)`` float32 image, as ``(h, w, 3)`` float32."""
    gt = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].contiguous()
    ori_h, ori_w = gt.shape[2:]
    scale = p.scale
    out = ref_blur(gt, p.first.kernel) if p.first.kernel is not None else gt
    out = F.interpolate(out, scale_factor=p.first.resize_scale, mode=p.first.resize_mode.value)
    out = ref_jpeg(out, p.first.jpeg_quality)
    if p.second.kernel is not None:
        out = ref_blur(out, p.second.kernel)
    f = p.second.resize_scale
    out = F.interpolate(out, size=(int(ori_h / scale * f), int(ori_w / scale * f)), mode=p.second.resize_mode.value)
    mode = p.final.resize_mode.value
    if p.final.order is FinalOrder.RESIZE_SINC_JPEG:
        out = F.interpolate(out, size=(ori_h // scale, ori_w // scale), mode=mode)
        out = ref_blur(out, p.final.sinc)
        out = ref_jpeg(out, p.final.jpeg_quality)
    else:
        out = ref_jpeg(out, p.final.jpeg_quality)
        out = F.interpolate(out, size=(ori_h // scale, ori_w // scale), mode=mode)
        out = ref_blur(out, p.final.sinc)
    lq = torch.clamp((out * 255.0).round(), 0, 255) / 255.0
    if p.resize_back:
        back = F.interpolate(lq, size=(ori_h, ori_w), mode=p.resize_back_mode.value)
        lq = torch.clamp((back * 255.0).round(), 0, 255) / 255.0
    return lq[0].permute(1, 2, 0).numpy()
