"""DDNet: shapes, Bayer unification (flip equivariance), bilinear start, save/load, errors."""

from __future__ import annotations

import pytest
import torch

from rawsynth.errors import ShapeError
from rawsynth.mns import Pattern, demosaic_bilinear, hflip, mosaic, vflip
from rddm.errors import WeightsError
from rddm.models.ddnet import DDNet, unify_flips

from .conftest import TINY_DDNET


def _net(seed: int = 0, **kw) -> DDNet:
    torch.manual_seed(seed)
    net = DDNet(**{**TINY_DDNET, **kw})
    with torch.no_grad():  # leave the bilinear start: make the network do something
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


@pytest.mark.parametrize("pattern", list(Pattern))
def test_unify_flips_reach_rggb(pattern):
    hf, vf = unify_flips(pattern)
    q = pattern.hflipped(4) if hf else pattern
    assert (q.vflipped(4) if vf else q) is Pattern.RGGB


@pytest.mark.parametrize("hw", [(32, 48), (34, 50), (2, 2), (66, 18)])
def test_shapes_any_even_size(hw):
    out = _net()(torch.rand(3, 1, *hw), ["RGGB", "GBRG", "BGGR"])
    assert out.shape == (3, 3, *hw) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_untrained_ddnet_is_the_bilinear_demosaic():
    torch.manual_seed(0)
    raw = torch.rand(4, 1, 32, 32)
    pats = list(Pattern)
    out = DDNet(**TINY_DDNET)(raw, pats)
    assert torch.allclose(out, demosaic_bilinear(raw, pats), atol=1e-6)


@pytest.mark.parametrize("flip", [hflip, vflip])
def test_flip_equivariance_is_exact(flip):
    net = _net()
    raw = torch.rand(4, 1, 32, 48)
    pats = list(Pattern)
    flipped, fpats = flip(raw, pats)
    dim = -1 if flip is hflip else -2
    with torch.no_grad():
        assert torch.equal(net(flipped, fpats), net(raw, pats).flip(dim))


def test_mixed_batch_equals_per_sample():
    net = _net()
    raw = torch.rand(4, 1, 32, 32)
    pats = [Pattern.GRBG, Pattern.RGGB, Pattern.GRBG, Pattern.BGGR]
    with torch.no_grad():
        batch = net(raw, pats)
        single = torch.cat([net(raw[i:i + 1], p) for i, p in enumerate(pats)])
    assert torch.allclose(batch, single, atol=1e-6)


def test_one_pattern_for_the_batch_and_pattern_names():
    net = _net()
    raw = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(net(raw, "GBRG"), net(raw, [Pattern.GBRG, "GBRG"]))


def test_constant_colour_mosaic_of_any_pattern_demosaics_to_that_colour():
    """Unification + unpacking put every colour back at the right pixels (untrained = bilinear, exact here)."""
    lin = torch.tensor([0.2, 0.5, 0.8])[None, :, None, None].expand(2, 3, 16, 16)
    pats = [Pattern.BGGR, Pattern.GRBG]
    out = DDNet(**TINY_DDNET)(mosaic(lin, pats), pats)
    assert torch.allclose(out, lin, atol=1e-5)


@pytest.mark.parametrize("raw,pats,msg", [
    (torch.rand(1, 1, 31, 32), "RGGB", "even"),
    (torch.rand(1, 3, 32, 32), "RGGB", "1 channel"),
    (torch.rand(2, 1, 32, 32), ["RGGB"], "list of 2"),
    (torch.rand(1, 1, 32, 32), "RGBG", "unknown Bayer pattern"),
    (torch.randint(0, 9, (1, 1, 32, 32)), "RGGB", "floating-point"),
])
def test_bad_inputs_raise(raw, pats, msg):
    with pytest.raises(ShapeError, match=msg):
        _net()(raw, pats)


def test_save_load_same_output_and_output_root(tmp_path):
    net = _net(residual_bilinear=False)
    raw = torch.rand(2, 1, 32, 32)
    net.save_pretrained(tmp_path / "run" / "ddnet")
    for path in (tmp_path / "run" / "ddnet", tmp_path / "run"):
        loaded = DDNet.from_pretrained(path).eval()
        assert loaded.config.residual_bilinear is False
        with torch.no_grad():
            assert torch.equal(loaded(raw, "RGGB"), net(raw, "RGGB"))
    assert sorted(p.name for p in (tmp_path / "run" / "ddnet").iterdir()) == [
        "config.json", "diffusion_pytorch_model.safetensors"]


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(WeightsError, match="no such DDNet folder"):
        DDNet.from_pretrained(tmp_path / "missing")
    with pytest.raises(WeightsError, match="no config.json"):
        DDNet.from_pretrained(tmp_path)
    from diffusers import AutoencoderKL

    AutoencoderKL(block_out_channels=(8,), norm_num_groups=8).save_pretrained(tmp_path / "vae")
    with pytest.raises(WeightsError, match="not a DDNet"):
        DDNet.from_pretrained(tmp_path / "vae")


def test_gradient_checkpointing_gives_the_same_gradients():
    raw, target = torch.rand(2, 1, 32, 32), torch.rand(2, 3, 32, 32)
    grads = []
    for ckpt in (False, True):
        net = _net().train()
        if ckpt:
            net.enable_gradient_checkpointing()
        torch.nn.functional.mse_loss(net(raw, "RGGB"), target).backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(*grads))
