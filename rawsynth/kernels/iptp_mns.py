"""Fused IPTP + MNS: sRGB → (noisy RAW mosaic in DN, optionally the linear HQ) in one pass.

The same operations, in the same order, as the CPU generator (:func:`rawsynth.pipeline.synthesize`): inverse tone →
inverse gamma (a 256-entry table for 8-bit input) → inverse CCM → highlight-safe inverse white balance → clip →
mosaic for the sample's Bayer pattern → heteroscedastic noise ``N(x, λ_shot·x + λ_read)`` → quantise to uint16 DN.

Two implementations behind :func:`iptp_mns`:

* :func:`iptp_mns_reference`, the composition of the library's torch functions (any device; the CPU path);
* the Triton kernel (``_iptp_mns_triton``): one read of each sRGB pixel, one write of its DN (and of the linear
  RGB when asked), per-sample parameters from a small ``B × 16`` table, the pattern as a per-sample int and the
  noise from Triton's counter-based Philox (``tl.randn4x``) keyed by the sample seed: pixel ``(y, x)`` takes
  normal ``x % 4`` of counter ``y · ceil(W / 4) + x // 4``.

Both give bit-identical DN and linear values for 8-bit input without noise (they evaluate the same float
operations); float input differs by ~1e-6 in the transfer curve; the noise fields are different draws of the
same distribution (torch's generator vs Philox), so the noisy DN agree in distribution, not in bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from .._checks import check_bchw, check_even, per_sample
from ..errors import ShapeError
from ..isp import apply_matrix, inverse_gamma, inverse_tone, inverse_white_balance
from ..isp.iptp import HIGHLIGHT_INFLECTION
from ..isp.params import ISPBatch, ISPParams, as_isp_batch
from ..mns import NoiseParams, Pattern, SensorParams, add_noise, as_patterns, mosaic, quantize
from ._common import Backend, kernel_module, launch, resolve_backend

__all__ = ["iptp_mns", "iptp_mns_reference", "srgb_lut", "pattern_code"]

_U64 = 2**64


def _lut_f64() -> torch.Tensor:
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    return inverse_gamma(inverse_tone(levels)).float()


_LUT = _lut_f64()
_LUT_BY_DEVICE: dict[torch.device, torch.Tensor] = {}


def srgb_lut(device=None) -> torch.Tensor:
    """The 8-bit inverse tone + inverse gamma table: ``(256,)`` float32, entry ``k`` is
    ``inverse_gamma(inverse_tone(k / 255))`` computed in float64 and rounded once (the CPU generator's table).

    One copy per device, uploaded once and cached: treat the returned tensor as read-only."""
    dev = torch.device("cpu") if device is None else torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    lut = _LUT_BY_DEVICE.get(dev)
    if lut is None:
        lut = _LUT_BY_DEVICE[dev] = _LUT if dev.type == "cpu" else _LUT.to(dev)
    return lut


@functools.cache
def _pattern_code(value: str) -> int:
    return sum(c << (2 * i) for i, c in enumerate(Pattern(value).cfa_bytes))


def pattern_code(pattern: Pattern | str) -> int:
    """The pattern as an int: 2 bits per 2×2 position (row-major), the colour index (0 R, 1 G, 2 B) there.

    ``RGGB`` → ``0 | 1 << 2 | 1 << 4 | 2 << 6``; the kernel reads position ``(y % 2, x % 2)`` as
    ``(code >> 2·(2·(y % 2) + x % 2)) & 3``. (Cached per pattern.)
    """
    return _pattern_code(pattern.value if isinstance(pattern, Pattern) else str(pattern))



def _as_list(values, b: int, cls, name: str) -> list:
    out = per_sample(list(values) if isinstance(values, (list, tuple)) else values, b, name)
    if not all(isinstance(v, cls) for v in out):
        raise ShapeError(f"{name} must be a {cls.__name__} or a sequence of {b} of them")
    return out


def _as_seeds(seeds, b: int) -> list[int]:
    """Per-sample seeds as ints in ``[0, 2**64)`` (negative int64 values are taken as their unsigned bits)."""
    if isinstance(seeds, torch.Tensor):
        if seeds.dtype.is_floating_point or seeds.dtype.is_complex or seeds.ndim != 1:
            raise ShapeError(f"seeds must be a 1-D integer tensor, got {seeds.dtype} {tuple(seeds.shape)}")
        seeds = seeds.tolist()
    if isinstance(seeds, (int, bool)) or not isinstance(seeds, Sequence):
        raise ShapeError(f"seeds must be a sequence of {b} ints or a 1-D integer tensor, got {type(seeds).__name__}")
    seeds = list(seeds)
    if len(seeds) != b:
        raise ShapeError(f"seeds: got {len(seeds)} values for a batch of {b}")
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or not -(2**63) <= s < _U64:
            raise ShapeError(f"seeds must be ints in [-2**63, 2**64), got {s!r}")
        out.append(s % _U64)
    return out


def _check_srgb(srgb: torch.Tensor) -> None:
    check_bchw(srgb, "srgb", channels=3, floating=False)
    if srgb.dtype != torch.uint8 and not srgb.is_floating_point():
        raise ShapeError(f"srgb must be uint8 or floating point in [0, 1], got {srgb.dtype}")
    check_even(srgb, "srgb")


def _linear(srgb: torch.Tensor, p: ISPBatch) -> torch.Tensor:
    """IPTP as the generator does it: table lookup for uint8, the float maths otherwise. ``(B, 3, H, W)`` float32."""
    if srgb.dtype == torch.uint8:
        x = srgb_lut(srgb.device)[srgb.long()]
    else:
        x = inverse_gamma(inverse_tone(srgb.float()))
    x = apply_matrix(x, p.rgb2cam)
    return inverse_white_balance(x, p).clamp(0.0, 1.0)


def iptp_mns_reference(srgb: torch.Tensor, isp: ISPBatch | ISPParams | Sequence[ISPParams],
                       patterns: Sequence[Pattern | str] | Pattern | str,
                       noise: Sequence[NoiseParams] | NoiseParams,
                       sensor: Sequence[SensorParams] | SensorParams,
                       seeds: Sequence[int] | torch.Tensor,
                       return_linear: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The torch reference of :func:`iptp_mns`: the library's own functions composed (any device).

    Per sample ``b`` the noise field is ``torch.randn`` from a ``torch.Generator`` on ``srgb``'s device seeded
    with ``seeds[b]``, so with ``seeds[b] = derive_seed(seed, key, "noise-field")`` and 8-bit input this is
    byte for byte what :func:`rawsynth.pipeline.synthesize` makes (``ddnet`` mode) on the CPU.

    Args and returns: as :func:`iptp_mns`.
    """
    _check_srgb(srgb)
    b = srgb.shape[0]
    pats = as_patterns(patterns, b, "patterns")
    noises = _as_list(noise, b, NoiseParams, "noise")
    sensors = _as_list(sensor, b, SensorParams, "sensor")
    seed_list = _as_seeds(seeds, b)
    p = as_isp_batch(isp, srgb.new_empty((b, 0), dtype=torch.float32))
    with torch.no_grad():
        lin = _linear(srgb, p)
        clean = mosaic(lin, pats)
        noisy = torch.empty_like(clean)
        for i in range(b):
            g = torch.Generator(device=srgb.device)
            g.manual_seed(seed_list[i])
            noisy[i:i + 1] = add_noise(clean[i:i + 1], noises[i], g)
        dn = quantize(noisy, sensors)
    return dn, (lin if return_linear else None)


#: Layout of the per-batch parameter buffer (mirrors ``_iptp_mns_triton``): ``(B, _ROW)`` int64, the first
#: ``_INT_COL`` columns hold 16 float32 (ccm 9, inverse gains 3, λ_shot, λ_read, black, white), then seed, pattern.
_N_FLOAT = 16
_INT_COL = _N_FLOAT // 2
_ROW = _INT_COL + 2


def _float_table_host(isp: Sequence[ISPParams], noises, sensors) -> np.ndarray:
    """``(B, 16)`` float32 on the host, each value rounded as the torch reference rounds it (float64 → float32
    once, then float32 operations)."""
    f32 = np.float32
    ccm = np.asarray([p.rgb2cam for p in isp], dtype=np.float64).astype(f32).reshape(len(isp), 9)
    red = np.asarray([p.red_gain for p in isp], dtype=np.float64).astype(f32)
    blue = np.asarray([p.blue_gain for p in isp], dtype=np.float64).astype(f32)
    rgb = np.asarray([p.rgb_gain for p in isp], dtype=np.float64).astype(f32)
    one = np.ones_like(red)
    g = np.stack([one / red, one, one / blue], axis=1) / rgb[:, None]  # as inverse_white_balance
    per = np.asarray([[n.lambda_shot, n.lambda_read, s.black_level, s.white_level] for n, s in zip(noises, sensors)],
                     dtype=np.float64).astype(f32)
    return np.concatenate([ccm, g, per], axis=1)


def _param_buffer(srgb: torch.Tensor, isp, pats, noises, sensors, seeds) -> torch.Tensor:
    """The per-sample parameters of one batch in ONE ``(B, _ROW)`` int64 device tensor (layout above).

    Built on the host (pinned memory when ``srgb`` is on CUDA) and copied with ``non_blocking=True``: no host
    sync. An :class:`ISPBatch` argument (already tensors, maybe on the device) has its float part computed on its
    device as the torch reference does and written into the device buffer (no sync either)."""
    b = srgb.shape[0]
    dev = srgb.device
    host = torch.empty((b, _ROW), dtype=torch.int64, pin_memory=dev.type == "cuda" and torch.cuda.is_available())
    h = host.numpy()
    h[:, _INT_COL] = [s - _U64 if s >= 2**63 else s for s in seeds]
    h[:, _INT_COL + 1] = [pattern_code(q) for q in pats]
    hf = h.view(np.float32)  # (B, 2·_ROW): the float view of the same bytes
    isp_list = None
    if isinstance(isp, ISPParams):
        isp_list = [isp] * b
    elif isinstance(isp, (list, tuple)) and all(isinstance(p, ISPParams) for p in isp):
        if len(isp) != b:
            raise ShapeError(f"got {len(isp)} ISPParams for a batch of {b}")
        isp_list = list(isp)
    if isp_list is not None:
        hf[:, :_N_FLOAT] = _float_table_host(isp_list, noises, sensors)
        return host.to(dev, non_blocking=True) if dev.type != "cpu" else host
    p = as_isp_batch(isp, srgb.new_empty((b, 0), dtype=torch.float32))
    per = np.asarray([[n.lambda_shot, n.lambda_read, s.black_level, s.white_level] for n, s in zip(noises, sensors)],
                     dtype=np.float64).astype(np.float32)
    hf[:, 12:_N_FLOAT] = per
    out = host.to(dev, non_blocking=True) if dev.type != "cpu" else host
    one = torch.ones_like(p.red_gain)
    g = torch.stack([1.0 / p.red_gain, one, 1.0 / p.blue_gain], dim=1) / p.rgb_gain[:, None]
    out.view(torch.float32)[:, :12] = torch.cat([p.rgb2cam.reshape(b, 9), g], dim=1).detach()
    return out


def _tables(srgb: torch.Tensor, isp, pats, noises, sensors, seeds) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-sample tables as ``(B, 16)`` float32 and ``(B, 2)`` int64 views of :func:`_param_buffer`."""
    buf = _param_buffer(srgb, isp, pats, noises, sensors, seeds)
    return buf.view(torch.float32)[:, :_N_FLOAT], buf[:, _INT_COL:]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _block(n: int, cap: int) -> int:
    return min(cap, 1 << max(n - 1, 0).bit_length())


def _iptp_mns_triton(srgb: torch.Tensor, isp, patterns, noise, sensor, seeds, return_linear: bool = False,
                     hq: torch.Tensor | None = None, fast_noise: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The Triton kernel behind :func:`iptp_mns` (compiled on CUDA, interpreted on CPU). Same arguments."""
    run, dn, lin = _plan(srgb, isp, patterns, noise, sensor, seeds, return_linear, hq, fast_noise)
    run()
    return dn, lin


def _max_offset(t: torch.Tensor) -> int:
    """The largest element offset inside one sample of a ``(B, C, H, W)`` tensor (strides are >= 0)."""
    return sum((n - 1) * st for n, st in zip(t.shape[1:], t.stride()[1:]))


def _check_kernel_limits(b: int, h: int, w: int, bh: int, *sources: torch.Tensor) -> None:
    """The kernel's index arithmetic: in-sample offsets are int32 (source elements, ``3·H·W`` for the linear
    output, the Philox counter ``< H·W/4``), the sample offset int64; CUDA grid dimensions y and z are below
    2**16. Raise before launching anything that would overflow."""
    biggest = max([3 * h * w] + [_max_offset(t) + 1 for t in sources])
    if biggest >= 2**31:
        raise ShapeError(f"iptp_mns's kernel indexes a sample with int32 offsets: {b}x{h}x{w} needs offsets up to "
                         f"{biggest} >= 2**31; split the image into tiles")
    if b >= 2**16 or _cdiv(h, bh) >= 2**16:
        raise ShapeError(f"iptp_mns's kernel grid is limited to 65535 samples and {65535 * bh} rows, got {b}x{h}; "
                         "split the batch")


def _plan(srgb: torch.Tensor, isp, patterns, noise, sensor, seeds, return_linear: bool,
          hq: torch.Tensor | None = None, fast_noise: bool = False):
    """Check the arguments, build the parameter buffer and the outputs; return ``(run, raw_dn, linear)`` where
    ``run()`` launches the kernel alone (the benchmark times it apart from the table building)."""
    _check_srgb(srgb)
    b, _, h, w = srgb.shape
    if hq is not None:
        _check_srgb(hq)
        if hq.shape != srgb.shape or hq.device != srgb.device:
            raise ShapeError(f"hq must have srgb's shape and device, got {tuple(hq.shape)} on {hq.device} for "
                             f"{tuple(srgb.shape)} on {srgb.device}")
        return_linear = True
    pats = as_patterns(patterns, b, "patterns")
    noises = _as_list(noise, b, NoiseParams, "noise")
    sensors = _as_list(sensor, b, SensorParams, "sensor")
    buf = _param_buffer(srgb, isp, pats, noises, sensors, _as_seeds(seeds, b))
    if srgb.dtype != torch.uint8 and srgb.dtype != torch.float32:
        srgb = srgb.float()
    if hq is not None and hq.dtype != srgb.dtype:
        hq = hq.to(srgb.dtype)  # one transfer path (table or curve) for both
    bh, bw = _block(h, 4), max(_block(w, 256), 4)
    _check_kernel_limits(b, h, w, bh, srgb, *([] if hq is None else [hq]))
    dn = torch.empty((b, 1, h, w), dtype=torch.int16, device=srgb.device)
    lin = torch.empty((b, 3, h, w), dtype=torch.float32, device=srgb.device) if return_linear else None
    grid = (_cdiv(w, bw), _cdiv(h, bh), b)
    lut = srgb_lut(srgb.device)
    noisy = any(n.lambda_shot != 0.0 or n.lambda_read != 0.0 for n in noises)
    src2 = srgb if hq is None else hq

    def run() -> None:
        if b * h * w == 0:
            return
        k = kernel_module("_iptp_mns_triton", srgb.device)
        launch(k._iptp_mns_kernel, grid, srgb.device,
               srgb, src2, lut, buf.view(torch.float32), buf, dn, lin if lin is not None else dn,
               h, w, _cdiv(w, 4), *srgb.stride(), *src2.stride(), HIGHLIGHT_INFLECTION, 1.0 - HIGHLIGHT_INFLECTION,
               IS_U8=srgb.dtype == torch.uint8, WRITE_LINEAR=return_linear, HQ_SOURCE=hq is not None,
               NOISE=noisy, FAST_NOISE=bool(fast_noise) and srgb.device.type == "cuda", BLOCK_H=bh, BLOCK_W=bw)

    return run, dn.view(torch.uint16), lin


def iptp_mns(srgb: torch.Tensor, isp: ISPBatch | ISPParams | Sequence[ISPParams],
             patterns: Sequence[Pattern | str] | Pattern | str,
             noise: Sequence[NoiseParams] | NoiseParams,
             sensor: Sequence[SensorParams] | SensorParams,
             seeds: Sequence[int] | torch.Tensor,
             return_linear: bool = False,
             backend: Backend | str = "auto", *, hq: torch.Tensor | None = None,
             fast_noise: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """sRGB → noisy RAW mosaic in DN (and the linear HQ), a batch with per-sample parameters.

    Args:
        srgb: ``(B, 3, H, W)`` uint8 ``[0, 255]`` or float ``[0, 1]`` sRGB (float values outside are clipped; float
            input other than float32 is converted), ``H`` and ``W`` even, any memory layout.
        isp: per-sample ISP parameters (an :class:`~rawsynth.isp.ISPBatch`, one :class:`~rawsynth.isp.ISPParams`
            for all, or ``B`` of them).
        patterns: one Bayer pattern or ``B`` of them (mixed patterns in one batch are fine).
        noise: one :class:`~rawsynth.mns.NoiseParams` or ``B`` of them (zero λs: no noise).
        sensor: one :class:`~rawsynth.mns.SensorParams` or ``B`` of them.
        seeds: ``B`` ints in ``[-2**63, 2**64)`` (e.g. ``derive_seed(seed, key, "noise-field")``) or a 1-D integer
            tensor: the key of sample ``b``'s noise field. Same seed → same bytes (per backend and device).
        return_linear: also return the clean linear camera RGB (the HQ training target).
        backend: ``"auto"`` (Triton on CUDA tensors when available and ``RAWSYNTH_KERNELS`` is not ``0``, else
            torch), ``"torch"`` (:func:`iptp_mns_reference`) or ``"triton"`` (on a CPU tensor: Triton's interpreter).
        hq: optional second ``(B, 3, H, W)`` sRGB batch (same shape and device): the linear output is the clean
            IPTP of ``hq`` instead of ``srgb`` (implies ``return_linear``). An LQ/HQ training pair in one kernel
            launch: ``raw_dn`` from the degraded ``srgb``, ``linear`` from the clean ``hq`` (the linear image never
            depends on the noise, so this equals two calls).
        fast_noise: the compiled kernel draws its normals with the hardware approximations (``lg2.approx``,
            ``sin/cos.approx``) instead of the accurate functions ``tl.randn4x`` uses: fewer instructions per
            pixel, the same distribution, not ``tl.randn4x``'s bits. Only the compiled CUDA kernel reads it (the
            torch reference and Triton's interpreter keep the accurate maths).

    Returns:
        ``(raw_dn, linear)``: ``raw_dn`` ``(B, 1, H, W)`` ``torch.uint16`` DN in ``[0, white_level]``;
        ``linear`` ``(B, 3, H, W)`` float32 in ``[0, 1]`` or ``None``. On ``srgb``'s device.

    The torch and Triton backends agree exactly on the linear image and on the DN of 8-bit input without noise
    (within ~1e-6, resp. 1 DN at rounding ties, for float input); their noise fields are independent draws of the
    same distribution.

    Example:
        >>> import torch
        >>> from rawsynth.isp import fixed_isp_params
        >>> from rawsynth.mns import NoiseParams, SensorParams
        >>> from rawsynth.kernels import iptp_mns
        >>> srgb = torch.full((2, 3, 4, 4), 128, dtype=torch.uint8)
        >>> dn, lin = iptp_mns(srgb, fixed_isp_params(), ["RGGB", "GBRG"], NoiseParams(0, 0.0, 0.0),
        ...                    SensorParams(), [1, 2], return_linear=True)
        >>> dn.shape, dn.dtype, lin.shape
        (torch.Size([2, 1, 4, 4]), torch.uint16, torch.Size([2, 3, 4, 4]))
    """
    if not isinstance(srgb, torch.Tensor):
        raise ShapeError(f"srgb must be a torch.Tensor of shape (B, 3, H, W), got {type(srgb).__name__}")
    which = resolve_backend(backend, srgb.device)
    if which is Backend.TRITON:
        return _iptp_mns_triton(srgb, isp, patterns, noise, sensor, seeds, return_linear, hq, fast_noise)
    if which is Backend.TORCH:
        if hq is None:
            return iptp_mns_reference(srgb, isp, patterns, noise, sensor, seeds, return_linear)
        if not isinstance(hq, torch.Tensor) or hq.shape != srgb.shape or hq.device != srgb.device:
            raise ShapeError("hq must be a tensor with srgb's shape and device")
        dn, _ = iptp_mns_reference(srgb, isp, patterns, noise, sensor, seeds)
        _, lin = iptp_mns_reference(hq, isp, patterns, noise, sensor, seeds, return_linear=True)
        return dn, lin
    raise ShapeError(f"unhandled backend {which!r}")
