"""RVAE: loading a diffusers SD folder, input modes, CMB LoRA groups (add, select, switch, mixed batches,
save/load), the discriminator."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKL

from rawsynth.mns import Pattern, cfa_masks
from rddm.errors import ConfigError, WeightsError
from rddm.models.discriminator import PatchDiscriminator
from rddm.models.rvae import RVAE, load_sd_vae

from .conftest import TINY_VAE


def _perturb_lora(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def test_load_sd_vae_from_a_pipeline_folder_and_a_vae_folder(sd_folder):
    a = load_sd_vae(sd_folder)  # like AutoencoderKL.from_pretrained(dir, subfolder="vae")
    b = load_sd_vae(sd_folder / "vae")
    ref = AutoencoderKL.from_pretrained(sd_folder, subfolder="vae")
    for m in (a, b):
        assert all(torch.equal(x, y) for x, y in zip(m.state_dict().values(), ref.state_dict().values()))


def test_load_sd_vae_errors(tmp_path, sd_folder):
    with pytest.raises(WeightsError, match="no such diffusers AutoencoderKL folder") as e:
        load_sd_vae(tmp_path / "stable-diffusion-2-1")
    assert "--sd-model" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no config.json .nor vae/config.json."):
        load_sd_vae(tmp_path / "empty")
    (tmp_path / "noweights" / "vae").mkdir(parents=True)
    (tmp_path / "noweights" / "vae" / "config.json").write_text(
        (sd_folder / "vae" / "config.json").read_text())
    with pytest.raises(WeightsError, match="no weights"):
        load_sd_vae(tmp_path / "noweights")


@pytest.mark.parametrize("mode", ["cfa_masked", "cfa_masked_with_mask"])
def test_from_sd_keeps_the_pretrained_vae(sd_folder, mode):
    vae = load_sd_vae(sd_folder)
    rvae = RVAE.from_sd(sd_folder, mode)
    assert rvae.config.input_mode == mode and rvae.config.in_channels == {"cfa_masked": 3}.get(mode, 6)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = vae.encode(2 * x - 1).latent_dist.mode()
        assert torch.allclose(rvae.encode_linear(x).mode(), ref, atol=1e-5)
        z = torch.randn(2, 4, 16, 16)
        assert torch.allclose(rvae.decode_linear(z), (vae.decode(z).sample + 1) / 2, atol=1e-6)
        # a RAW mosaic enters as the CFA-masked image: the same as encoding that masked image
        raw = torch.rand(2, 1, 32, 32)
        pats = ["GRBG", "BGGR"]
        masked = (2 * raw - 1) * cfa_masks(pats, 2, 32, 32)
        assert torch.allclose(rvae.encode_raw(raw, pats).mode(), vae.encode(masked).latent_dist.mode(), atol=1e-5)


def test_encoder_input_layout():
    rvae = RVAE(**TINY_VAE, in_channels=6, input_mode="cfa_masked_with_mask")
    raw = torch.rand(1, 1, 4, 4)
    x = rvae.encoder_input(raw=raw, patterns="RGGB")
    assert x.shape == (1, 6, 4, 4)
    assert torch.equal(x[0, 3:, 0, :2], torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))  # R G on row 0
    assert torch.equal(x[0, 0, 0, 0], 2 * raw[0, 0, 0, 0] - 1) and x[0, 1, 0, 0] == 0
    lin = rvae.encoder_input(linear=torch.rand(1, 3, 4, 4))
    assert torch.equal(lin[:, 3:], torch.ones(1, 3, 4, 4))
    with pytest.raises(ConfigError, match="needs in_channels=6"):
        RVAE(**TINY_VAE, input_mode="cfa_masked_with_mask")


def test_a_cfa_masked_rvae_folder_is_an_autoencoderkl_folder(tmp_path, sd_folder):
    rvae = RVAE.from_sd(sd_folder)
    rvae.save_pretrained(tmp_path / "rvae")
    plain = AutoencoderKL.from_pretrained(tmp_path / "rvae")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(plain.encode(2 * x - 1).latent_dist.mode(), rvae.encode_linear(x).mode(), atol=1e-6)
    assert json.loads((tmp_path / "rvae" / "config.json").read_text())["_class_name"] == "RVAE"


def test_cmb_groups_add_select_switch_and_mixed_batches(sd_folder):
    rvae = RVAE.from_sd(sd_folder)
    raw = torch.rand(4, 1, 32, 32)
    pats = [Pattern.RGGB, Pattern.BGGR, Pattern.RGGB, Pattern.GBRG]
    with torch.no_grad():
        before = rvae.encode_raw(raw, pats).mode()
    assert rvae.add_cmb_lora(rank=4) == ["cmb_RGGB", "cmb_BGGR", "cmb_GRBG", "cmb_GBRG"]
    assert rvae.cmb_patterns == list(Pattern)
    assert {c.r for c in rvae.peft_config.values()} == {4}
    with torch.no_grad():  # new groups start as no-ops (LoRA B = 0)
        assert torch.allclose(rvae.encode_raw(raw, pats).mode(), before, atol=1e-5)
    _perturb_lora(rvae)
    with torch.no_grad():
        mixed = rvae.encode_raw(raw, pats).mode()
        # a mixed batch = each sample encoded with its own pattern's group
        for i, p in enumerate(pats):
            assert torch.allclose(mixed[i:i + 1], rvae.encode_raw(raw[i:i + 1], p).mode(), atol=1e-5)
        # switching the group changes the output (same input pixels, same CFA masks)
        as_rggb = rvae.encode_raw(raw[1:2], "RGGB")
        other_group = rvae.encode_raw(raw[1:2], "BGGR")  # pattern BGGR: other masks and other group
        assert not torch.allclose(as_rggb.mode(), other_group.mode(), atol=1e-3)
        inp = rvae.encoder_input(raw=raw[1:2], patterns="BGGR")
        from rddm.lora import active_cmb

        with active_cmb(rvae, "BGGR"):
            a = rvae._encode(inp)
        with active_cmb(rvae, "GRBG"):
            b = rvae._encode(inp)
        assert not torch.allclose(a, b, atol=1e-3)
        # linear images bypass the groups
        x = torch.rand(1, 3, 32, 32)
        assert torch.allclose(rvae.encode_linear(x).mode(),
                              load_sd_vae(sd_folder).encode(2 * x - 1).latent_dist.mode(), atol=1e-5)


def test_cmb_training_reaches_each_group_on_its_samples(sd_folder):
    rvae = RVAE.from_sd(sd_folder)
    rvae.add_cmb_lora(["RGGB", "BGGR", "GRBG"])
    _perturb_lora(rvae)
    assert not any(p.requires_grad for n, p in rvae.named_parameters() if "lora_" not in n)  # base frozen
    rvae.encode_raw(torch.rand(3, 1, 32, 32), ["RGGB", "BGGR", "RGGB"]).mode().square().mean().backward()
    touched = {n.split(".")[-2] for n, p in rvae.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert touched == {"cmb_RGGB", "cmb_BGGR"}
    assert all(p.requires_grad for n, p in rvae.named_parameters() if "lora_" in n)  # flags left as they were


def test_cmb_errors(sd_folder):
    rvae = RVAE.from_sd(sd_folder)
    rvae.add_cmb_lora(["RGGB"])
    with pytest.raises(ConfigError, match="no CMB LoRA group for BGGR"):
        rvae.encode_raw(torch.rand(1, 1, 16, 16), "BGGR")
    with pytest.raises(ConfigError, match="already has a CMB LoRA group for RGGB"):
        rvae.add_cmb_lora(["RGGB"])


def test_save_load_with_cmb_groups_gives_identical_outputs(tmp_path, sd_folder):
    rvae = RVAE.from_sd(sd_folder, "cfa_masked_with_mask")
    rvae.add_cmb_lora(["RGGB", "GBRG"])
    _perturb_lora(rvae, seed=3)
    rvae.save_pretrained(tmp_path / "rvae")
    assert sorted(p.name for p in (tmp_path / "rvae").iterdir()) == [
        "cmb_lora", "config.json", "diffusion_pytorch_model.safetensors"]
    assert sorted(p.name for p in (tmp_path / "rvae" / "cmb_lora").iterdir()) == ["GBRG", "RGGB"]
    assert sorted(p.name for p in (tmp_path / "rvae" / "cmb_lora" / "RGGB").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors"]
    back = RVAE.from_pretrained(tmp_path)  # the training output folder works too (its rvae/)
    assert back.cmb_patterns == [Pattern.GBRG, Pattern.RGGB]
    raw = torch.rand(3, 1, 32, 32)
    pats = ["GBRG", "RGGB", "GBRG"]
    z = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        assert torch.equal(back.encode_raw(raw, pats).mode(), rvae.encode_raw(raw, pats).mode())
        assert torch.equal(back.decode_linear(z), rvae.decode_linear(z))
    # saving again without groups removes the stale cmb_lora/
    RVAE.from_sd(sd_folder, "cfa_masked_with_mask").save_pretrained(tmp_path / "rvae")
    assert not (tmp_path / "rvae" / "cmb_lora").exists()


def test_rvae_from_pretrained_errors(tmp_path, sd_folder):
    with pytest.raises(WeightsError, match="not a RVAE"):
        RVAE.from_pretrained(sd_folder / "vae")


def test_scale_latents_uses_the_config():
    rvae = RVAE(**TINY_VAE, scaling_factor=0.5)
    z = torch.randn(1, 4, 2, 2)
    assert torch.equal(rvae.unscale_latents(rvae.scale_latents(z)), z)
    assert torch.equal(rvae.scale_latents(z), 0.5 * z)


def test_discriminator_shapes_and_save_load(tmp_path):
    d = PatchDiscriminator(3, 8, 2)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert d(x).shape == (2, 1, 6, 6)
    d.save_pretrained(tmp_path / "d")
    back = PatchDiscriminator.from_pretrained(tmp_path / "d")
    assert torch.equal(back(x), d(x))
    # GroupNorm: each sample's logits do not depend on the rest of the batch (real/fake are concatenated)
    assert torch.allclose(d(x[:1]), d(x)[:1], atol=1e-6)
