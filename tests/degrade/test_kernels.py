"""Kernels: built from recorded parameters by basicsr's constructors, checked against independent formulas."""

import math

import numpy as np
import pytest
from scipy import special

from rawsynth.degrade import KernelParams, KernelType, build_kernel
from rawsynth.errors import ConfigError

KINDS = {
    "iso": KernelParams("iso", 13, 1.7, 1.7, 0.0),
    "aniso": KernelParams("aniso", 15, 2.5, 0.8, 0.6),
    "generalized_iso": KernelParams("generalized_iso", 11, 1.3, 1.3, 0.0, beta=0.7),
    "generalized_aniso": KernelParams("generalized_aniso", 21, 2.8, 1.1, -1.2, beta=2.5),
    "plateau_iso": KernelParams("plateau_iso", 9, 1.0, 1.0, 0.0, beta=1.0),
    "plateau_aniso": KernelParams("plateau_aniso", 17, 2.0, 0.5, 2.9, beta=1.6),
    "sinc": KernelParams("sinc", 19, omega_c=math.pi / 4),
}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_is_21x21_float32_sums_to_1_zero_padded(name):
    kp = KINDS[name]
    k = build_kernel(kp)
    assert k.shape == (21, 21) and k.dtype == np.float32
    assert abs(float(k.sum(dtype=np.float64)) - 1) < 1e-6
    p = (21 - kp.size) // 2
    core = build_kernel(kp, pad_to=None)
    assert core.shape == (kp.size, kp.size)
    np.testing.assert_array_equal(k[p:p + kp.size, p:p + kp.size], core)
    mask = np.ones((21, 21), bool)
    mask[p:p + kp.size, p:p + kp.size] = False
    assert not k[mask].any()  # exactly zero outside the core
    # every kernel is point-symmetric about its centre (K(-x) = K(x))
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-8)


@pytest.mark.parametrize("name", ["iso", "generalized_iso", "plateau_iso", "sinc"])
def test_isotropic_kinds_have_the_8_symmetries_of_the_square(name):
    k = build_kernel(KINDS[name])
    for t in (k.T, k[::-1], k[:, ::-1], np.rot90(k)):
        np.testing.assert_allclose(k, t, atol=1e-8)


def test_anisotropic_kernel_is_not_isotropic_and_rotates():
    k = build_kernel(KernelParams("aniso", 21, 3.0, 0.6, 0.0))
    assert not np.allclose(k, k.T, atol=1e-4)  # elongated along x
    k90 = build_kernel(KernelParams("aniso", 21, 3.0, 0.6, math.pi / 2))
    np.testing.assert_allclose(k90, k.T, atol=1e-6)  # rotating by 90° swaps the axes


def test_iso_gaussian_is_an_outer_product_of_1d_gaussians():
    for size, sigma in ((7, 0.4), (13, 1.7), (21, 3.0)):
        ax = np.arange(size) - size // 2
        g = np.exp(-ax.astype(np.float64) ** 2 / (2 * sigma**2))
        ref = np.outer(g, g) / np.outer(g, g).sum()
        k = build_kernel(KernelParams("iso", size, sigma, sigma, 0.0), pad_to=None)
        np.testing.assert_allclose(k, ref, rtol=1e-5, atol=1e-8)


def test_anisotropic_gaussian_matches_the_rotated_covariance_formula():
    sx, sy, th, size = 2.2, 0.9, 0.7, 15
    r = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    inv = np.linalg.inv(r @ np.diag([sx**2, sy**2]) @ r.T)
    ax = np.arange(size) - size // 2
    xx, yy = np.meshgrid(ax, ax)  # basicsr: x along columns, y along rows
    pts = np.stack([xx, yy], -1).astype(np.float64)
    q = np.einsum("...i,ij,...j->...", pts, inv, pts)
    for kind, f in (("aniso", np.exp(-0.5 * q)), ("generalized_aniso", np.exp(-0.5 * q**1.7)),
                    ("plateau_aniso", 1 / (1 + q**1.7))):
        beta = None if kind == "aniso" else 1.7
        k = build_kernel(KernelParams(kind, size, sx, sy, th, beta), pad_to=None)
        np.testing.assert_allclose(k, f / f.sum(), rtol=1e-5, atol=1e-8)


def test_generalized_with_beta_1_is_the_gaussian():
    g = build_kernel(KernelParams("aniso", 17, 2.0, 1.0, 0.3))
    gg = build_kernel(KernelParams("generalized_aniso", 17, 2.0, 1.0, 0.3, beta=1.0))
    np.testing.assert_allclose(g, gg, atol=1e-7)


def test_sinc_equals_basicsr_circular_lowpass_kernel_and_the_bessel_formula():
    from rawsynth.compat.basicsr import degradations

    for size, omega in ((7, math.pi / 3), (13, 2.0), (21, math.pi / 5), (21, math.pi)):
        kp = KernelParams("sinc", size, omega_c=omega)
        ref = degradations().circular_lowpass_kernel(omega, size, pad_to=21)
        np.testing.assert_allclose(build_kernel(kp), ref.astype(np.float32), rtol=0, atol=0)
        c = (size - 1) / 2
        y, x = np.mgrid[:size, :size]
        r = np.hypot(x - c, y - c)
        with np.errstate(invalid="ignore", divide="ignore"):
            f = omega * special.j1(omega * r) / (2 * np.pi * r)
        f[size // 2, size // 2] = omega**2 / (4 * np.pi)
        np.testing.assert_allclose(build_kernel(kp, pad_to=None), f / f.sum(), rtol=1e-5, atol=1e-7)
    assert (build_kernel(KernelParams("sinc", 21, omega_c=math.pi / 5)) < 0).any()  # ringing lobes


def test_pad_to_validation():
    kp = KINDS["iso"]
    assert build_kernel(kp, pad_to=25).shape == (25, 25)
    for bad in (12, 20, 22, 21.0, True):
        with pytest.raises(ConfigError, match="pad_to"):
            build_kernel(kp, pad_to=bad)
    with pytest.raises(ConfigError):
        build_kernel({"kind": "iso"})


@pytest.mark.parametrize("bad", [
    dict(kind="sinc", size=7),  # no omega
    dict(kind="sinc", size=7, omega_c=1.0, sigma_x=1.0),
    dict(kind="sinc", size=7, omega_c=4.0),  # > pi
    dict(kind="iso", size=8, sigma_x=1.0, sigma_y=1.0, theta=0.0),  # even
    dict(kind="iso", size=7, sigma_x=1.0, sigma_y=2.0, theta=0.0),  # iso with sigma_y != sigma_x
    dict(kind="iso", size=7, sigma_x=1.0, sigma_y=1.0, theta=0.5),
    dict(kind="aniso", size=7, sigma_x=1.0, sigma_y=1.0, theta=0.0, beta=1.0),
    dict(kind="plateau_aniso", size=7, sigma_x=1.0, sigma_y=1.0, theta=0.0),  # missing beta
    dict(kind="aniso", size=7, sigma_x=-1.0, sigma_y=1.0, theta=0.0),
    dict(kind="box", size=7),
])
def test_kernel_params_reject_inconsistent_values(bad):
    with pytest.raises(ConfigError):
        KernelParams(**bad)


def test_kind_properties():
    assert KernelType.ISO.isotropic and not KernelType.ANISO.isotropic
    assert KernelType.PLATEAU_ISO.has_beta and not KernelType.ISO.has_beta and not KernelType.SINC.has_beta
