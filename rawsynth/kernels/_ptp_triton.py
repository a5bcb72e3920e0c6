"""Triton kernels of the fused PTP (forward ISP) and its backward (imported lazily by :mod:`rawsynth.kernels.ptp`).

Loaded compiled (CUDA) or as a separate copy under Triton's interpreter (CPU tensors); imports nothing from
rawsynth. Per-sample table ``(B, 12)`` float32: ``cam2rgb`` row-major (9), then the white-balance gains
``rgb_gain · (red_gain, 1, blue_gain)`` (3). Tensors are contiguous ``(B, 3, H, W)`` float32.

``x ** (1/2.2)`` is ``exp2(log2(x) / 2.2)`` (libdevice is not available to the interpreter): within ~1e-6 of torch.
"""

# ruff: noqa: N803  (Triton's convention: constexpr kernel arguments are upper case)


import triton
import triton.language as tl

N_PAR = 12
EPS = 1e-8
INV_GAMMA = 1.0 / 2.2


@triton.jit
def _load_params(pp):
    return (tl.load(pp + 0), tl.load(pp + 1), tl.load(pp + 2), tl.load(pp + 3), tl.load(pp + 4), tl.load(pp + 5),
            tl.load(pp + 6), tl.load(pp + 7), tl.load(pp + 8), tl.load(pp + 9), tl.load(pp + 10), tl.load(pp + 11))


@triton.jit
def _clip01(x):
    return tl.minimum(tl.maximum(x, 0.0), 1.0)


@triton.jit
def _load_rgb(lin_ptr, base, HW, inside):
    """The three channel planes of a block of linear pixels (``base`` = sample offset + pixel offsets)."""
    x0 = tl.load(lin_ptr + base, mask=inside, other=0.0)
    x1 = tl.load(lin_ptr + base + HW, mask=inside, other=0.0)
    x2 = tl.load(lin_ptr + base + 2 * HW, mask=inside, other=0.0)
    return x0, x1, x2


@triton.jit
def _ptp_fwd_kernel(lin_ptr, par_ptr, out_ptr, HW, eps, inv_gamma, BLOCK: tl.constexpr):
    b = tl.program_id(1).to(tl.int64)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < HW
    m00, m01, m02, m10, m11, m12, m20, m21, m22, k0, k1, k2 = _load_params(par_ptr + b * 12)
    base = b * 3 * HW + offs
    x0, x1, x2 = _load_rgb(lin_ptr, base, HW, inside)
    w0 = _clip01(x0 * k0)
    w1 = _clip01(x1 * k1)
    w2 = _clip01(x2 * k2)
    for i in tl.static_range(3):
        if i == 0:
            u = m00 * w0 + m01 * w1 + m02 * w2
        elif i == 1:
            u = m10 * w0 + m11 * w1 + m12 * w2
        else:
            u = m20 * w0 + m21 * w1 + m22 * w2
        c = tl.maximum(_clip01(u), eps)
        g = tl.exp2(tl.log2(c) * inv_gamma)
        g2 = g * g
        s = 3.0 * g2 - 2.0 * (g2 * g)
        tl.store(out_ptr + base + i * HW, s, mask=inside)


@triton.jit
def _ptp_bwd_kernel(lin_ptr, par_ptr, gout_ptr, gin_ptr, HW, eps, inv_gamma, BLOCK: tl.constexpr):
    b = tl.program_id(1).to(tl.int64)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < HW
    m00, m01, m02, m10, m11, m12, m20, m21, m22, k0, k1, k2 = _load_params(par_ptr + b * 12)
    base = b * 3 * HW + offs
    x0, x1, x2 = _load_rgb(lin_ptr, base, HW, inside)
    v0 = x0 * k0
    v1 = x1 * k1
    v2 = x2 * k2
    w0 = _clip01(v0)
    w1 = _clip01(v1)
    w2 = _clip01(v2)
    gw0 = tl.full([BLOCK], 0.0, tl.float32)
    gw1 = tl.full([BLOCK], 0.0, tl.float32)
    gw2 = tl.full([BLOCK], 0.0, tl.float32)
    for i in tl.static_range(3):
        if i == 0:
            u = m00 * w0 + m01 * w1 + m02 * w2
            r0 = m00
            r1 = m01
            r2 = m02
        elif i == 1:
            u = m10 * w0 + m11 * w1 + m12 * w2
            r0 = m10
            r1 = m11
            r2 = m12
        else:
            u = m20 * w0 + m21 * w1 + m22 * w2
            r0 = m20
            r1 = m21
            r2 = m22
        cu = _clip01(u)
        c = tl.maximum(cu, eps)
        lc = tl.log2(c)
        g = tl.exp2(lc * inv_gamma)
        go = tl.load(gout_ptr + base + i * HW, mask=inside, other=0.0)
        # tone 3g² − 2g³ → 6g − 6g²; gamma c^p → p·c^(p−1); clamp_min(eps) and clamp(0, 1) pass where inside
        gg = go * (6.0 * g - 6.0 * (g * g))
        gc = gg * (inv_gamma * tl.exp2(lc * (inv_gamma - 1.0)))
        gu = tl.where((cu >= eps) & (u >= 0.0) & (u <= 1.0), gc, 0.0)
        gw0 += r0 * gu
        gw1 += r1 * gu
        gw2 += r2 * gu
    g0 = tl.where((v0 >= 0.0) & (v0 <= 1.0), gw0 * k0, 0.0)
    g1 = tl.where((v1 >= 0.0) & (v1 <= 1.0), gw1 * k1, 0.0)
    g2 = tl.where((v2 >= 0.0) & (v2 <= 1.0), gw2 * k2, 0.0)
    tl.store(gin_ptr + base, g0, mask=inside)
    tl.store(gin_ptr + base + HW, g1, mask=inside)
    tl.store(gin_ptr + base + 2 * HW, g2, mask=inside)
