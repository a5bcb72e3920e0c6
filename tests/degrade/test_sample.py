"""sample_degradation: the drawn distributions, determinism, JSON round trip, no global RNG."""

import json
import math
import random
from collections import Counter

import numpy as np
import pytest
import torch
from scipy import stats

from rawsynth.degrade import (DegradationConfig, DegradationParams, FinalOrder, KernelType, ResizeDirection,
                              ResizeMode, apply_degradation, sample_degradation)
from rawsynth.errors import ConfigError, ShapeError

N = 5000
KINDS = ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]


@pytest.fixture(scope="module")
def draws():
    rng = np.random.default_rng(20240501)
    return [sample_degradation(rng, DegradationConfig(), (256, 256)) for _ in range(N)]


def close(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    """``count / n`` within ``sigmas`` binomial standard deviations of ``p``."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1e-9


def test_kernel_type_frequencies(draws):
    kernels = [s.kernel for p in draws for s in (p.first, p.second) if s.kernel is not None]
    family = [k.kind.value for k in kernels if k.kind is not KernelType.SINC]
    counts = Counter(family)
    expected = np.array([0.45, 0.25, 0.12, 0.03, 0.12, 0.03]) * len(family)
    observed = np.array([counts[k] for k in KINDS])
    assert set(counts) == set(KINDS)
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    for k, p in zip(KINDS, [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]):
        assert close(counts[k], len(family), p), (k, counts[k])


def test_blur_sinc_order_probabilities(draws):
    first_sinc = sum(p.first.kernel.kind is KernelType.SINC for p in draws)
    assert all(p.first.kernel is not None for p in draws)  # the first order always blurs
    assert close(first_sinc, N, 0.1)
    second = [p.second.kernel for p in draws]
    blurred = [k for k in second if k is not None]
    assert close(len(blurred), N, 0.8)
    assert close(sum(k.kind is KernelType.SINC for k in blurred), len(blurred), 0.1)
    assert close(sum(p.final.sinc is not None for p in draws), N, 0.8)
    assert close(sum(p.final.order is FinalOrder.RESIZE_SINC_JPEG for p in draws), N, 0.5)


def test_resize_directions_modes_and_scales(draws):
    for stage, probs, (lo, hi) in (("first", (0.2, 0.7, 0.1), (0.15, 1.5)), ("second", (0.3, 0.4, 0.3), (0.3, 1.2))):
        sp = [getattr(p, stage) for p in draws]
        for d, pr in zip(ResizeDirection, probs):
            assert close(sum(s.resize is d for s in sp), N, pr), (stage, d)
        up = np.array([s.resize_scale for s in sp if s.resize is ResizeDirection.UP])
        down = np.array([s.resize_scale for s in sp if s.resize is ResizeDirection.DOWN])
        assert up.min() >= 1 and up.max() <= hi and down.min() >= lo and down.max() <= 1
        assert stats.kstest((up - 1) / (hi - 1), "uniform").pvalue > 1e-3
        assert stats.kstest((down - lo) / (1 - lo), "uniform").pvalue > 1e-3
        assert all(s.resize_scale == 1.0 for s in sp if s.resize is ResizeDirection.KEEP)
        for m in ResizeMode:
            assert close(sum(s.resize_mode is m for s in sp), N, 1 / 3)
    for m in ResizeMode:
        assert close(sum(p.final.resize_mode is m for p in draws), N, 1 / 3)


def test_resize_sizes_follow_real_esrgan_formulas(draws):
    for p in draws[:500]:
        f1, f2 = p.first.resize_scale, p.second.resize_scale
        assert p.first.resize_size == (math.floor(256 * f1), math.floor(256 * f1))
        assert p.second.resize_size == (int(256 / 4 * f2), int(256 / 4 * f2))
        assert p.lq_size == (64, 64) and p.out_size == (256, 256) and p.in_size == (256, 256)


def test_jpeg_qualities_uniform_integers_30_to_95(draws):
    q = np.array([p.first.jpeg_quality for p in draws] + [p.final.jpeg_quality for p in draws])
    assert all(p.second.jpeg_quality is None for p in draws)
    assert q.dtype.kind == "i" and q.min() == 30 and q.max() == 95
    observed = np.bincount(q - 30, minlength=66)
    assert stats.chisquare(observed).pvalue > 1e-3


def test_kernel_sizes_sigmas_betas_omegas(draws):
    stage_kernels = [(i, s.kernel) for p in draws for i, s in enumerate((p.first, p.second)) if s.kernel is not None]
    sizes = np.array([k.size for _, k in stage_kernels] + [p.final.sinc.size for p in draws if p.final.sinc])
    assert set(sizes.tolist()) == set(range(7, 22, 2))
    assert stats.chisquare(np.bincount((sizes - 7) // 2)).pvalue > 1e-3
    gen_beta, plat_beta = [], []
    for i, k in stage_kernels:
        if k.kind is KernelType.SINC:
            lo = math.pi / 3 if k.size < 13 else math.pi / 5
            assert lo <= k.omega_c <= math.pi
            continue
        hi = 3.0 if i == 0 else 1.5
        assert 0.2 <= k.sigma_x <= hi and 0.2 <= k.sigma_y <= hi and -math.pi <= k.theta <= math.pi
        if k.kind.isotropic:
            assert k.sigma_y == k.sigma_x and k.theta == 0.0
        if k.kind.value.startswith("generalized"):
            gen_beta.append(k.beta)
        elif k.kind.value.startswith("plateau"):
            plat_beta.append(k.beta)
        else:
            assert k.beta is None
    gen_beta, plat_beta = np.array(gen_beta), np.array(plat_beta)
    # basicsr: beta = U(lo, 1) or U(1, hi) with prob 0.5 each
    assert gen_beta.min() >= 0.5 and gen_beta.max() <= 4 and close(int((gen_beta < 1).sum()), len(gen_beta), 0.5)
    assert plat_beta.min() >= 1 and plat_beta.max() <= 2 and close(int((plat_beta == 1).sum()), len(plat_beta), 0.5)
    omegas = [p.final.sinc.omega_c for p in draws if p.final.sinc]
    assert min(omegas) >= math.pi / 3 and max(omegas) <= math.pi
    big = [k.omega_c for _, k in stage_kernels if k.kind is KernelType.SINC and k.size >= 13]
    assert min(big) < math.pi / 3  # the larger sinc kernels reach down to pi/5


def test_same_seed_same_params_and_bytes_and_json_round_trip():
    img = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    for seed in range(8):
        a = sample_degradation(np.random.default_rng(seed), None, (64, 64))
        b = sample_degradation(np.random.default_rng(seed), DegradationConfig(), (64, 64))
        assert a == b
        assert DegradationParams.from_dict(json.loads(json.dumps(a.to_dict()))) == a
        assert DegradationParams.from_json(a.to_json()) == a
        assert apply_degradation(img, a).tobytes() == apply_degradation(img, b).tobytes()
    c = sample_degradation(np.random.default_rng(100), None, (64, 64))
    assert c != sample_degradation(np.random.default_rng(101), None, (64, 64))


def test_global_rngs_are_untouched():
    img = np.random.default_rng(1).random((64, 64, 3), dtype=np.float32)
    np.random.seed(123)
    torch.manual_seed(123)
    random.seed(123)
    np_state, torch_state, py_state = np.random.get_state(), torch.get_rng_state(), random.getstate()
    rng = np.random.default_rng(5)
    for _ in range(20):
        apply_degradation(img, sample_degradation(rng, None, (64, 64)))
    after = np.random.get_state()
    assert all(np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y for x, y in zip(np_state, after))
    assert torch.equal(torch_state, torch.get_rng_state())
    assert py_state == random.getstate()


def test_params_from_dict_is_strict():
    p = sample_degradation(np.random.default_rng(0), None, (64, 64))
    d = p.to_dict()
    with pytest.raises(ConfigError, match="extra"):
        DegradationParams.from_dict({**d, "extra": 1})
    with pytest.raises(ConfigError, match="final"):
        DegradationParams.from_dict({k: v for k, v in d.items() if k != "final"})
    with pytest.raises(ConfigError, match="first.*sigma_z"):
        DegradationParams.from_dict({**d, "first": {**d["first"], "kernel": {"kind": "iso", "size": 7,
                                                                              "sigma_z": 1.0}}})
    with pytest.raises(ConfigError, match="out_size"):
        DegradationParams.from_dict({**d, "out_size": [16, 16]})
    with pytest.raises(ConfigError, match="resize_scale"):
        DegradationParams.from_dict({**d, "first": {**d["first"], "resize": "keep", "resize_scale": 0.5}})


def test_sample_validates_its_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="Generator"):
        sample_degradation(np.random.RandomState(0), None, (64, 64))
    with pytest.raises(TypeError, match="DegradationConfig"):
        sample_degradation(rng, {"scale": 4}, (64, 64))
    with pytest.raises(ShapeError, match="multiple of scale"):
        sample_degradation(rng, None, (64, 62))
    with pytest.raises(ShapeError, match="too small"):
        sample_degradation(rng, None, (8, 8))
    with pytest.raises(ShapeError):
        sample_degradation(rng, None, (64,))
    p = sample_degradation(rng, DegradationConfig(scale=2, resize_back=False), (64, 32))
    assert p.out_size == p.lq_size == (32, 16)


def test_sampling_does_not_import_basicsr():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from rawsynth.degrade import sample_degradation; "
            "p = sample_degradation(np.random.default_rng(0), None, (64, 64)); "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'basicsr']")
    subprocess.run([sys.executable, "-c", code], check=True)
