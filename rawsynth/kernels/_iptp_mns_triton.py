"""Triton kernel of the fused IPTP + MNS (imported lazily by :mod:`rawsynth.kernels.iptp_mns`; needs ``triton``).

This module is loaded twice at most: once compiled (CUDA) and once under Triton's interpreter (CPU tensors), so it
imports nothing from rawsynth and keeps every helper a ``@triton.jit`` function.

Every float operation mirrors one torch operation of the reference, in the same order, rounded once (launches
disable FP contraction), so the kernel reproduces the reference's bits wherever both evaluate the same function:
the 8-bit LUT, the colour matrix, the white balance, the highlight mask, the mosaic and the quantisation. The
float-input transfer curve (inverse smoothstep and ``x ** 2.2``) uses Cephes-style polynomials for ``asin``/``sin``
and ``exp2(2.2·log2 x)`` (libdevice is not available to the interpreter), within ~1e-6 of torch's.
"""

# ruff: noqa: N803, N806  (Triton's convention: constexpr kernel arguments are upper case)


import triton
import triton.language as tl
from triton.language.extra.cuda import libdevice

#: Columns of the per-sample float table (B × K float32).
P_CCM = 0  # 9 entries: rgb2cam row-major
P_GAIN = 9  # 3 entries: the inverse white-balance gains g = (1/red, 1, 1/blue) / rgb_gain
P_SHOT = 12
P_READ = 13
P_BLACK = 14
P_WHITE = 15
N_FLOAT = 16
#: Int64 columns of the per-sample int table: the noise seed and the pattern code (2 bits per 2×2 position).
I_SEED = tl.constexpr(0)
I_PATTERN = tl.constexpr(1)
N_INT = 2
#: The one parameter buffer the wrapper builds per batch: ``(B, ROW)`` int64 whose first ``N_FLOAT // 2``
#: columns hold the ``N_FLOAT`` float32 entries (read through a float32 view: row stride ``2·ROW`` floats) and
#: whose columns ``INT_COL + I_*`` hold the ints. One host buffer, one copy to the device.
INT_COL = tl.constexpr(N_FLOAT // 2)
ROW = tl.constexpr(N_FLOAT // 2 + N_INT)

_MAGIC = 6755399441055744.0  # 1.5 · 2**52: (x + M) − M rounds a float64 |x| < 2**51 half to even


@triton.jit
def _uniform(word):
    """Triton's ``uint_to_uniform_float`` for uint32 words: ``[0, 1)`` float32."""
    i = word.to(tl.int32, bitcast=True)
    return tl.where(i < 0, ~i, i) * 4.6566127342e-10


@triton.jit
def _philox_words(seed, offset):
    """Philox4x32-10 with key ``(seed_lo, seed_hi)`` and counter ``(offset, 0, 0, 0)``: four uint32 words."""
    seed = seed.to(tl.uint64)
    k0 = (seed & 0xFFFFFFFF).to(tl.uint32)
    k1 = ((seed >> 32) & 0xFFFFFFFF).to(tl.uint32)
    c0 = offset.to(tl.uint32)
    c1 = c0 * 0
    c2 = c1
    c3 = c1
    for _ in tl.static_range(10):
        a0 = c0
        a2 = c2
        c0 = tl.math.umulhi(0xCD9E8D57, a2) ^ c1 ^ k0
        c2 = tl.math.umulhi(0xD2511F53, a0) ^ c3 ^ k1
        c1 = tl.mul(0xCD9E8D57, a2, sanitize_overflow=False)
        c3 = tl.mul(0xD2511F53, a0, sanitize_overflow=False)
        k0 = tl.add(k0, 0x9E3779B9, sanitize_overflow=False)
        k1 = tl.add(k1, 0xBB67AE85, sanitize_overflow=False)
    return c0, c1, c2, c3


@triton.jit
def _randn4x_fast(seed, offset):
    """The same Philox words and Box–Muller pairs as :func:`_randn4x`, with the hardware approximations
    (``lg2.approx``, ``sin.approx``/``cos.approx``, ``sqrt.approx``; compiled only, needs libdevice): the same
    distribution to ~1e-6 relative per value, not the same bits."""
    c0, c1, c2, c3 = _philox_words(seed, offset)
    u1 = tl.maximum(1.0e-7, _uniform(c0))
    u3 = tl.maximum(1.0e-7, _uniform(c2))
    th = 6.283185307179586 * _uniform(c1)
    th2 = 6.283185307179586 * _uniform(c3)
    r = tl.sqrt(-1.3862943611198906 * libdevice.fast_log2f(u1))  # -2 ln u = -2 ln2 · log2 u
    r2 = tl.sqrt(-1.3862943611198906 * libdevice.fast_log2f(u3))
    return (r * libdevice.fast_cosf(th), r * libdevice.fast_sinf(th), r2 * libdevice.fast_cosf(th2),
            r2 * libdevice.fast_sinf(th2))


@triton.jit
def _randn4x(seed, offset):
    """``tl.randn4x(seed, offset)`` for int32 offsets, written out with builtins only: Philox4x32-10 with key
    ``(seed_lo, seed_hi)`` and counter ``(offset, 0, 0, 0)``, its four words to uniforms, two Box–Muller pairs.
    Written out so that the same function runs compiled and under the interpreter (whose copies of
    ``triton.language.random`` cannot serve both); bit-identical to ``tl.randn4x`` compiled."""
    c0, c1, c2, c3 = _philox_words(seed, offset)
    u1 = _uniform(c0)
    u2 = _uniform(c1)
    u3 = _uniform(c2)
    u4 = _uniform(c3)
    u1 = tl.maximum(1.0e-7, u1)
    th = 6.283185307179586 * u2
    r = tl.sqrt(-2.0 * tl.log(u1))
    u3 = tl.maximum(1.0e-7, u3)
    th2 = 6.283185307179586 * u4
    r2 = tl.sqrt(-2.0 * tl.log(u3))
    return r * tl.cos(th), r * tl.sin(th), r2 * tl.cos(th2), r2 * tl.sin(th2)


@triton.jit
def _store4(out_ptr, offs, inside, n0, n1, n2, n3):
    """``out[4·i + k] = n_k[i]`` (the test hooks' layout)."""
    tl.store(out_ptr + 4 * offs, n0, mask=inside)
    tl.store(out_ptr + 4 * offs + 1, n1, mask=inside)
    tl.store(out_ptr + 4 * offs + 2, n2, mask=inside)
    tl.store(out_ptr + 4 * offs + 3, n3, mask=inside)


@triton.jit
def _randn4x_kernel(seed, out_ptr, N, BLOCK: tl.constexpr):
    """Test hook: ``out[4·i + k] = _randn4x(seed, i)[k]`` for ``i < N``."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    n0, n1, n2, n3 = _randn4x(seed, offs)
    _store4(out_ptr, offs, offs < N, n0, n1, n2, n3)


@triton.jit
def _tl_randn4x_kernel(seed, out_ptr, N, BLOCK: tl.constexpr):
    """Test hook (compiled only): the same with ``tl.randn4x``, to check :func:`_randn4x` against Triton's."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    n0, n1, n2, n3 = tl.randn4x(seed, offs)
    _store4(out_ptr, offs, offs < N, n0, n1, n2, n3)


@triton.jit
def _asin(x):
    """asin on [-1, 1] (Cephes asinf: rel. error ~2e-7)."""
    a = tl.abs(x)
    big = a > 0.5
    zb = 0.5 * (1.0 - a)
    z = tl.where(big, zb, a * a)
    s = tl.where(big, tl.sqrt_rn(zb), a)
    p = 4.2163199048e-2 * z + 2.4181311049e-2
    p = p * z + 4.5470025998e-2
    p = p * z + 7.4953002686e-2
    p = p * z + 1.6666752422e-1
    r = s + s * (z * p)
    r = tl.where(big, 1.5707963267948966 - 2.0 * r, r)
    return tl.where(x < 0.0, -r, r)


@triton.jit
def _sin_small(t):
    """sin on [-π/4, π/4] (Cephes sinf polynomial)."""
    z = t * t
    p = -1.9515295891e-4 * z + 8.3321608736e-3
    p = p * z - 1.6666654611e-1
    return t + t * (z * p)


@triton.jit
def _srgb_to_linear(v):
    """Inverse tone then inverse gamma of float sRGB ``v`` (clipped to [0, 1])."""
    x = tl.minimum(tl.maximum(v, 0.0), 1.0)
    y = 0.5 - _sin_small(tl.math.div_rn(_asin(1.0 - 2.0 * x), 3.0))
    return tl.exp2(2.2 * tl.log2(tl.maximum(y, 1e-8)))


@triton.jit
def _load_linear(src_ptr, base, s_c, inside, lut_ptr, IS_U8: tl.constexpr):
    """Inverse tone + gamma of the three channels at ``src_ptr + base`` (8-bit: the 256-entry table)."""
    v0 = tl.load(src_ptr + base, mask=inside, other=0)
    v1 = tl.load(src_ptr + base + s_c, mask=inside, other=0)
    v2 = tl.load(src_ptr + base + 2 * s_c, mask=inside, other=0)
    if IS_U8:
        x0 = tl.load(lut_ptr + v0.to(tl.int32))
        x1 = tl.load(lut_ptr + v1.to(tl.int32))
        x2 = tl.load(lut_ptr + v2.to(tl.int32))
    else:
        x0 = _srgb_to_linear(v0.to(tl.float32))
        x1 = _srgb_to_linear(v1.to(tl.float32))
        x2 = _srgb_to_linear(v2.to(tl.float32))
    return x0, x1, x2


@triton.jit
def _camera(x0, x1, x2, m00, m01, m02, m10, m11, m12, m20, m21, m22, g0, g1, g2, inflection, fade):
    """Inverse CCM (``apply_matrix``: sum over j in order, rounded per operation), the highlight-safe inverse
    white balance (``inverse_white_balance``), then the clip to [0, 1]."""
    c0 = m00 * x0 + m01 * x1 + m02 * x2
    c1 = m10 * x0 + m11 * x1 + m12 * x2
    c2 = m20 * x0 + m21 * x1 + m22 * x2
    gray = tl.math.div_rn(c0 + c1 + c2, 3.0)
    mask = tl.math.div_rn(tl.maximum(gray - inflection, 0.0), fade)
    mask = mask * mask
    one_m = 1.0 - mask
    hi = gray > inflection
    f0 = tl.where(hi, tl.maximum(mask + one_m * g0, g0), g0)
    f1 = tl.where(hi, tl.maximum(mask + one_m * g1, g1), g1)
    f2 = tl.where(hi, tl.maximum(mask + one_m * g2, g2), g2)
    o0 = tl.minimum(tl.maximum(c0 * f0, 0.0), 1.0)
    o1 = tl.minimum(tl.maximum(c1 * f1, 0.0), 1.0)
    o2 = tl.minimum(tl.maximum(c2 * f2, 0.0), 1.0)
    return o0, o1, o2


@triton.jit
def _iptp_mns_kernel(src_ptr, hq_ptr, lut_ptr, fpar_ptr, ipar_ptr, dn_ptr, lin_ptr,
                     H, W, W4, s_b, s_c, s_h, s_w, t_b, t_c, t_h, t_w, inflection, fade,
                     IS_U8: tl.constexpr, WRITE_LINEAR: tl.constexpr, HQ_SOURCE: tl.constexpr,
                     NOISE: tl.constexpr, FAST_NOISE: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """One block of ``BLOCK_H × BLOCK_W`` pixels of sample ``program_id(2)``.

    ``fpar_ptr``/``ipar_ptr``: the same ``(B, ROW)`` int64 parameter buffer seen as float32 and as int64.
    Offsets inside a sample are int32 (the wrapper checks the largest one is below 2**31); the sample's base
    offset is int64. ``HQ_SOURCE``: the linear output is computed from ``hq_ptr`` (strides ``t_*``) instead of
    the mosaicked source (one launch for an LQ/HQ pair). ``NOISE`` false: no Philox, ``y = x`` (what zero λs
    give bit for bit). ``FAST_NOISE``: :func:`_randn4x_fast` instead of :func:`_randn4x`.
    """
    pid_w = tl.program_id(0)
    pid_h = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    rows = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    cols = pid_w * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    inside = (rows < H) & (cols < W)

    # the per-sample row of the parameter buffer
    fp = fpar_ptr + b * (2 * ROW)
    m00 = tl.load(fp + 0)
    m01 = tl.load(fp + 1)
    m02 = tl.load(fp + 2)
    m10 = tl.load(fp + 3)
    m11 = tl.load(fp + 4)
    m12 = tl.load(fp + 5)
    m20 = tl.load(fp + 6)
    m21 = tl.load(fp + 7)
    m22 = tl.load(fp + 8)
    g0 = tl.load(fp + 9)
    g1 = tl.load(fp + 10)
    g2 = tl.load(fp + 11)
    shot = tl.load(fp + 12)
    read = tl.load(fp + 13)
    black = tl.load(fp + 14).to(tl.float64)
    white = tl.load(fp + 15).to(tl.float64)
    ip = ipar_ptr + b * ROW + INT_COL
    seed = tl.load(ip + I_SEED)
    code = tl.load(ip + I_PATTERN).to(tl.int32)

    # one read of the sRGB pixel (3 channels), IPTP to the camera's linear RGB
    x0, x1, x2 = _load_linear(src_ptr + b * s_b, rows * s_h + cols * s_w, s_c, inside, lut_ptr, IS_U8)
    o0, o1, o2 = _camera(x0, x1, x2, m00, m01, m02, m10, m11, m12, m20, m21, m22, g0, g1, g2, inflection, fade)

    # mosaic: colour index of (row, col) from the 2-bit-per-position pattern code
    shift = 2 * (2 * (rows & 1) + (cols & 1))
    ci = (code >> shift) & 3
    x = tl.where(ci == 0, o0, tl.where(ci == 1, o1, o2))

    pix = rows * W + cols
    if NOISE:
        # heteroscedastic noise, counter-based: Philox keyed by the sample seed; one Philox call gives the four
        # normals of a quad of pixels, pixel (row, col) taking normal col % 4 of counter row · W4 + col // 4
        QW: tl.constexpr = BLOCK_W // 4
        qcols = pid_w * QW + tl.arange(0, QW)[None, :]
        if FAST_NOISE:
            n0, n1, n2, n3 = _randn4x_fast(seed, rows * W4 + qcols)
        else:
            n0, n1, n2, n3 = _randn4x(seed, rows * W4 + qcols)
        n = tl.reshape(tl.join(tl.join(n0, n2), tl.join(n1, n3)), [BLOCK_H, BLOCK_W])
        std = tl.sqrt_rn(tl.maximum(shot * x + read, 0.0))
        y = x + std * n
    else:
        y = x

    # quantise (float64, round half to even, clip to [0, white]); uint16 bits stored through int16
    d = y.to(tl.float64) * (white - black) + black
    d = (d + 6755399441055744.0) - 6755399441055744.0
    d = tl.minimum(tl.maximum(d, 0.0), white)
    hw = H * W
    tl.store(dn_ptr + b * hw + pix, d.to(tl.int32).to(tl.int16), mask=inside)
    if WRITE_LINEAR:
        if HQ_SOURCE:
            h0, h1, h2 = _load_linear(hq_ptr + b * t_b, rows * t_h + cols * t_w, t_c, inside, lut_ptr, IS_U8)
            o0, o1, o2 = _camera(h0, h1, h2, m00, m01, m02, m10, m11, m12, m20, m21, m22, g0, g1, g2,
                                 inflection, fade)
        lo = lin_ptr + b * 3 * hw + pix
        tl.store(lo, o0, mask=inside)
        tl.store(lo + hw, o1, mask=inside)
        tl.store(lo + 2 * hw, o2, mask=inside)
