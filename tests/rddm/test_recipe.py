"""OSEDiff's recipe as the defaults (issue 16): LoRA scale and initialisation checked against peft configured the
way OSEDiff's code configures it, the MSE on [-1, 1] images, the global batch split over 8 processes, loss terms
that would never run and an uncalibrated latent scale refused at start-up."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from rddm.config import RDDMTrainConfig, RVAETrainConfig, config_from_dict
from rddm.errors import ConfigError
from rddm.train.recipe import check_terms_activate, effective_config, resolve_batch

# ------------------------------------------------------------------------------------------------- batch


def test_global_batch_16_over_8_processes():
    """8 processes, the paper's 16: every rank runs 2 samples per step, no accumulation; the samples of all ranks
    add up to exactly 16 for any memory cap; the defaults give that split."""
    world = 8
    for cap in range(1, 17):
        splits = [resolve_batch(16, world, cap) for _rank in range(world)]
        assert len(set(splits)) == 1
        micro, accum = splits[0]
        assert micro <= cap and sum(micro * accum for _ in range(world)) == 16
    assert resolve_batch(16, 8, 16) == (2, 1)
    assert resolve_batch(16, 8, 1) == (1, 2)
    cfg = effective_config(RDDMTrainConfig(), world)
    assert (cfg.batch_size, cfg.grad_accum_steps, cfg.global_batch_size) == (2, 1, None)
    one = effective_config(RDDMTrainConfig(batch_size=4), 1)
    assert (one.batch_size, one.grad_accum_steps) == (4, 4)  # 16 on one GPU that holds 4: 4 micro-batches
    assert resolve_batch(16, 1, 5) == (4, 4)  # the largest divisor of the share that fits


@pytest.mark.parametrize("world", [3, 5, 6, 7, 32])
def test_global_batch_refuses_world_sizes_that_do_not_divide(world):
    with pytest.raises(ConfigError, match=f"does not split over {world} processes"):
        effective_config(RDDMTrainConfig(), world)


def test_global_batch_and_accumulation_are_exclusive():
    with pytest.raises(ConfigError, match="accumulation is derived from global_batch_size"):
        config_from_dict(RDDMTrainConfig, {"grad_accum_steps": 2})
    assert config_from_dict(RDDMTrainConfig, {"grad_accum_steps": 2, "global_batch_size": None}).grad_accum_steps == 2


# ----------------------------------------------------------------------------------------------- LoRA


def _lora_a(model, adapter: str, module: str) -> tuple[torch.Tensor, float]:
    m = dict(model.named_modules())[module]
    return m.lora_A[adapter].weight.detach(), float(m.scaling[adapter])


def test_lora_scale_and_init_match_osediffs_peft_config(sd21_folder):
    """The defaults build every CMB group (and the VSD LoRA) as OSEDiff's ``LoraConfig(r=rank,
    init_lora_weights="gaussian", target_modules=...)`` builds its adapters: peft's default alpha 8 (scale 2 at
    rank 4) and ``A ~ N(0, 1/rank)``. Reference: peft itself, configured with OSEDiff's arguments on the same UNet."""
    from peft import LoraConfig

    from rddm import lora as _lora
    from rddm.models.rddm_config import load_sd_unet
    from rddm.train.rddm import build_rddm, build_vsd

    cfg = config_from_dict(RDDMTrainConfig, {"model": {"sd_model": str(sd21_folder)}})
    rddm = build_rddm(cfg)
    vsd = build_vsd(cfg, rddm)
    ref = load_sd_unet(str(sd21_folder))
    torch.manual_seed(0)
    ref.add_adapter(LoraConfig(r=4, init_lora_weights="gaussian", target_modules=_lora.UNET_TARGETS),
                    adapter_name="default_encoder")  # OSEDiff's call: no lora_alpha
    linear = [n for n, m in ref.named_modules() if hasattr(m, "lora_A") and isinstance(m.base_layer, torch.nn.Linear)
              and m.base_layer.in_features >= 32]
    assert linear
    a_ref, s_ref = _lora_a(ref, "default_encoder", linear[0])
    assert s_ref == 2.0
    for model, adapter in ((rddm.unet, "cmb_RGGB"), (rddm.unet, "cmb_GBRG"), (vsd.unet, "vsd")):
        a, s = _lora_a(model, adapter, linear[0])
        assert s == s_ref
        # same distribution: N(0, 1/r) (kaiming-uniform's std here would be ~1/sqrt(3 * fan_in))
        assert abs(a.std().item() - a_ref.std().item()) < 0.25 * a_ref.std().item()
        assert abs(a.std().item() - 0.25) < 0.06
    convs = [n for n, m in rddm.rvae.named_modules() if hasattr(m, "lora_A")
             and isinstance(m.base_layer, torch.nn.Conv2d)]
    a, s = _lora_a(rddm.rvae, "cmb_RGGB", convs[0])
    assert s == 2.0 and abs(a.std().item() - 0.25) < 0.08
    old = build_rddm(config_from_dict(RDDMTrainConfig, {"model": {"sd_model": str(sd21_folder), "lora_alpha": None,
                                                                   "lora_init": "kaiming"}}))
    a_old, s_old = _lora_a(old.unet, "cmb_RGGB", linear[0])
    assert s_old == 1.0 and a_old.std().item() < 0.5 * a_ref.std().item()


def test_mse_on_signed_images_reproduces_osediffs_balance():
    """``mse_range: signed`` (default): the MSE terms equal ``F.mse_loss`` of the images mapped to [-1, 1], as
    OSEDiff computes ``loss_l2`` (4x the [0, 1] MSE); ``unit`` keeps the [0, 1] MSE."""
    from rddm.losses import DualDomainLoss
    from rddm.train.rddm import build_rec_loss

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    cfg = config_from_dict(RDDMTrainConfig, {"loss": {"srgb_domain": False, "vsd": False}})
    rec = build_rec_loss(cfg)
    osediff = F.mse_loss(x * 2 - 1, y * 2 - 1)
    assert torch.allclose(rec(x, y, None).total, osediff, rtol=1e-6)
    unit = build_rec_loss(config_from_dict(RDDMTrainConfig, {"loss": {"srgb_domain": False, "vsd": False,
                                                                      "mse_range": "unit"}}))
    assert torch.allclose(unit(x, y, None).total, F.mse_loss(x, y), rtol=1e-6)
    assert isinstance(rec, DualDomainLoss) and rec.weights["mse_linear"] == 4.0
    full = build_rec_loss(config_from_dict(RDDMTrainConfig, {"loss": {"rgb_lpips": 0}}))
    assert full.weights["mse_srgb"] == 4.0


# ----------------------------------------------------------------------------------- start-up checks


def test_default_rvae_run_starts_the_gan():
    c = RVAETrainConfig()
    assert c.loss.gan > 0 and c.loss.disc_start < c.max_steps
    check_terms_activate(c, {"loss.gan": (c.loss.gan, c.loss.disc_start)})
    with pytest.raises(ConfigError, match="would never be computed"):
        check_terms_activate(RVAETrainConfig(max_steps=5001), {"loss.gan": (c.loss.gan, c.loss.disc_start)})
    check_terms_activate(RVAETrainConfig(max_steps=10), {"loss.gan": (0.0, 5001)})  # weight 0: off on purpose


def test_training_refuses_terms_that_never_run_and_an_uncalibrated_scale(sd21_folder, shards, lpips_folder,
                                                                         tmp_path):
    from rddm.models.rvae import RVAE
    from rddm.train.rddm import check_latent_scale
    from rddm.train.rvae import train_rvae

    d = {"max_steps": 4, "batch_size": 2, "tensorboard": False, "data": {"crop": 32, "num_workers": 0,
                                                                       "shards": [str(shards)]},
         "model": {"sd_model": str(sd21_folder)},
         "loss": {"lpips": 0.0, "disc_start": 4, "disc_layers": 2, "disc_channels": 8}}
    with pytest.raises(ConfigError, match=r"loss.gan .*starts at step 4.*max_steps 4"):
        train_rvae(config_from_dict(RVAETrainConfig, d), tmp_path / "run", device="cpu", progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    rvae = tmp_path / "rvae"
    RVAE.from_sd(sd21_folder).save_pretrained(rvae)
    cfg = config_from_dict(RDDMTrainConfig, {"model": {"sd_model": str(sd21_folder), "rvae": str(rvae)}})
    with pytest.raises(ConfigError, match="never calibrated") as e:
        check_latent_scale(cfg)
    assert "calibrate-latent-scale" in e.value.fix
    check_latent_scale(config_from_dict(RDDMTrainConfig, {"model": {"rvae": str(rvae),
                                                                     "accept_uncalibrated_scale": True}}))
    (rvae / "latent_scale.json").write_text(json.dumps({"scaling_factor": 1.0}))
    check_latent_scale(cfg)
    from rddm.train.rddm import train_rddm

    bad = config_from_dict(RDDMTrainConfig, {"max_steps": 3, "loss": {"vsd_start": 3}})
    with pytest.raises(ConfigError, match="lambda_vsd"):
        train_rddm(bad, tmp_path / "r2", device="cpu", progress=False)
