"""basicsr is reachable through the compat module only, and never imported by ``import rawsynth``."""

import subprocess
import sys

import numpy as np
import torch


def test_import_rawsynth_does_not_import_basicsr():
    code = ("import sys, rawsynth, rawsynth.isp, rawsynth.mns, rawsynth.io, rawsynth.cli, rawsynth.demo, "
            "rawsynth.degrade, rawsynth.pipeline, rawsynth.generate, rawsynth.shards, rawsynth.data, "
            "rawsynth.inspect, rawsynth.sources; "
            "import rawsynth.compat.basicsr; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('basicsr', 'rddm', 'benchmarks')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rawsynth_never_imports_rddm_or_benchmarks():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2] / "rawsynth"
    pat = re.compile(r"^\s*(from|import)\s+(rddm|benchmarks)\b", re.M)
    offenders = [str(p) for p in root.rglob("*.py") if pat.search(p.read_text())]
    assert not offenders


def test_compat_loads_basicsr_and_its_kernels_work():
    from rawsynth.compat import basicsr as compat

    deg = compat.degradations()
    # the deterministic constructor (basicsr's random_* samplers draw from numpy's global RNG)
    k = deg.bivariate_Gaussian(21, 2.0, 2.0, 0.0, isotropic=True)
    assert k.shape == (21, 21) and abs(k.sum() - 1) < 1e-6
    # an isotropic Gaussian kernel equals the outer product of 1-D Gaussians
    ax = np.arange(-10, 11)
    g = np.exp(-(ax**2) / (2 * 2.0**2))
    np.testing.assert_allclose(k, np.outer(g, g) / np.outer(g, g).sum(), atol=1e-6)
    img = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    delta = torch.zeros(2, 5, 5)
    delta[:, 2, 2] = 1
    assert torch.allclose(compat.filter2D(img, delta), img, atol=1e-6)  # identity kernel
    assert "torchvision.transforms.functional_tensor" in sys.modules
    jpeg = compat.DiffJPEG(differentiable=False)
    out = jpeg(img, quality=torch.tensor([90.0, 90.0]))
    assert out.shape == img.shape
