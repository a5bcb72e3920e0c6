"""VSD regulariser (OSEDiff's distribution matching): the frozen path is the pretrained UNet bit for bit, the update
path is base + its own adapter only, t ranges, the loss and its gradient against a hand computation, where the
gradients go, determinism, the diffusion loss falls, save/load, and the deep-copy mode."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import UNet2DConditionModel

from rddm import lora as L
from rddm.errors import ConfigError, WeightsError
from rddm.models.rddm import RDDM, predict_x0
from rddm.vsd import VSD_ADAPTER, VSDRegularizer, distribution_matching_loss


@pytest.fixture(scope="module")
def pair(sd21_folder):
    model = RDDM.from_sd(sd21_folder)
    return model, VSDRegularizer(model.unet, model.alphas_cumprod, lora_rank=4)


@pytest.fixture
def fresh(pair):
    return copy.deepcopy(pair)  # the RDDM and its regulariser, still sharing one (copied) UNet


def _perturb(unet, adapter: str, seed=0, value=None):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if f".lora_B.{adapter}." in n:
                p.copy_(torch.full_like(p, value) if value is not None else 0.3 * torch.randn(p.shape, generator=g))


def _data(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    z, emb, neg = torch.randn(b, 4, 8, 8, generator=g), torch.randn(b, 77, 32, generator=g), torch.randn(1, 77, 32)
    return z, emb, neg


def test_frozen_path_is_the_pretrained_unet_and_update_path_only_its_adapter(fresh, sd21_folder):
    model, vsd = fresh
    assert vsd.unet is model.unet and VSD_ADAPTER in model.unet.peft_config  # one shared base UNet
    assert "unet" not in dict(vsd.named_children())  # shared, not owned
    for g in ("RGGB", "BGGR", "GRBG", "GBRG"):
        _perturb(model.unet, f"cmb_{g}", value=float("nan"))  # a generator group leaking in would poison
    plain = UNet2DConditionModel.from_pretrained(sd21_folder, subfolder="unet")
    z, emb, neg = _data()
    t = torch.tensor([20, 979])
    a = model.alphas_cumprod[t]
    with torch.no_grad():
        eps_u = plain(z, t, encoder_hidden_states=neg.expand(2, -1, -1)).sample
        eps_c = plain(z, t, encoder_hidden_states=emb).sample
        ref_fix = predict_x0(eps_u + 7.5 * (eps_c - eps_u), z, a)
        ref_plain = predict_x0(eps_c, z, a)
        _perturb(model.unet, VSD_ADAPTER, value=0.0)
        assert torch.allclose(vsd.update_x0(z, t, emb), ref_plain, atol=1e-5)  # vsd adapter at B = 0: the base
        _perturb(model.unet, VSD_ADAPTER)  # the frozen path ignores every adapter, the update one uses its own
        fix = vsd.frozen_x0(z, t, emb, neg)
        upd = vsd.update_x0(z, t, emb)
    assert torch.allclose(fix, ref_fix, rtol=1e-5, atol=1e-4)  # (CFG 7.5 and 1/√ᾱ amplify float rounding)
    assert torch.isfinite(upd).all() and not torch.allclose(upd, ref_plain, atol=1e-3)


def test_timesteps_come_from_the_generator_in_range(pair):
    _, vsd = pair
    z = torch.zeros(20000, 1, 1, 1)
    t, noise = vsd._draw(z, vsd.t_min, vsd.t_max, torch.Generator().manual_seed(0))
    assert t.min() == 20 and t.max() == 979 and noise.shape == z.shape
    t2, noise2 = vsd._draw(z, vsd.t_min, vsd.t_max, torch.Generator().manual_seed(0))
    assert torch.equal(t, t2) and torch.equal(noise, noise2)
    lo, hi = vsd.diffusion_t_range
    assert (lo, hi) == (0, 1000)  # OSEDiff's diffusion loss: the whole schedule
    with pytest.raises(ConfigError, match="t_min < t_max"):
        VSDRegularizer(copy.deepcopy(pair[0].unet), pair[0].alphas_cumprod, t_min=500, t_max=100)


def test_generator_loss_and_its_gradient_match_a_hand_computation(fresh):
    model, vsd = fresh
    _perturb(model.unet, VSD_ADAPTER)
    z, emb, neg = _data()
    z = z.requires_grad_(True)
    loss, info = vsd.generator_loss(z, emb, neg, torch.Generator().manual_seed(3), return_info=True)
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert ((info["t"] >= 20) & (info["t"] < 980)).all()
    # by hand, with the same draws (t, noise) from the same generator state
    t, noise = vsd._draw(z, 20, 980, torch.Generator().manual_seed(3))
    assert torch.equal(t, info["t"])
    a = model.alphas_cumprod[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        noisy = a.sqrt() * z + (1 - a).sqrt() * noise
        x_fix, x_upd = vsd.frozen_x0(noisy, t, emb, neg), vsd.update_x0(noisy, t, emb)
        w = (z - x_fix).abs().mean(dim=(1, 2, 3), keepdim=True)
        grad = (x_upd - x_fix) / w
    assert torch.allclose(loss, (grad ** 2).mean(), rtol=1e-5)  # MSE(z, z − grad) = mean(grad²)
    assert torch.allclose(z.grad, 2 * grad / z.numel(), rtol=1e-4, atol=1e-9)  # d/dz = 2·grad/N
    # the same generator state gives the same loss, another one another loss
    same = vsd.generator_loss(z, emb, neg, torch.Generator().manual_seed(3))
    other = vsd.generator_loss(z, emb, neg, torch.Generator().manual_seed(4))
    assert torch.equal(same, loss) and not torch.equal(other, loss)
    assert distribution_matching_loss(z, x_fix, x_fix) == 0  # update = frozen: nothing to correct


def test_gradients_reach_only_the_generator_or_only_the_update_lora(fresh):
    model, vsd = fresh
    model.train()
    _perturb(model.unet, VSD_ADAPTER)
    raw, emb = torch.rand(2, 1, 16, 16), torch.randn(1, 77, 32)
    out = model(raw, ["RGGB", "BGGR"], emb, generator=torch.Generator().manual_seed(0))
    vsd.generator_loss(out.latent, emb, torch.zeros(1, 77, 32), torch.Generator().manual_seed(0)).backward()
    got = {n for n, p in model.unet.named_parameters() if p.grad is not None}
    got |= {n for n, p in model.rvae.named_parameters() if p.grad is not None}
    assert got and all(".cmb_RGGB." in n or ".cmb_BGGR." in n for n in got)  # through ẑ0 into the generator
    assert all(p.grad is None for p in vsd.trainable_parameters())
    model.zero_grad(set_to_none=True)
    vsd.diffusion_loss(out.latent, emb, torch.Generator().manual_seed(0)).backward()
    got = {n for n, p in model.named_parameters() if p.grad is not None}
    assert got == {n for n, p in model.named_parameters() if f".{VSD_ADAPTER}." in n and "lora_" in n}
    assert {id(p) for p in vsd.trainable_parameters()} == {id(p) for n, p in model.named_parameters()
                                                           if f".{VSD_ADAPTER}." in n}
    assert not any(id(p) in {id(q) for q in model.trainable_parameters()} for p in vsd.trainable_parameters())


def test_the_diffusion_loss_falls_on_a_fixed_batch(fresh):
    _, vsd = fresh
    z, emb, _ = _data(2, seed=1)
    opt = torch.optim.Adam(vsd.trainable_parameters(), lr=3e-2)
    losses = []
    for _ in range(12):
        loss = vsd.diffusion_loss(z, emb, torch.Generator().manual_seed(0))  # same t and noise every step
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(map(torch.isfinite, map(torch.tensor, losses)))
    assert losses[-1] < 0.7 * losses[0]


def test_save_and_load_weights_in_place(fresh, tmp_path):
    model, vsd = fresh
    _perturb(model.unet, VSD_ADAPTER, seed=5)
    saved = [p.detach().clone() for p in vsd.trainable_parameters()]
    vsd.save_pretrained(tmp_path / "vsd")
    assert sorted(p.name for p in (tmp_path / "vsd").iterdir()) == ["vsd_config.json", "vsd_lora"]
    _perturb(model.unet, VSD_ADAPTER, value=0.0)
    ids = [id(p) for p in vsd.trainable_parameters()]
    vsd.load_weights(tmp_path / "vsd")
    assert [id(p) for p in vsd.trainable_parameters()] == ids
    assert all(torch.equal(a, b) for a, b in zip(saved, vsd.trainable_parameters()))
    with pytest.raises(WeightsError, match="not a VSD regulariser folder"):
        vsd.load_weights(tmp_path)


def test_unshared_copy_mode(sd21_folder):
    model = RDDM.from_sd(sd21_folder)
    vsd = VSDRegularizer(model.unet, model.alphas_cumprod, share_base=False, cfg_scale=1.0)
    assert vsd.unet is not model.unet and "unet" in dict(vsd.named_children())
    assert L.cmb_groups(vsd.unet) == [] and VSD_ADAPTER not in model.unet.peft_config
    z, emb, neg = _data()
    t = torch.tensor([100, 900])
    with torch.no_grad(), L.adapters_disabled(model.unet):  # CFG 1: the conditional prediction of the base
        cond = predict_x0(model.unet(z, t, encoder_hidden_states=emb).sample, z, model.alphas_cumprod[t])
    with torch.no_grad():
        assert torch.allclose(vsd.frozen_x0(z, t, emb, neg), cond, atol=1e-5)
        _perturb(vsd.unet, VSD_ADAPTER)
        assert not torch.allclose(vsd.update_x0(z, t, emb), cond, atol=1e-3)


def test_the_diffusion_loss_targets_epsilon_with_diffusers_noising(fresh, sd21_folder):
    """The update UNet's loss against an independent computation: diffusers' ``DDPMScheduler.add_noise`` of the same
    draws, the ε target (the tiny SD is epsilon-prediction). An x0 target (``MSE(pred, z)``) or a wrong noising
    gives a different number: the test fails on either."""
    from diffusers import DDPMScheduler

    _, vsd = fresh
    _perturb(vsd.unet, VSD_ADAPTER, seed=3)
    z, emb, _ = _data(2, seed=2)
    sched = DDPMScheduler.from_pretrained(sd21_folder, subfolder="scheduler")
    assert sched.config.prediction_type == "epsilon"
    g = torch.Generator().manual_seed(5)
    t = torch.randint(*vsd.diffusion_t_range, (2,), generator=g)
    noise = torch.randn(z.shape, generator=g)
    noisy = sched.add_noise(z, noise, t)
    with L.active_adapter(vsd.unet, VSD_ADAPTER), torch.no_grad():
        pred = vsd.unet(noisy, t, encoder_hidden_states=emb).sample
    eps_ref = torch.nn.functional.mse_loss(pred, noise)
    x0_ref = torch.nn.functional.mse_loss(pred, z)
    with torch.no_grad():
        got = vsd.diffusion_loss(z, emb, torch.Generator().manual_seed(5))
    assert torch.allclose(got, eps_ref, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(got, x0_ref, rtol=1e-2)
