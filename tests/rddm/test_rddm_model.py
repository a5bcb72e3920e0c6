"""RDDM (the one-step restorer): loading from a local SD folder, the one-step formula against independent oracles,
CMB LoRA routing per Bayer pattern (mixed batches, the all-in-one ablation), save/load, merging, trainable parts,
dtypes and errors. Tiny models from the ``sd21_folder`` fixture."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from rawsynth.errors import ShapeError
from rddm import lora as L
from rddm.errors import ConfigError, WeightsError
from rddm.models.rddm import RDDM, RDDMConfig, add_noise, predict_x0, prediction_target
from rddm.models.rvae import RVAE

PATS = ["RGGB", "BGGR", "GRBG", "GBRG"]


@pytest.fixture(scope="module")
def base(sd21_folder) -> RDDM:
    return RDDM.from_sd(sd21_folder).eval()


@pytest.fixture
def model(base) -> RDDM:
    return copy.deepcopy(base)


def _inputs(b=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, size, size, generator=g), torch.randn(1, 77, 32, generator=g)


def _set_group(model: RDDM, group: str, value: float | None = None, seed: int = 0) -> None:
    """Set every LoRA B weight of ``group`` (encoder and UNet) to random values (or to ``value``)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.lora_named_parameters():
            if f".lora_B.cmb_{group}." in n:
                p.copy_(torch.full_like(p, value) if value is not None else 0.3 * torch.randn(p.shape, generator=g))


def test_from_sd_builds_the_one_step_pipeline(model, sd21_folder):
    assert model.latent_factor == 2 and model.size_multiple == 4
    assert model.config.sd_model == str(sd21_folder.resolve()) and model.config.rvae_model is None
    for m in (model.rvae, model.unet):
        assert L.cmb_groups(m) == PATS
        assert {c.r for c in m.peft_config.values()} == {4}
    # OSEDiff's UNet targets: convs, attention, proj_in/out, feed-forward; not the time embedding
    wrapped = {n for n, m in model.unet.named_modules() if hasattr(m, "lora_A")}
    assert "conv_in" in wrapped and "conv_out" in wrapped
    for suffix in ("attn1.to_q", "attn2.to_k", "attn2.to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                   "resnets.0.conv1", "resnets.0.conv_shortcut", "downsamplers.0.conv"):
        assert any(n.endswith(suffix) for n in wrapped), suffix
    assert not any("time_emb" in n or "norm" in n for n in wrapped)
    assert "quant_conv" in {n for n, m in model.rvae.named_modules() if hasattr(m, "lora_A")}
    assert not any(n.startswith(("decoder", "post_quant")) for n, m in model.rvae.named_modules()
                   if hasattr(m, "lora_A"))


def test_one_step_formula_against_independent_oracles(model, sd21_folder):
    raw, emb = _inputs()
    pats = ["RGGB", "BGGR", "RGGB", "GBRG"]
    rvae = RVAE.from_sd(sd21_folder)
    unet = UNet2DConditionModel.from_pretrained(sd21_folder, subfolder="unet")
    # SD-2.1's scheduler config has clip_sample false (latents are not in [-1, 1]); the fixture leaves the default
    sched = DDPMScheduler.from_pretrained(sd21_folder, subfolder="scheduler", clip_sample=False)
    with torch.no_grad():  # new groups are no-ops (B = 0): the plain SD one-step pipeline on the RVAE
        out = model(raw, pats, emb)
        z = rvae.encode_raw(raw, pats).mode() * rvae.config.scaling_factor
        eps = unet(z, torch.full((4,), 999), encoder_hidden_states=emb.expand(4, -1, -1)).sample
        a = sched.alphas_cumprod[999]
        z0 = (z - (1 - a).sqrt() * eps) / a.sqrt()  # by hand
        ref = sched.step(eps, 999, z, generator=torch.Generator().manual_seed(0)).pred_original_sample  # diffusers
        lin = (rvae.decode(z0 / rvae.config.scaling_factor).sample + 1) / 2
    assert torch.allclose(model.encode(raw, pats), z, atol=1e-6)
    # x0 = (z - sqrt(1-a)·eps)/sqrt(a) with a = alpha_bar_999 ~ 0.0047 magnifies float32 rounding in eps 14.6x and
    # latents reach |14|: compare with the amplified float32 error (1e-5/sqrt(a) + 1e-5 relative), not a bare 1e-4
    tol = dict(atol=1e-5 / a.sqrt().item(), rtol=1e-5)
    assert torch.allclose(out.latent, z0, **tol) and torch.allclose(out.latent, ref, **tol)
    assert torch.allclose(out.linear, lin, atol=1e-5)
    assert out.linear.shape == (4, 3, 16, 16) and out.latent.shape == (4, 4, 8, 8)
    assert torch.equal(model.alpha_bar, sched.alphas_cumprod[999].float())


def test_schedule_helpers_round_trip():
    x0, noise = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    a = torch.tensor([0.9, 0.3, 0.004])
    xt = add_noise(x0, noise, a)
    for kind in ("epsilon", "v_prediction"):
        assert torch.allclose(predict_x0(prediction_target(x0, noise, a, kind), xt, a, kind), x0, atol=1e-4)
    with pytest.raises(ConfigError, match="prediction_type"):
        predict_x0(noise, xt, a, "sample")


def test_each_pattern_routes_to_its_own_group(model):
    raw, emb = _inputs()
    pats = ["RGGB", "BGGR", "RGGB", "GBRG"]
    with torch.no_grad():
        before = model(raw, pats, emb).linear
        _set_group(model, "RGGB")
        after = model(raw, pats, emb).linear
        # only the RGGB samples change, the others are bit-identical
        assert not torch.allclose(after[[0, 2]], before[[0, 2]], atol=1e-3)
        assert torch.equal(after[[1, 3]], before[[1, 3]])
        # the wrong group is never used: poison every other group, the RGGB samples stay finite and identical
        for g in ("BGGR", "GRBG", "GBRG"):
            _set_group(model, g, float("nan"))
        rggb = model(raw[[0, 2]], "RGGB", emb).linear
        assert torch.isfinite(rggb).all() and torch.allclose(rggb, after[[0, 2]], atol=1e-5)
        assert torch.isnan(model(raw[:1], "BGGR", emb).linear).all()
        # switching the group alone (same latent, same prompt) changes the UNet's output
        _set_group(model, "BGGR", seed=1)
        z = model.encode(raw[:1], "RGGB")
        assert not torch.allclose(model.denoise(z, "RGGB", emb), model.denoise(z, "BGGR", emb), atol=1e-3)


def test_mixed_batch_equals_per_sample_results(model):
    raw, emb = _inputs(5)
    pats = ["GBRG", "RGGB", "GBRG", "BGGR", "GRBG"]
    for i, g in enumerate(PATS):
        _set_group(model, g, seed=i)
    embs = torch.randn(5, 77, 32)
    with torch.no_grad():
        mixed = model(raw, pats, embs)
        for i, p in enumerate(pats):
            one = model(raw[i:i + 1], p, embs[i:i + 1])
            assert torch.allclose(mixed.linear[i:i + 1], one.linear, atol=1e-5)
            assert torch.allclose(mixed.latent[i:i + 1], one.latent, atol=1e-4)  # 1/√ᾱ ≈ 15 amplifies rounding


def test_all_in_one_mode_shares_one_group(sd21_folder, base):
    m = RDDM.from_sd(sd21_folder, lora_mode="all_in_one").eval()
    assert L.cmb_groups(m.rvae) == ["ALL"] and L.cmb_groups(m.unet) == ["ALL"]
    assert 4 * len(m.trainable_parameters()) == len(base.trainable_parameters())
    _set_group(m, "ALL")
    raw, emb = _inputs(2)
    with torch.no_grad():
        z = m.encode(raw, "RGGB")
        outs = [m.denoise(z, p, emb) for p in PATS]  # every pattern uses the same group
        assert all(torch.equal(o, outs[0]) for o in outs)
        assert not torch.allclose(outs[0], base.denoise(z, "RGGB", emb), atol=1e-3)  # and it is used
        assert not torch.allclose(z, base.encode(raw, "RGGB"), atol=1e-4)  # in the encoder too
        sf = m.rvae.config.scaling_factor  # RVAE.encode_raw routes every pattern to the shared group as well
        assert torch.allclose(m.rvae.encode_raw(raw, ["RGGB", "GBRG"]).mode() * sf, m.encode(raw, ["RGGB", "GBRG"]))
    mixed = RDDM.from_sd(sd21_folder, lora_mode="all_in_one", patterns=["RGGB", "BGGR"])
    with pytest.raises(ConfigError, match=r"no LoRA group for Bayer pattern\(s\) \['GRBG'\]"):
        mixed.encode(raw, ["RGGB", "GRBG"])


def test_save_load_is_bit_identical(model, tmp_path, sd21_folder):
    for i, g in enumerate(PATS):
        _set_group(model, g, seed=i)
    model.save_pretrained(tmp_path / "rddm")
    assert sorted(p.name for p in (tmp_path / "rddm").iterdir()) == ["rddm_config.json", "rvae_lora", "unet_lora"]
    assert sorted(p.name for p in (tmp_path / "rddm" / "unet_lora").iterdir()) == sorted(PATS)
    assert sorted(p.name for p in (tmp_path / "rddm" / "unet_lora" / "RGGB").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors"]
    cfg = json.loads((tmp_path / "rddm" / "rddm_config.json").read_text())
    assert cfg["_class_name"] == "RDDM" and cfg["sd_model"] == str(sd21_folder.resolve())
    back = RDDM.from_pretrained(tmp_path)  # a training OUT folder works too (its rddm/)
    assert not back.training and back.config == model.config
    raw, emb = _inputs()
    pats = ["GRBG", "RGGB", "BGGR", "GBRG"]
    with torch.no_grad():
        a, b = model(raw, pats, emb), back(raw, pats, emb)
    assert torch.equal(a.linear, b.linear) and torch.equal(a.latent, b.latent)
    # in-place loading for exact resume: same parameter objects, the saved values
    fresh = copy.deepcopy(model)
    _set_group(fresh, "RGGB", 0.0)
    ids = [id(p) for p in fresh.trainable_parameters()]
    fresh.load_lora_weights(tmp_path / "rddm")
    assert [id(p) for p in fresh.trainable_parameters()] == ids
    assert all(torch.equal(p, q) for p, q in zip(fresh.trainable_parameters(), model.trainable_parameters()))


def test_load_errors_name_the_folder_and_the_fix(model, tmp_path, sd21_folder):
    with pytest.raises(WeightsError, match="no such RDDM folder"):
        RDDM.from_pretrained(tmp_path / "nothing")
    model.save_pretrained(tmp_path / "m")
    cfg_file = tmp_path / "m" / "rddm_config.json"
    d = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps({**d, "sd_model": str(tmp_path / "moved-away")}))
    with pytest.raises(WeightsError, match="moved-away recorded in rddm_config.json does not exist") as e:
        RDDM.from_pretrained(tmp_path / "m")
    assert "--sd-model" in str(e.value)
    RDDM.from_pretrained(tmp_path / "m", sd_model=sd21_folder)  # the override finds the base
    cfg_file.write_text(json.dumps({**d, "lora_rnk": 4}))
    with pytest.raises(ConfigError, match=r"unknown RDDM config keys \['lora_rnk'\]"):
        RDDM.from_pretrained(tmp_path / "m")
    cfg_file.write_text(json.dumps({**d, "scaling_factor": 0.5}))
    with pytest.raises(WeightsError, match="latent scale"):
        RDDM.from_pretrained(tmp_path / "m")
    cfg_file.write_text(json.dumps(d))
    rank8 = RDDM.from_sd(sd21_folder, lora_rank=8)
    with pytest.raises(WeightsError, match="of rank 4, this one .* of rank 8"):  # resume into another model
        rank8.load_lora_weights(tmp_path / "m")
    cfg_file.write_text(json.dumps({**d, "lora_rank": 8}))  # a config that lies about the weights
    with pytest.raises(WeightsError, match=r"has shape \(4, 3, 3, 3\), the model \(8, 3, 3, 3\)"):
        rank8.load_lora_weights(tmp_path / "m")
    cfg_file.write_text(json.dumps(d))
    (tmp_path / "m" / "unet_lora" / "GBRG" / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(WeightsError, match="unreadable LoRA weights"):
        RDDM.from_pretrained(tmp_path / "m")
    with pytest.raises(WeightsError, match="no such diffusers UNet2DConditionModel folder"):
        RDDM.from_sd(tmp_path / "sd-2-1")
    with pytest.raises(WeightsError, match="no noise schedule"):
        RDDM.from_sd(sd21_folder / "unet")


def test_merged_equals_unmerged_and_follows_the_pattern(model):
    raw, emb = _inputs()
    for i, g in enumerate(PATS):
        _set_group(model, g, seed=i)
    pats = ["BGGR", "RGGB", "BGGR", "GBRG"]
    with torch.no_grad():
        ref = model(raw, pats, emb).linear
        model.merge_lora("BGGR")
        assert model.merged_group == "cmb_BGGR"
        assert L.merged_adapters(model.unet) == ["cmb_BGGR"] == L.merged_adapters(model.rvae)
        bggr = model(raw[[0, 2]], "BGGR", emb).linear
        assert torch.allclose(bggr, ref[[0, 2]], atol=1e-5)
        # a mixed batch re-merges per pattern: still the right group for each sample
        assert torch.allclose(model(raw, pats, emb).linear, ref, atol=1e-5)
        # merged weights use only that group: poison the others
        model.merge_lora("RGGB")
        for g in ("BGGR", "GRBG", "GBRG"):
            _set_group(model, g, float("nan"))
        assert torch.allclose(model(raw[1:2], "RGGB", emb).linear, ref[1:2], atol=1e-5)
        model.unmerge_lora()
        assert model.merged_group is None and not L.merged_adapters(model.unet)
        assert torch.allclose(model(raw[1:2], "RGGB", emb).linear, ref[1:2], atol=1e-5)
    model.merge_lora("GRBG")
    model.train()  # training unmerges
    assert model.merged_group is None


def test_only_the_cmb_lora_trains_and_each_group_on_its_samples(model):
    model.train()
    trainable = model.trainable_parameters()
    assert {id(p) for p in trainable} == {id(p) for p in model.parameters() if p.requires_grad}
    assert all("lora_" in n and ".cmb_" in n for n, _ in model.lora_named_parameters())
    _set_group(model, "RGGB")
    _set_group(model, "GBRG")
    raw, emb = _inputs(3)
    out = model(raw, ["RGGB", "GBRG", "RGGB"], emb, generator=torch.Generator().manual_seed(0))
    out.linear.square().mean().backward()
    touched = {n.split(".")[-2] for n, p in model.lora_named_parameters() if p.grad is not None
               and p.grad.abs().sum() > 0}
    assert touched == {"cmb_RGGB", "cmb_GBRG"}
    assert all(p.grad is None for n, p in model.named_parameters() if "lora_" not in n)  # decoder, bases frozen
    assert any(n.startswith("rvae.") and p.grad is not None for n, p in model.lora_named_parameters())
    # plain gradient checkpointing would recompute blocks in backward with another group active: refused
    model.unet.enable_gradient_checkpointing()
    with pytest.raises(ConfigError, match="plain gradient checkpointing"):
        model(raw, "RGGB", emb)
    with torch.no_grad():
        model(raw, "RGGB", emb)  # no autograd, no recomputation: fine
    # RDDM's own checkpointing replays each block with its group: the very same gradients
    grads = {n: p.grad.clone() for n, p in model.lora_named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    model.enable_gradient_checkpointing()
    assert model.unet.is_gradient_checkpointing and model.rvae.is_gradient_checkpointing
    out = model(raw, ["RGGB", "GBRG", "RGGB"], emb, generator=torch.Generator().manual_seed(0))
    out.linear.square().mean().backward()
    again = {n: p.grad for n, p in model.lora_named_parameters() if p.grad is not None}
    assert again.keys() == grads.keys() and all(torch.allclose(again[n], grads[n], atol=1e-6) for n in grads)
    model.disable_gradient_checkpointing()
    # training mode samples the posterior with the generator (reproducibly); eval uses the mode
    with torch.no_grad():
        a = model.encode(raw, "RGGB", torch.Generator().manual_seed(1), sample=True)
        b = model.encode(raw, "RGGB", torch.Generator().manual_seed(1), sample=True)
        assert torch.equal(a, b) and not torch.equal(a, model.encode(raw, "RGGB"))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inference(base, dtype, tmp_path):
    raw, emb = _inputs(2)
    with torch.no_grad():
        ref = base(raw, ["RGGB", "GRBG"], emb).linear
        low = copy.deepcopy(base).to(dtype)
        assert low.dtype == dtype and all(p.dtype == dtype for p in low.trainable_parameters())
        out = low(raw, ["RGGB", "GRBG"], emb).linear
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert (out.float() - ref).abs().mean() < 0.05
    base.save_pretrained(tmp_path / "m")
    loaded = RDDM.from_pretrained(tmp_path / "m", torch_dtype=dtype)  # the same cast through the loading path
    assert loaded.dtype == dtype and loaded.alphas_cumprod.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(loaded(raw, ["RGGB", "GRBG"], emb).linear, out)


def test_input_errors(base):
    raw, emb = _inputs(2)
    with pytest.raises(ShapeError, match="multiples of 4"):
        base.encode(torch.rand(1, 1, 18, 16), "RGGB")
    with pytest.raises(ShapeError, match="raw"):
        base.encode(torch.rand(1, 3, 16, 16), "RGGB")
    with pytest.raises(ShapeError, match="unknown Bayer pattern"):
        base.encode(raw, ["RGGB", "XTRANS"])
    with pytest.raises(ShapeError, match="width 16, the UNet expects 32"):
        base.denoise(torch.randn(2, 4, 8, 8), "RGGB", torch.randn(2, 77, 16))
    with pytest.raises(ShapeError, match="batch 3"):
        base.denoise(torch.randn(2, 4, 8, 8), "RGGB", torch.randn(3, 77, 32))
    for bad, msg in (({"lora_mode": "shared"}, "lora_mode"), ({"lora_rank": 0}, "lora_rank"),
                     ({"patterns": ["RGBG"]}, "patterns"), ({"timestep": -1}, "timestep")):
        with pytest.raises(ConfigError, match=msg):
            RDDMConfig(**bad)


def test_parameter_and_flop_counts(base):
    n = base.num_parameters()
    plain = UNet2DConditionModel.from_pretrained(base.config.sd_model, subfolder="unet")
    assert n["unet"] == sum(p.numel() for p in plain.parameters())
    assert n["lora"] == sum(p.numel() for p in base.trainable_parameters())
    assert n["total"] == sum(p.numel() for p in base.parameters())
    f16, f32 = base.flops(16, 16), base.flops(32, 32)
    assert 3.9 < f32 / f16 < 8  # 4x the pixels: convolutions scale linearly, self-attention quadratically
