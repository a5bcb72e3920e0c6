"""The IPTP + MNS kernel's throughput variants and wrapper: one launch for an LQ/HQ pair, the compile-time
no-noise variant, the one per-batch parameter buffer, cached LUT and pattern codes, the int32 offset guards, and
the variants compiled for sm_90 (Hopper) on the CPU with Triton's own ``ptxas`` (no GPU needed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch

from rawsynth.errors import ShapeError
from rawsynth.isp import ISPBatch, sample_isp_params
from rawsynth.kernels import iptp_mns, iptp_mns_reference, pattern_code, srgb_lut
from rawsynth.mns import NoiseParams, Pattern, SensorParams

from .test_iptp_mns import PATTERNS, SENSORS, _batch, _isp

#: the module (the package re-exports a function of the same name)
kmod = sys.modules["rawsynth.kernels.iptp_mns"]

pytest.importorskip("triton")

NOISY = [NoiseParams(800.0, 2e-3, 1e-4), NoiseParams(100.0, 0.0, 0.0), NoiseParams(3200.0, 8e-3, 5e-4),
         NoiseParams(1600.0, 4e-3, 0.0)]
SEEDS = [11, 12, 2**63 + 3, 14]


def _lq_hq():
    hq = _batch()
    lq = hq.flip(-1).contiguous()  # a different image of the same shape
    return lq, hq


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_pair_in_one_launch_equals_two_calls(backend):
    lq, hq = _lq_hq()
    args = (_isp(4), PATTERNS, NOISY, SENSORS, SEEDS)
    dn2, lin2 = iptp_mns(lq, *args, backend=backend, hq=hq)
    dn, _ = iptp_mns(lq, *args, backend=backend)
    _, lin = iptp_mns(hq, *args, return_linear=True, backend=backend)
    assert torch.equal(dn2, dn) and torch.equal(lin2, lin)
    if backend == "triton":  # and the deterministic part agrees with the torch reference bit for bit
        _, lin_t = iptp_mns_reference(hq, _isp(4), PATTERNS, NOISY, SENSORS, SEEDS, return_linear=True)
        assert torch.equal(lin2, lin_t)


def test_noise_free_variant_and_zero_lambda_sample_in_a_noisy_batch_match_the_reference():
    """Sample 1 has zero λs: inside a noisy batch (the Philox variant) and alone (the compile-time no-noise
    variant) its DN are the reference's bytes."""
    srgb = _batch()
    args = (srgb, _isp(4), PATTERNS, NOISY, SENSORS, SEEDS)
    dn_k, _ = iptp_mns(*args, backend="triton")
    dn_t, _ = iptp_mns(*args, backend="torch")
    assert torch.equal(dn_k[1], dn_t[1])
    assert not torch.equal(dn_k[0], dn_t[0])  # the noisy samples are other draws
    quiet = [NOISY[1]] * 4
    dn_q, _ = iptp_mns(srgb, _isp(4), PATTERNS, quiet, SENSORS, SEEDS, backend="triton")
    assert torch.equal(dn_q, iptp_mns_reference(srgb, _isp(4), PATTERNS, quiet, SENSORS, SEEDS)[0])
    assert torch.equal(dn_q[1], dn_k[1])


def _reference_tables(isp, b):
    """The former two tables, built with torch ops from an ISPBatch (what the reference computes)."""
    p = ISPBatch.from_params(isp, b) if not isinstance(isp, ISPBatch) else isp
    one = torch.ones_like(p.red_gain)
    g = torch.stack([1.0 / p.red_gain, one, 1.0 / p.blue_gain], dim=1) / p.rgb_gain[:, None]
    per = torch.tensor([[n.lambda_shot, n.lambda_read, s.black_level, s.white_level] for n, s in zip(NOISY, SENSORS)],
                       dtype=torch.float32)
    ints = torch.tensor([[s - 2**64 if s >= 2**63 else s, pattern_code(q)] for s, q in zip(SEEDS, PATTERNS)])
    return torch.cat([p.rgb2cam.reshape(b, 9), g, per], dim=1), ints


@pytest.mark.parametrize("kind", ["list", "single", "batch"])
def test_parameter_buffer_is_one_tensor_with_the_reference_bits(kind):
    isp = {"list": _isp(4), "single": sample_isp_params(np.random.default_rng(7)),
           "batch": ISPBatch.from_params(_isp(4))}[kind]
    pats = [Pattern(p) for p in PATTERNS]
    buf = kmod._param_buffer(torch.empty((4, 3, 2, 2), dtype=torch.uint8), isp, pats, NOISY, SENSORS, SEEDS)
    assert buf.dtype == torch.int64 and buf.shape == (4, kmod._ROW) and buf.is_contiguous()
    f, i = kmod._tables(torch.empty((4, 3, 2, 2), dtype=torch.uint8), isp, pats, NOISY, SENSORS, SEEDS)
    assert i.data_ptr() == f.data_ptr() + 8 * kmod._INT_COL  # views of one buffer
    assert torch.equal(buf.view(torch.float32)[:, :16], f) and torch.equal(buf[:, kmod._INT_COL:], i)
    ref_f, ref_i = _reference_tables([isp] * 4 if kind == "single" else isp, 4)
    assert torch.equal(f, ref_f) and torch.equal(i, ref_i)


def test_lut_and_pattern_codes_are_cached(monkeypatch):
    assert srgb_lut() is srgb_lut("cpu") is srgb_lut(torch.device("cpu"))
    kmod._pattern_code.cache_clear()
    for _ in range(100):
        [pattern_code(p) for p in PATTERNS]
    assert kmod._pattern_code.cache_info().misses == 4
    assert pattern_code(Pattern.RGGB) == pattern_code("RGGB") == 0 | 1 << 2 | 1 << 4 | 2 << 6


def test_int32_offset_and_grid_guards_match_the_arithmetic():
    one = torch.zeros((1, 3, 1, 1), dtype=torch.uint8)
    args = (sample_isp_params(np.random.default_rng(0)), "RGGB", NOISY[0], SensorParams())
    # 3·H·W >= 2**31: the linear output's channel offsets would overflow int32 (no memory is allocated)
    big = one.expand(1, 3, 2**15, 2**15)
    with pytest.raises(ShapeError, match="int32"):
        iptp_mns(big, *args, [0], backend="triton")
    kmod._check_kernel_limits(1, 2**14, 2**15 - 2, 4)  # 3·H·W just below 2**31: admitted
    # a strided source whose own offsets pass 2**31 although H·W is small
    class Wide:  # a (1, 3, 2, 2) view whose channel stride is 2**30 (shape and strides are all the guard reads)
        shape = (1, 3, 2, 2)

        @staticmethod
        def stride():
            return (0, 2**30, 1, 2)

    wide = Wide()
    with pytest.raises(ShapeError, match="int32"):
        kmod._check_kernel_limits(1, 2, 2, 2, wide)
    with pytest.raises(ShapeError, match="65535"):
        kmod._check_kernel_limits(2**16, 2, 2, 2)
    kptp = __import__("sys").modules["rawsynth.kernels.ptp"]

    with pytest.raises(ShapeError, match="int32"):
        kptp._check_limits(1, 2**16, 2**15)
    kptp._check_limits(1, 2**15, 2**15)


def test_ptp_runs_batches_above_the_grid_limit_in_chunks(monkeypatch):
    kptp = __import__("sys").modules["rawsynth.kernels.ptp"]

    monkeypatch.setattr(kptp, "_MAX_GRID_Y", 3)  # chunks of 3 samples
    x = torch.rand((7, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    p = [sample_isp_params(np.random.default_rng(i)) for i in range(7)]
    torch.testing.assert_close(kptp.ptp(x, p, backend="triton"), kptp.ptp_reference(x, p), rtol=0, atol=2e-6)


# ----------------------------------------------------------------------------- compiled for sm_90 on the CPU

_SIG = {"src_ptr": "*u8", "hq_ptr": "*u8", "lut_ptr": "*fp32", "fpar_ptr": "*fp32", "ipar_ptr": "*i64",
        "dn_ptr": "*i16", "lin_ptr": "*fp32", "H": "i32", "W": "i32", "W4": "i32", "s_b": "i32", "s_c": "i32",
        "s_h": "i32", "s_w": "i32", "t_b": "i32", "t_c": "i32", "t_h": "i32", "t_w": "i32",
        "inflection": "fp32", "fade": "fp32"}


def compile_sm90(**constexprs):
    """The fused kernel compiled for sm_90 by Triton's bundled ptxas (as the launch does: no FP contraction)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from rawsynth.kernels._common import kernel_module

    k = kernel_module("_iptp_mns_triton", torch.device("cuda"))  # the compiled copy (no GPU needed to compile)
    const = dict(IS_U8=True, WRITE_LINEAR=True, HQ_SOURCE=False, NOISE=True, FAST_NOISE=False, BLOCK_H=4,
                 BLOCK_W=256)
    const.update(constexprs)
    sig = dict(_SIG, **{n: "constexpr" for n in const})
    names = list(sig)
    src = ASTSource(fn=k._iptp_mns_kernel, signature=sig, constexprs={(names.index(n),): v for n, v in const.items()})
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"enable_fp_fusion": False})


def sass_count(compiled) -> int:
    """Static SASS instructions of a compiled kernel (Triton's bundled nvdisasm)."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        out = subprocess.run([tool, "-c", f.name], capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if re.match(r"\s*/\*[0-9a-f]{4}\*/", line))


def _have_ptxas() -> bool:
    try:
        import triton
    except ImportError:
        return False
    nv = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    return os.path.exists(os.path.join(nv, "ptxas")) and os.path.exists(os.path.join(nv, "nvdisasm"))


@pytest.mark.skipif(not _have_ptxas(), reason="needs triton's bundled ptxas/nvdisasm")
def test_variants_compile_for_sm90_and_shed_instructions():
    acc, fast, quiet, pair = (compile_sm90(), compile_sm90(FAST_NOISE=True), compile_sm90(NOISE=False),
                              compile_sm90(HQ_SOURCE=True))
    # the accurate variant: libdevice's accurate functions (tl.randn4x's bits); fast: hardware approximations
    assert "sin.approx" not in acc.asm["ptx"] and "lg2.approx" not in acc.asm["ptx"]
    assert "sin.approx" in fast.asm["ptx"] and "cos.approx" in fast.asm["ptx"] and "lg2.approx" in fast.asm["ptx"]
    # no noise: no Philox (its umulhi) at all
    assert "mul.hi.u32" in acc.asm["ptx"] and "mul.hi.u32" not in quiet.asm["ptx"]
    n = {k: sass_count(c) for k, c in [("acc", acc), ("fast", fast), ("quiet", quiet), ("pair", pair)]}
    assert n["quiet"] < 0.6 * n["acc"] and n["fast"] < 0.8 * n["acc"], n
    assert n["pair"] < n["acc"] + n["quiet"], n  # one pair launch costs less than the two launches it replaces
