"""Randomly initialised weight files under the exact names pyiqa expects, so that the tests exercise pyiqa's real
loading code (torchvision's hub cache, pyiqa's ``load_pretrained_network``, CLIP's TorchScript loader) offline.

Each file is made from the same architecture pyiqa builds, with random values; none of them scores anything
meaningfully. Where the published weights have a known property the metric's range depends on, the fake keeps
it: LPIPS's linear layers are non-negative, DISTS's alpha/beta positive. The CLIP model is a small CLIP (same
ModifiedResNet + text transformer code, fewer layers and channels, saved as TorchScript like OpenAI's RN50.pt);
the tokenizer is the one bundled in the ``clip`` package.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from benchmarks.scoring.weights import import_clip, offline_hub, required_weights


@contextmanager
def _no_pretrained_load(module):
    saved = module.load_pretrained_network
    module.load_pretrained_network = lambda *a, **k: None
    try:
        yield
    finally:
        module.load_pretrained_network = saved


def _save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)


def make_fake_weights(root: Path, metrics=("lpips", "dists", "fid", "niqe", "musiq", "clipiqa")) -> Path:
    """Write random weight files for ``metrics`` under ``root`` (a TORCH_HOME layout); return ``root``."""
    import scipy.io
    import torchvision

    torch.manual_seed(0)
    paths = {w.name: root / w.relpath for w in required_weights(metrics)}
    with offline_hub(root):  # building the architectures below must not download anything either
        if "lpips" in metrics:
            sd = torchvision.models.alexnet(weights=None).state_dict()
            _save({k: v.half() for k, v in sd.items()}, paths["alexnet-owt-7be5be79.pth"])
            from pyiqa.archs.lpips_arch import LPIPS

            net = LPIPS(pretrained=False, pnet_rand=True)
            _save({k: v.abs() for k, v in net.state_dict().items() if k.startswith("lin")},
                  paths["LPIPS_v0.1_alex-df73285e.pth"])
        if "dists" in metrics:
            with torch.device("meta"):
                shapes = {k: v.shape for k, v in torchvision.models.vgg16(weights=None).state_dict().items()}
            _save({k: torch.randn(s, dtype=torch.float16) * 0.02 for k, s in shapes.items()},
                  paths["vgg16-397923af.pth"])
            from pyiqa.archs.dists_arch import DISTS

            net = DISTS(pretrained=False)  # loads the (fake) VGG16 above through torchvision
            _save({k: v.abs() for k, v in net.state_dict().items() if k in ("alpha", "beta")},
                  paths["DISTS_weights-f5e65c96.pth"])
        if "fid" in metrics:
            import pyiqa.archs.inception as inception

            with _no_pretrained_load(inception):
                net = inception.fid_inception_v3()
            _save(net.state_dict(), paths["pt_inception-2015-12-05-6726825d.pth"])
        if "niqe" in metrics:
            rng = np.random.default_rng(0)
            a = rng.normal(size=(36, 36))
            p = paths["niqe_modelparameters.mat"]
            p.parent.mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(p, {"mu_prisparam": rng.normal(size=(1, 36)), "cov_prisparam": a @ a.T / 36 + np.eye(36)})
        if "musiq" in metrics:
            from pyiqa.archs.musiq_arch import MUSIQ

            _save(MUSIQ(pretrained=False).state_dict(), paths["musiq_koniq_ckpt-e95806b9.pth"])
        if "clipiqa" in metrics:
            clip = import_clip()
            from pyiqa.archs.clip_model import CLIP

            net = CLIP(embed_dim=64, image_resolution=224, vision_layers=(1, 1, 1, 1), vision_width=16,
                       vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=64,
                       transformer_heads=2, transformer_layers=1).eval()
            traced = torch.jit.trace(net, (torch.rand(1, 3, 224, 224), clip.tokenize(["a photo"])), check_trace=False)
            p = paths["RN50.pt"]
            p.parent.mkdir(parents=True, exist_ok=True)
            traced.save(os.fspath(p))
    return root
