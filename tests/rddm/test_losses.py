"""Losses: per-sample PTP in the sRGB terms, LPIPS against pyiqa's implementation, GAN terms and λ_G."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rawsynth.isp import ISPParams, fixed_isp_params, process, sample_isp_params
from rddm.errors import ConfigError, DataError, WeightsError
from rddm.losses import (DualDomainLoss, adaptive_gan_weight, generator_gan_loss, hinge_d_loss, isp_from_meta,
                         to_srgb, vanilla_d_loss)
from rddm.lpips import BACKBONE_FILES, LIN_FILES, LPIPS, find_lpips_files


def _params(n: int) -> list[ISPParams]:
    return [sample_isp_params(np.random.default_rng(i)) for i in range(n)]


def test_isp_from_meta_uses_each_samples_parameters():
    params = _params(3)
    batch = isp_from_meta([{"key": f"k{i}", "isp": p.to_dict()} for i, p in enumerate(params)])
    x = torch.rand(3, 3, 8, 8)
    ours = to_srgb(x, batch)
    for i, p in enumerate(params):
        assert torch.allclose(ours[i:i + 1], process(x[i:i + 1], p), atol=1e-6)
    assert not torch.allclose(ours[0], process(x[0:1], params[1])[0])  # the parameters matter


def test_isp_from_meta_names_the_bad_sample():
    with pytest.raises(DataError, match="sample k7 has no valid 'isp'"):
        isp_from_meta([{"key": "k7", "isp": {"rgb_gain": 1.0}}])


def test_dual_domain_terms_match_their_definitions():
    params = _params(2)
    pred, target = torch.rand(2, 3, 16, 16, requires_grad=True), torch.rand(2, 3, 16, 16)
    loss = DualDomainLoss(l1_linear=1.0, mse_linear=0.5, l1_srgb=2.0, mse_srgb=0.25)
    out = loss(pred, target, params)
    ps = torch.cat([process(pred[i:i + 1], p) for i, p in enumerate(params)])
    ts = torch.cat([process(target[i:i + 1], p) for i, p in enumerate(params)])
    expect = {"l1_linear": F.l1_loss(pred, target), "mse_linear": F.mse_loss(pred, target),
              "l1_srgb": F.l1_loss(ps, ts), "mse_srgb": F.mse_loss(ps, ts)}
    for k, v in expect.items():
        assert torch.allclose(out.terms[k], v, atol=1e-6), k
    total = expect["l1_linear"] + 0.5 * expect["mse_linear"] + 2 * expect["l1_srgb"] + 0.25 * expect["mse_srgb"]
    assert torch.allclose(out.total, total, atol=1e-6)
    out.total.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_srgb_branch_is_differentiable_in_float64():
    p = fixed_isp_params()
    x = (torch.rand(1, 3, 4, 4, dtype=torch.float64) * 0.3 + 0.05).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: process(t, ISPParams.from_dict(p.to_dict())), (x,))


def test_dual_domain_needs_isp_and_lpips_model():
    with pytest.raises(ConfigError, match="ISP parameters"):
        DualDomainLoss(l1_srgb=1.0)(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ConfigError, match="LPIPS model"):
        DualDomainLoss(lpips=1.0)


# ------------------------------------------------------------------------------------------------ LPIPS


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_equals_pyiqa_with_the_same_weights(net, tmp_path, monkeypatch):
    """Independent oracle: pyiqa's LPIPS (its backbone built without download) with weights saved by the test
    under the expected names; ours, loaded from that folder, gives the same distances."""
    pytest.importorskip("pyiqa")
    import torchvision
    from pyiqa.archs import lpips_arch

    tv = {"alex": torchvision.models.alexnet, "vgg": torchvision.models.vgg16}

    class _Models:  # pyiqa asks torchvision for ImageNet weights: give it random ones instead
        alexnet = staticmethod(lambda weights=None, **k: tv["alex"](weights=None))
        vgg16 = staticmethod(lambda weights=None, **k: tv["vgg"](weights=None))

    monkeypatch.setattr(lpips_arch, "models", _Models)
    torch.manual_seed(0)
    ref = lpips_arch.LPIPS(net=net, pretrained=False)
    for lin in ref.lins:
        torch.nn.init.uniform_(lin.model[1].weight, 0.0, 0.1)
    feats = {}
    for s in range(1, 6):
        feats.update({f"features.{k}": v for k, v in getattr(ref.net, f"slice{s}").state_dict().items()})
    (tmp_path / "checkpoints").mkdir()
    torch.save(feats, tmp_path / "checkpoints" / BACKBONE_FILES[net])
    torch.save({k: v for k, v in ref.state_dict().items() if k.startswith("lin")}, tmp_path / LIN_FILES[net][0])
    ours = LPIPS.from_folder(tmp_path, net)
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x, y), ref(x, y).flatten(), atol=1e-6)


def test_lpips_from_a_full_pyiqa_state_dict_and_safetensors(tmp_path, lpips_folder):
    """A linear-layer file that also holds the backbone (net.sliceK.N.*) needs no backbone file; safetensors
    files are read too."""
    from safetensors.torch import save_file

    ref = LPIPS.from_folder(lpips_folder, "alex")
    bounds = (0, 2, 5, 8, 10, 12)
    full = {}
    for k, v in ref.features.state_dict().items():
        i = int(k.split(".")[0])
        s = next(j for j in range(1, 6) if bounds[j - 1] <= i < bounds[j])
        full[f"net.slice{s}.{k}"] = v.contiguous()
    full.update({f"lin{i}.model.1.weight": lin.weight.contiguous() for i, lin in enumerate(ref.lins)})
    save_file(full, str(tmp_path / "alex.safetensors"))
    assert find_lpips_files(tmp_path, "alex")[0] is None
    other = LPIPS.from_folder(tmp_path, "alex")
    x, y = torch.rand(1, 3, 48, 48), torch.rand(1, 3, 48, 48)
    assert torch.equal(other(x, y), ref(x, y))


def test_lpips_missing_files_are_listed(tmp_path):
    with pytest.raises(WeightsError, match="no such LPIPS weights folder"):
        LPIPS.from_folder(tmp_path / "nope")
    with pytest.raises(WeightsError, match="LPIPS_v0.1_vgg-a78928a0.pth"):
        LPIPS.from_folder(tmp_path, "vgg")
    torch.save({"lin0.model.1.weight": torch.zeros(1, 64, 1, 1)}, tmp_path / "LPIPS_v0.1_vgg-a78928a0.pth")
    with pytest.raises(WeightsError, match="vgg16-397923af.pth"):
        LPIPS.from_folder(tmp_path, "vgg")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_lpips_refuses_pickles_and_mismatches(tmp_path, lpips_folder):
    import shutil

    shutil.copytree(lpips_folder, tmp_path / "w")
    lin = tmp_path / "w" / "hub" / "pyiqa" / LIN_FILES["alex"][0]
    torch.save({"lin0.model.1.weight": torch.zeros(1, 3, 1, 1)}, lin)  # wrong shapes
    with pytest.raises(WeightsError, match="do not match"):
        LPIPS.from_folder(tmp_path / "w", "alex")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    import pickle

    lin.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(WeightsError, match="cannot read weights"):
        LPIPS.from_folder(tmp_path / "w", "alex")


def test_lpips_properties(lpips_folder):
    lp = LPIPS.from_folder(lpips_folder, "alex")
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    y = torch.rand(2, 3, 64, 64)
    d = lp(x, y)
    assert d.shape == (2,) and (d >= 0).all()
    assert torch.allclose(lp(y, y), torch.zeros(2), atol=1e-6)
    d.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in lp.parameters())
    lp.train()
    assert not lp.training


# -------------------------------------------------------------------------------------------------- GAN


def test_gan_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert torch.isclose(hinge_d_loss(real, fake), torch.tensor(0.5 * (0.25 + 0.5)))
    assert torch.isclose(vanilla_d_loss(real, fake),
                         0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean()))
    assert torch.isclose(generator_gan_loss(fake), torch.tensor(1.0))


def test_adaptive_weight_is_the_gradient_norm_ratio():
    torch.manual_seed(0)
    layer = torch.nn.Conv2d(4, 3, 3, padding=1)
    h = torch.rand(2, 4, 8, 8)
    out = layer(h)
    rec = (out - 1).abs().mean()
    gan = -(out * torch.linspace(0, 1, 8)).mean()
    lam = adaptive_gan_weight(rec, gan, layer.weight)
    g1 = torch.autograd.grad(rec, layer.weight, retain_graph=True)[0]
    g2 = torch.autograd.grad(gan, layer.weight, retain_graph=True)[0]
    assert torch.isclose(lam, g1.norm() / (g2.norm() + 1e-4))
    assert not lam.requires_grad
    assert adaptive_gan_weight(rec * 0, gan, layer.weight) == 0
    (rec + lam * gan).backward()  # the graph is still there


def test_training_takes_the_adaptive_weight_at_decoder_conv_out(sd_folder):
    """Eq. 5's λ_G in the RVAE's training loss is the gradient-norm ratio at ``decoder.conv_out.weight`` (LDM's
    ``last_layer``): recomputed here from that layer's gradients it matches ``gan_weight`` of
    :func:`rddm.train.rvae.generator_losses`; the same ratio at any other decoder layer differs (a loss taking it
    elsewhere fails this test)."""
    from rddm.config import RVAETrainConfig, config_from_dict
    from rddm.models.discriminator import PatchDiscriminator
    from rddm.models.rvae import RVAE
    from rddm.train.rvae import Stage1, _gan_input, build_rec_loss, generator_losses

    cfg = config_from_dict(RVAETrainConfig, {"loss": {"lpips": 0.0, "kl": 0.0, "gan": 1.0, "disc_start": 0,
                                                      "sample_posterior": False}})
    torch.manual_seed(0)
    rvae = RVAE.from_sd(sd_folder)
    disc = PatchDiscriminator(3, 8, 2)
    hq = torch.rand(2, 3, 32, 32)
    batch = {"hq": hq, "meta": [{"key": f"k{i}", "isp": p.to_dict()} for i, p in enumerate(_params(2))]}
    rec_loss = build_rec_loss(cfg)
    _, values, rec, isp = generator_losses(Stage1(rvae), rvae, disc, rec_loss, cfg, batch, "cpu")
    assert rvae.last_decoder_layer() is getattr(rvae.decoder.conv_out, "base_layer", rvae.decoder.conv_out).weight
    rec2, _ = Stage1(rvae)(hq, None, False)
    out = rec_loss(rec2, hq, isp).total
    gan = generator_gan_loss(disc(_gan_input(rec2, isp, "linear")))

    def ratio(w):
        g1 = torch.autograd.grad(out, w, retain_graph=True)[0]
        g2 = torch.autograd.grad(gan, w, retain_graph=True)[0]
        return g1.norm() / (g2.norm() + 1e-4)

    want = ratio(rvae.decoder.conv_out.weight)
    assert torch.isclose(values["gan_weight"], want, rtol=1e-4)
    others = [m.weight for n, m in rvae.decoder.named_modules() if isinstance(m, torch.nn.Conv2d) and n != "conv_out"]
    assert others and all(not torch.isclose(ratio(w), want, rtol=1e-2) for w in others[-3:])


def test_ptp_stays_float32_under_autocast():
    p = fixed_isp_params()
    x = torch.rand(1, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = to_srgb(x, p)
    assert y.dtype == torch.float32 and torch.equal(y, process(x, p))
