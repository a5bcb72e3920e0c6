"""``rddm train`` (paper Eq. 6): CLI end to end, exact resume, two-process DDP (gloo), the loss falling on a fixed
batch with each Bayer pattern training only its own LoRA groups, the ablation switches (Tables 5 and 7), and
user errors. Tiny models: the ``sd21_folder`` SD-2.1-like pipeline and an RVAE saved from its VAE."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from rddm.cli import main
from rddm.config import RDDMTrainConfig, config_from_dict

from .conftest import nested_equal, run_cli, write_yaml

CKPT_FILES = ["config.yaml", "rng_states.pt", "trainer_state.json", "training_state.pt"]


def _cfg_dict(shards, sd, rvae, lpips, **over) -> dict:
    d = {"max_steps": 4, "batch_size": 2, "global_batch_size": None, "log_every": 1, "save_every": 2,
         "keep_checkpoints": 0, "tensorboard": False, "mixed_precision": "no",
         "data": {"crop": 32, "num_workers": 0, "shuffle": 0, "flips": True, "shards": [str(shards)]},
         "optim": {"lr": 1e-3, "max_grad_norm": None}, "reg_optim": {"lr": 1e-3},
         "model": {"sd_model": str(sd), "rvae": str(rvae), "accept_uncalibrated_scale": True},
         "loss": {"lpips_net": "alex", "lpips_weights": str(lpips)}}
    for k, v in over.items():
        if isinstance(v, dict):
            d.setdefault(k, {}).update(v)
        else:
            d[k] = v
    return d


def _cfg(*a, **over) -> RDDMTrainConfig:
    return config_from_dict(RDDMTrainConfig, _cfg_dict(*a, **over))


def _metrics(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]


def _safetensors(root: Path) -> dict[str, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    return {str(p.relative_to(root)): load_file(str(p)) for p in sorted(root.rglob("*.safetensors"))}




@pytest.fixture(scope="module")
def two_shards(tmp_path_factory) -> Path:
    """Two ``rddm``-mode shards of one 64² sample each (one per DDP rank)."""
    from rawsynth.generate import generate
    from rawsynth.pipeline import SynthConfig
    from rawsynth.sources import bundled_sources

    out = tmp_path_factory.mktemp("shards") / "rddm2"
    generate(bundled_sources()[2:4], out, SynthConfig(mode="rddm", crop=64, crops_per_image=1, save_srgb=False),
             seed=1, shard_size=1, workers=1, progress=False)
    return out


@pytest.fixture
def paths(rddm_shards, sd21_folder, rvae_folder, lpips_folder):
    return rddm_shards, sd21_folder, rvae_folder, lpips_folder


# ------------------------------------------------------------------------------------------ end to end


def test_train_cli_end_to_end(paths, tmp_path, capsys):
    from rddm.models.rddm import RDDM

    shards, sd, rvae, lpips = paths
    d = _cfg_dict(*paths, max_steps=3)  # the paths come from the flags instead
    d["data"].pop("shards")
    d.pop("model")
    d["loss"].pop("lpips_weights")
    cfg = write_yaml(tmp_path / "rddm.yaml", d)
    out = tmp_path / "out"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--shards", str(shards), "--sd-model", str(sd),
                 "--rvae", str(rvae), "--lpips-weights", str(lpips), "--device", "cpu", "--no-progress"]) == 0
    assert "rddm train: 3 steps" in capsys.readouterr().out
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    groups = ["BGGR", "GBRG", "GRBG", "RGGB"]
    model_files = {"rddm/rddm_config.json", "vsd/vsd_config.json", "vsd/vsd_lora/adapter_model.safetensors"}
    model_files |= {f"rddm/{part}_lora/{g}/adapter_model.safetensors" for part in ("rvae", "unet") for g in groups}
    assert {"config.yaml", "metrics.jsonl", "train_summary.json"} | model_files <= files
    for step in (2, 3):
        assert {f"checkpoints/step-{step:06d}/{f}" for f in [*CKPT_FILES, *model_files]} <= files
    assert not any("diffusion_pytorch_model" in f for f in files)  # LoRA only: the base is referenced, not copied
    rows = _metrics(out)
    assert [m["step"] for m in rows] == [1, 2, 3]
    assert all(math.isfinite(v) for m in rows for v in m.values())
    assert {"loss", "mse_linear", "mse_srgb", "lpips", "vsd", "diffusion", "lr", "reg_lr"} <= set(rows[0])
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["step"] == 3 and summary["ranks_identical"]
    assert summary["loss_terms"] == ["mse_linear", "mse_srgb", "lpips", "vsd"]
    saved = json.loads((out / "rddm" / "rddm_config.json").read_text())
    assert saved["sd_model"] == str(sd) and saved["rvae_model"] == str(rvae) and saved["lora_rank"] == 4
    final, last = _safetensors(out / "rddm"), _safetensors(out / "checkpoints" / "step-000003" / "rddm")
    assert len(final) == 8 and nested_equal(final, last)
    # the final folder loads through the real loading path (what `rddm restore --model OUT/rddm` does) with the
    # trained weights, and restores a RAW of another size
    model = RDDM.from_pretrained(out)
    named = dict(model.lora_named_parameters())
    w = final["unet_lora/RGGB/adapter_model.safetensors"]
    key = next(k for k in w if "lora_B" in k and bool(w[k].abs().sum() > 0))  # trained (peft starts B at 0)
    assert torch.equal(named["unet." + key.replace(".lora_B.", ".lora_B.cmb_RGGB.")], w[key])
    from rddm.prompts import PromptEncoder

    emb = PromptEncoder.from_sd(sd).encode([""])
    with torch.no_grad():
        y = model(torch.rand(2, 1, 48, 64), ["RGGB", "GBRG"], emb).linear
    assert y.shape == (2, 3, 48, 64) and bool(torch.isfinite(y).all())


# ---------------------------------------------------------------------------------------------- resume


def test_resume_is_exact(paths, tmp_path):
    """4 steps straight == 2 steps, then a fresh model resumes from the step-2 checkpoint for 2 more: every LoRA
    weight (CMB groups of encoder and UNet, VSD update LoRA), both optimizers, schedulers and scalers, and the
    logged losses are bitwise equal. Batch 1 × 2 accumulated micro-batches, flips on (patterns change), VSD,
    LPIPS and posterior sampling active; the 2 samples make one epoch per step, so the resume crosses epochs."""
    from rddm.train.rddm import train_rddm

    cfg = _cfg(*paths, batch_size=1, grad_accum_steps=2, max_steps=4, save_every=2)
    a, b = tmp_path / "straight", tmp_path / "resumed"
    train_rddm(cfg, a, device="cpu", progress=False)
    shutil.copytree(a, b)
    shutil.rmtree(b / "checkpoints" / "step-000004")
    for m in ("rddm", "vsd"):
        shutil.rmtree(b / m)
    (b / "train_summary.json").unlink()
    train_rddm(cfg, b, resume="latest", device="cpu", progress=False)
    for m in ("rddm", "vsd"):
        wa, wb = _safetensors(a / m), _safetensors(b / m)
        assert len(wa) == (8 if m == "rddm" else 1) and nested_equal(wa, wb), m
    ckpt = Path("checkpoints") / "step-000004" / "training_state.pt"
    sa, sb = (torch.load(x / ckpt, weights_only=True) for x in (a, b))
    assert {"optimizer", "scheduler", "scaler", "reg_optimizer", "reg_scheduler", "reg_scaler", "guard"} == set(sa)
    assert sa["optimizer"]["state"] and nested_equal(sa, sb)
    ra, rb = _metrics(a), _metrics(b)
    assert [dict(r, steps_per_s=0) for r in ra] == [dict(r, steps_per_s=0) for r in rb]
    sa, sb = (json.loads((x / "train_summary.json").read_text()) for x in (a, b))
    assert sa["rank_digests"] == sb["rank_digests"]


def test_gradient_checkpointing_trains_the_same_weights(paths, tmp_path):
    """``gradient_checkpointing: true`` (the LoRA-aware replay of rddm.lora) gives the weights of a run without it:
    2 steps with VSD and LPIPS, batch 2 with random flips (so the Bayer pattern, hence the group, varies)."""
    from rddm.train.rddm import train_rddm

    runs = {}
    for ckpt in (False, True):
        cfg = _cfg(*paths, max_steps=2, save_every=2, gradient_checkpointing=ckpt)
        train_rddm(cfg, tmp_path / str(ckpt), device="cpu", progress=False)
        runs[ckpt] = _safetensors(tmp_path / str(ckpt) / "rddm")
    assert runs[False].keys() == runs[True].keys() and len(runs[False]) == 8
    for f, tensors in runs[False].items():
        for k, v in tensors.items():
            torch.testing.assert_close(runs[True][f][k], v, rtol=1e-4, atol=1e-6, msg=f"{f}:{k}")
    assert any(bool(v.abs().sum() > 0) for t in runs[False].values() for k, v in t.items() if "lora_B" in k)


# ------------------------------------------------------------------------------------------------- DDP


def test_ddp_two_processes_gloo_identical_weights(two_shards, sd21_folder, rvae_folder, lpips_folder, tmp_path):
    """torchrun, 2 CPU processes (gloo): each rank reads its own shard (its own Bayer patterns, so each step runs
    other LoRA groups on each rank); the explicit gradient all-reduce keeps both ranks bitwise identical: the
    whole restorer (frozen base, CMB groups, VSD adapter) and the VSD LoRA digests match."""
    d = _cfg_dict(two_shards, sd21_folder, rvae_folder, lpips_folder, batch_size=1, max_steps=2, save_every=2,
                  loss={"rgb_lpips": 0.0})
    cfg = write_yaml(tmp_path / "rddm.yaml", d)
    r = run_cli("train", "--config", str(cfg), "--out", "out", "--device", "cpu", "--no-progress", cwd=tmp_path,
                launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "out"
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_identical"]
    digests = summary["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1] and set(digests[0]) == {"rddm", "vsd"}
    rows = _metrics(out)
    assert [m["step"] for m in rows] == [1, 2] and all(math.isfinite(v) for m in rows for v in m.values())
    state = json.loads((out / "checkpoints" / "step-000002" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and len(state["positions"]) == 2


# ------------------------------------------------------------------------------------- the loss, routing


def _fixed_batch(shards, n=2):
    from rawsynth.data import make_loader
    from rddm.train.core import resolve_shards

    return next(iter(make_loader(resolve_shards(str(shards)), n, 0, crop=32, seed=0, shuffle=0, flips=False)))


def _build(cfg):
    from rddm.train.rddm import build_prompts, build_rddm, build_rec_loss, build_vsd

    rddm = build_rddm(cfg).train()
    return rddm, build_vsd(cfg, rddm), build_rec_loss(cfg), build_prompts(cfg, torch.device("cpu"))


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def test_reconstruction_loss_falls_on_a_fixed_batch(paths):
    """25 generator steps on one batch with Eq. 6's reconstruction terms (linear MSE, sRGB MSE + LPIPS through PTP):
    finite and falling. (The floor is high: the frozen decoder of the tiny VAE is random.)"""
    from rddm.train import core
    from rddm.train.rddm import generator_step

    cfg = _cfg(*paths, loss={"vsd": False})
    rddm, vsd, rec_loss, prompts = _build(cfg)
    assert vsd is None
    batch = _fixed_batch(paths[0])
    opt = torch.optim.AdamW(rddm.trainable_parameters(), lr=1e-2)
    losses = []
    for step in range(25):
        gen = core.step_generator(0, 0, step, 0, torch.device("cpu"))
        loss, values, _ = generator_step(rddm, vsd, rec_loss, prompts, cfg, batch, "cpu", step, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        assert set(values) == {"loss", "mse_linear", "mse_srgb", "lpips"}
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) < 0.93 * sum(losses[:3]), losses
    assert max(losses[-5:]) < min(losses[:3]), losses


def test_alternating_vsd_steps_train_only_the_batch_patterns_groups(paths):
    """The full Eq. 6 objective with VSD, generator and regulariser alternating (the loop's functions): finite
    losses; the groups of the batch's patterns move (encoder and UNet), the other patterns' groups, the frozen base
    weights and the RVAE decoder stay bitwise unchanged; the regulariser step moves only the VSD LoRA."""
    from rddm.train import core
    from rddm.train.rddm import generator_step, regulariser_loss

    cfg = _cfg(*paths)
    rddm, vsd, rec_loss, prompts = _build(cfg)
    batch = _fixed_batch(paths[0])
    seen = sorted({p.value for p in batch["pattern"]})
    assert 1 <= len(seen) < 4
    opt = torch.optim.AdamW(rddm.trainable_parameters(), lr=1e-3)
    reg_opt = torch.optim.AdamW(vsd.trainable_parameters(), lr=1e-3)

    def groups():
        out = {}
        for name, p in rddm.lora_named_parameters():
            g = next(k for k in ("RGGB", "BGGR", "GRBG", "GBRG") if f".cmb_{k}." in name)
            out.setdefault((name.split(".")[0], g), []).append(p)
        return {k: _digest(v) for k, v in out.items()}

    def base():
        return _digest([t for n, t in rddm.state_dict().items() if "lora_" not in n])

    base_before, groups_before = base(), groups()
    for step in range(3):
        opt.zero_grad(set_to_none=True)
        reg_opt.zero_grad(set_to_none=True)
        gen = core.step_generator(0, 0, step, 0, torch.device("cpu"))
        loss, values, (latent, embeds) = generator_step(rddm, vsd, rec_loss, prompts, cfg, batch, "cpu", step, gen)
        loss.backward()
        assert all(p.grad is None for p in vsd.trainable_parameters())  # VSD's networks ran without autograd
        opt.step()
        groups_mid, vsd_before = groups(), _digest(vsd.trainable_parameters())
        opt.zero_grad(set_to_none=True)
        d = regulariser_loss(vsd, cfg, latent, embeds, core.step_generator(0, 0, step, 0, torch.device("cpu"),
                                                                           stream="reg"))
        d.backward()
        assert all(p.grad is None for p in rddm.trainable_parameters())  # the diffusion loss trains only VSD
        reg_opt.step()
        assert groups() == groups_mid and _digest(vsd.trainable_parameters()) != vsd_before
        assert all(math.isfinite(float(v)) for v in [*values.values(), d.detach()])
        assert {"vsd", "mse_linear", "mse_srgb", "lpips"} <= set(values)
    after = groups()
    for (part, g), dig in groups_before.items():
        assert (after[(part, g)] != dig) == (g in seen), (part, g, seen)
    assert base() == base_before


# ------------------------------------------------------------------------------------------ ablations


def test_ablation_switches_select_the_terms(paths, tmp_path):
    """Table 5 (RAW only / sRGB only / both), VSD off, and Table 7's all-in-one LoRA: the terms computed and
    logged follow the config; without VSD there is no update UNet, no reg optimizer and no vsd/ folder."""
    from rddm.train.rddm import generator_step, train_rddm

    batch = _fixed_batch(paths[0])
    cases = {
        "both": ({}, ["mse_linear", "mse_srgb", "lpips", "vsd"]),
        "raw_only": ({"srgb_domain": False}, ["mse_linear", "vsd"]),
        "srgb_only": ({"raw_domain": False}, ["mse_srgb", "lpips", "vsd"]),
        "no_vsd": ({"vsd": False, "rgb_lpips": 0.0}, ["mse_linear", "mse_srgb"]),
    }
    for name, (loss, terms) in cases.items():
        cfg = _cfg(*paths, loss=loss)
        assert cfg.loss.terms() == terms, name
        if name in ("raw_only", "no_vsd"):  # (the other two are covered by the end-to-end and resume runs)
            rddm, vsd, rec_loss, prompts = _build(cfg)
            assert (vsd is None) == (name == "no_vsd")
            _, values, _ = generator_step(rddm, vsd, rec_loss, prompts, cfg, batch, "cpu", 0,
                                          torch.Generator().manual_seed(0))
            assert sorted(values) == sorted([*terms, "loss"]), name
            assert (rec_loss.lpips_model is None) == ("lpips" not in terms)
    # vsd_start: no VSD term before it
    cfg = _cfg(*paths, loss={"vsd_start": 3})
    rddm, vsd, rec_loss, prompts = _build(cfg)
    assert "vsd" not in generator_step(rddm, vsd, rec_loss, prompts, cfg, batch, "cpu", 2)[1]
    assert "vsd" in generator_step(rddm, vsd, rec_loss, prompts, cfg, batch, "cpu", 3)[1]
    # a whole run: all-in-one LoRA, sRGB only, no VSD
    cfg = _cfg(*paths, max_steps=1, save_every=1, model={"lora_mode": "all_in_one"},
               loss={"raw_domain": False, "vsd": False})
    train_rddm(cfg, tmp_path / "o", device="cpu", progress=False)
    out = tmp_path / "o"
    assert set(_metrics(out)[0]) == {"step", "loss", "mse_srgb", "lpips", "lr", "steps_per_s", "grad_norm", "nonfinite",
                                     "nonfinite_skipped"}
    assert not (out / "vsd").exists()
    assert sorted(p.name for p in (out / "rddm" / "unet_lora").iterdir()) == ["ALL"]
    assert sorted(p.name for p in (out / "rddm" / "rvae_lora").iterdir()) == ["ALL"]
    state = torch.load(out / "checkpoints" / "step-000001" / "training_state.pt", weights_only=True)
    assert set(state) == {"optimizer", "scheduler", "scaler", "guard"}


def test_config_defaults_are_the_papers():
    from rddm.config import OSEDIFF_NEGATIVE_PROMPT
    from rddm.prompts import NEGATIVE_PROMPT

    c = RDDMTrainConfig()
    assert (c.optim.lr, c.batch_size, c.max_steps, c.data.crop, c.model.lora_rank) == (5e-5, 16, 150000, 512, 4)
    assert (c.loss.cfg_scale, c.loss.t_min, c.loss.t_max, c.model.timestep) == (7.5, 20, 980, 999)
    assert (c.loss.rgb_mse, c.loss.rgb_lpips, c.data.mode, c.mixed_precision) == (1.0, 2.0, "rddm", "bf16")
    assert c.loss.terms() == ["mse_linear", "mse_srgb", "lpips", "vsd"]
    assert OSEDIFF_NEGATIVE_PROMPT == NEGATIVE_PROMPT
    from rddm.errors import ConfigError

    with pytest.raises(ConfigError, match="every term is off"):
        config_from_dict(RDDMTrainConfig, {"loss": {"raw_domain": False, "srgb_domain": False, "vsd": False}})


# ------------------------------------------------------------------------------------------ core: resume


def test_checkpoint_weights_of_a_cmb_rvae_load_in_place(sd21_folder, tmp_path):
    """Run.load_checkpoint's generic path for a model with CMB groups (it used to refuse): base weights and every
    group come back into the same parameter objects."""
    from rddm.models.rvae import RVAE
    from rddm.train.core import load_model_weights

    def make(seed):
        torch.manual_seed(seed)
        m = RVAE.from_sd(sd21_folder)
        m.add_cmb_lora(["RGGB", "BGGR"])
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        return m

    a, b = make(0), make(1)
    a.save_pretrained(tmp_path / "a")
    ids = [id(p) for p in b.parameters()]
    load_model_weights(b, tmp_path / "a")
    assert [id(p) for p in b.parameters()] == ids
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------- user errors


def test_cli_errors(paths, tmp_path, capsys):
    shards, sd, rvae, lpips = paths
    alex = write_yaml(tmp_path / "alex.yaml", {"loss": {"lpips_net": "alex"}})
    base = ["train", "--shards", str(shards), "--device", "cpu", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a"), "--lpips-weights", str(lpips), "--config", str(alex)]) == 2
    err = capsys.readouterr().err
    assert "--sd-model" in err and "Traceback" not in err
    assert main([*base, "--out", str(tmp_path / "b"), "--sd-model", str(sd)]) == 2
    assert "loss.lpips_weights" in capsys.readouterr().err
    cfg = write_yaml(tmp_path / "c.yaml", {"data": {"crop": 34}, "loss": {"rgb_lpips": 0}})
    assert main([*base, "--out", str(tmp_path / "c"), "--sd-model", str(sd), "--config", str(cfg)]) == 2
    assert "data.crop 34 is not a multiple of 4" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "d"), "--sd-model", str(tmp_path / "nowhere"), "--lpips-weights",
                 str(lpips), "--config", str(alex)]) == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err
    assert not any((tmp_path / x).exists() for x in "abcd")  # nothing written
