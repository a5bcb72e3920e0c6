"""Training from shards end to end (CLI), exact resume, two-process DDP (gloo), gradient accumulation, mixed
precision, falling losses on a fixed batch, the latent scale of Eq. 4, and user errors (exit status 2)."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from rddm.cli import main
from rddm.config import DDNetTrainConfig, RVAETrainConfig, config_from_dict
from rddm.train.core import model_digest

from .conftest import TINY_VAE, nested_equal, run_cli, tiny_train_config, write_yaml

CKPT_FILES = ["config.yaml", "rng_states.pt", "trainer_state.json", "training_state.pt"]
MODEL_FILES = ["config.json", "diffusion_pytorch_model.safetensors"]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "logs" not in p.parts)


def _expected_tree(models: list[str], steps: list[int]) -> list[str]:
    files = ["config.yaml", "metrics.jsonl", "train_summary.json"]
    files += [f"{m}/{f}" for m in models for f in MODEL_FILES]
    for s in steps:
        files += [f"checkpoints/step-{s:06d}/{f}" for f in CKPT_FILES]
        files += [f"checkpoints/step-{s:06d}/{m}/{f}" for m in models for f in MODEL_FILES]
    return sorted(files)


def _metrics(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]


def _ddnet_cfg(shards, **over) -> DDNetTrainConfig:
    d = tiny_train_config("ddnet", tensorboard=False, **over)
    d["data"]["shards"] = [str(shards)]
    return config_from_dict(DDNetTrainConfig, d)


def _rvae_cfg(shards, sd_folder, lpips_folder, **over) -> RVAETrainConfig:
    d = tiny_train_config("rvae", tensorboard=False, **over)
    d["data"]["shards"] = [str(shards)]
    d["model"] = {"sd_model": str(sd_folder)}
    d["loss"]["lpips_weights"] = str(lpips_folder)
    return config_from_dict(RVAETrainConfig, d)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------ end to end


def test_train_ddnet_cli_end_to_end(shards, tmp_path):
    from rddm.models.ddnet import DDNet

    cfg = write_yaml(tmp_path / "ddnet.yaml", tiny_train_config("ddnet"))
    r = run_cli("train-ddnet", "--config", str(cfg), "--out", "out", "--shards", str(shards), "--device", "cpu",
                "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    assert _tree(out) == _expected_tree(["ddnet"], [2, 4])
    rows = _metrics(out)
    assert [m["step"] for m in rows] == [1, 2, 3, 4] and all(math.isfinite(m["loss"]) for m in rows)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["step"] == 4 and summary["ranks_identical"]
    # reload: bitwise the weights the run ended with, also through the output root and the last checkpoint
    raw = torch.rand(2, 1, 64, 64)
    outputs = []
    for path in (out / "ddnet", out, out / "checkpoints" / "step-000004"):
        net = DDNet.from_pretrained(path).eval()
        assert model_digest(net) == summary["rank_digests"][0]["ddnet"]
        with torch.no_grad():
            outputs.append(net(raw, ["RGGB", "GBRG"]))
    assert all(torch.equal(o, outputs[0]) for o in outputs)
    assert json.loads((out / "checkpoints/step-000002/trainer_state.json").read_text())["step"] == 2
    # TensorBoard has the scalars
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(out / "logs"))
    ea.Reload()
    assert [e.step for e in ea.Scalars("train/loss")] == [1, 2, 3, 4]


def test_train_rvae_cli_end_to_end_from_a_diffusers_sd_folder(shards, sd_folder, lpips_folder, tmp_path):
    """The tiny SD folder is passed exactly as a user passes SD 2.1 (--sd-model DIR, its vae/ is read)."""
    from rddm.models.discriminator import PatchDiscriminator
    from rddm.models.rvae import RVAE

    cfg = write_yaml(tmp_path / "rvae.yaml", tiny_train_config("rvae"))
    r = run_cli("train-rvae", "--config", str(cfg), "--out", "out", "--shards", str(shards), "--sd-model",
                str(sd_folder), "--lpips-weights", str(lpips_folder), "--device", "cpu", "--no-progress",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    assert _tree(out) == _expected_tree(["discriminator", "rvae"], [2, 4])
    rows = _metrics(out)
    assert all(math.isfinite(v) for m in rows for v in m.values())
    assert "d_loss" not in rows[1] and {"d_loss", "g_loss", "gan_weight"} <= set(rows[2])  # disc_start: 2
    assert {"l1_linear", "l1_srgb", "lpips", "kl"} <= set(rows[0])
    summary = json.loads((out / "train_summary.json").read_text())
    rvae = RVAE.from_pretrained(out)
    assert model_digest(rvae) == summary["rank_digests"][0]["rvae"]
    assert model_digest(PatchDiscriminator.from_pretrained(out / "discriminator")) == \
        summary["rank_digests"][0]["discriminator"]
    assert tuple(rvae.config.block_out_channels) == TINY_VAE["block_out_channels"]
    saved = yaml_load(out / "config.yaml")
    assert saved["model"]["sd_model"] == str(sd_folder) and saved["loss"]["lpips_weights"] == str(lpips_folder)


def yaml_load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


# ---------------------------------------------------------------------------------------------- resume


def _resume_check(train, cfg, tmp_path, name: str, models: list[str], loaders: dict):
    """N steps straight == N/2, then a fresh process resumes from the N/2 checkpoint for the other N/2."""
    a, b = tmp_path / "straight", tmp_path / "resumed"
    train(cfg, a, device="cpu", progress=False)
    shutil.copytree(a, b)
    last = f"step-{cfg.max_steps:06d}"
    shutil.rmtree(b / "checkpoints" / last)
    for m in models:
        shutil.rmtree(b / m)
    (b / "train_summary.json").unlink()
    train(cfg, b, resume="latest", device="cpu", progress=False)
    for m in models:
        assert _same_weights(loaders[m](a / m), loaders[m](b / m)), m
    assert _metrics(a) == [dict(r, steps_per_s=x["steps_per_s"]) for r, x in zip(_metrics(b), _metrics(a))]
    sa = torch.load(a / "checkpoints" / last / "training_state.pt", weights_only=True)
    sb = torch.load(b / "checkpoints" / last / "training_state.pt", weights_only=True)
    assert nested_equal(sa, sb), name



def test_ddnet_resume_is_exact(shards, tmp_path):
    from rddm.models.ddnet import DDNet
    from rddm.train.ddnet import train_ddnet

    # 8 samples, batch 2: 4 batches an epoch; the checkpoint at step 3 is mid-epoch and the rest crosses into
    # epoch 1; shuffling, flips and a cosine schedule with warm-up are all on
    d = tiny_train_config("ddnet", tensorboard=False, max_steps=6, save_every=3)
    d["data"].update(shards=[str(shards)], shuffle=4, flips=True)
    d["optim"].update(lr_scheduler="cosine", warmup_steps=2)
    cfg = config_from_dict(DDNetTrainConfig, d)
    _resume_check(train_ddnet, cfg, tmp_path, "ddnet", ["ddnet"], {"ddnet": DDNet.from_pretrained})


def test_rvae_resume_is_exact_with_gan_and_accumulation(shards, sd_folder, lpips_folder, tmp_path):
    from rddm.models.discriminator import PatchDiscriminator
    from rddm.models.rvae import RVAE
    from rddm.train.rvae import train_rvae

    cfg = _rvae_cfg(shards, sd_folder, lpips_folder, max_steps=4, save_every=2, batch_size=1, grad_accum_steps=2)
    _resume_check(train_rvae, cfg, tmp_path, "rvae", ["rvae", "discriminator"],
                  {"rvae": RVAE.from_pretrained, "discriminator": PatchDiscriminator.from_pretrained})


def test_resume_refuses_a_changed_config_and_allows_more_steps(shards, tmp_path, capsys):
    from rddm.train.ddnet import train_ddnet

    cfg = _ddnet_cfg(shards, max_steps=2, save_every=2)
    train_ddnet(cfg, tmp_path / "o", device="cpu", progress=False)
    bad = dict(tiny_train_config("ddnet"), max_steps=4)
    bad["optim"]["lr"] = 0.5
    write_yaml(tmp_path / "bad.yaml", bad)
    args = ["train-ddnet", "--out", str(tmp_path / "o"), "--shards", str(shards), "--device", "cpu", "--no-progress"]
    assert main([*args, "--config", str(tmp_path / "bad.yaml"), "--resume"]) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert main([*args, "--resume", "--max-steps", "3"]) == 0  # OUT/config.yaml reused; max_steps may grow
    assert json.loads((tmp_path / "o" / "train_summary.json").read_text())["step"] == 3


# ------------------------------------------------------------------------------------------------- DDP


def test_ddp_two_processes_gloo_identical_weights(shards, sd_folder, lpips_folder, tmp_path):
    """torchrun with 2 CPU processes (gloo): each reads its own shards, gradients are all-reduced (VAE and
    discriminator, GAN and adaptive weight active from step 2), both ranks end bitwise identical."""
    d = tiny_train_config("rvae", max_steps=3, save_every=3, tensorboard=False)
    cfg = write_yaml(tmp_path / "rvae.yaml", d)
    r = run_cli("train-rvae", "--config", str(cfg), "--out", "out", "--shards", str(shards), "--sd-model",
                str(sd_folder), "--lpips-weights", str(lpips_folder), "--device", "cpu", "--no-progress",
                cwd=tmp_path, launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
                timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "out"
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_identical"]
    assert len(summary["rank_digests"]) == 2 and summary["rank_digests"][0] == summary["rank_digests"][1]
    rows = _metrics(out)
    assert [m["step"] for m in rows] == [1, 2, 3] and all(math.isfinite(v) for m in rows for v in m.values())
    assert "d_loss" in rows[2]
    state = json.loads((out / "checkpoints" / "step-000003" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and len(state["positions"]) == 2


# ------------------------------------------------------------------------------------------ mechanics


def test_gradient_accumulation_matches_the_larger_batch(shards, tmp_path):
    from rddm.models.ddnet import DDNet
    from rddm.train.ddnet import train_ddnet

    kw = dict(max_steps=1, save_every=1)
    train_ddnet(_ddnet_cfg(shards, batch_size=2, grad_accum_steps=1, **kw), tmp_path / "a", device="cpu",
                progress=False)
    train_ddnet(_ddnet_cfg(shards, batch_size=1, grad_accum_steps=2, **kw), tmp_path / "b", device="cpu",
                progress=False)
    a, b = DDNet.from_pretrained(tmp_path / "a"), DDNet.from_pretrained(tmp_path / "b")
    init = _ddnet_init(shards)
    assert not _same_weights(a, init)
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _ddnet_init(shards):
    from rddm.train.ddnet import build_ddnet

    return build_ddnet(_ddnet_cfg(shards))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs(shards, tmp_path, precision):
    from rddm.train.ddnet import train_ddnet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fp16: the scaler skips a first, overflowing step; torch warns about it
        train_ddnet(_ddnet_cfg(shards, max_steps=2, save_every=2, mixed_precision=precision), tmp_path, device="cpu",
                    progress=False)
    rows = _metrics(tmp_path)
    assert len(rows) == 2 and all(math.isfinite(m["loss"]) for m in rows)
    state = torch.load(tmp_path / "checkpoints" / "step-000002" / "training_state.pt", weights_only=True)
    assert ("scale" in state["scaler"]) == (precision == "fp16")


@pytest.mark.parametrize("stage", ["ddnet", "rvae"])
def test_gradient_checkpointing_trains_the_same(stage, shards, sd_folder, lpips_folder, tmp_path):
    from rddm.models.ddnet import DDNet
    from rddm.models.rvae import RVAE
    from rddm.train.ddnet import train_ddnet
    from rddm.train.rvae import train_rvae

    for name, gc in (("plain", False), ("ckpt", True)):
        if stage == "ddnet":
            train_ddnet(_ddnet_cfg(shards, max_steps=2, save_every=2, gradient_checkpointing=gc), tmp_path / name,
                        device="cpu", progress=False)
        else:
            train_rvae(_rvae_cfg(shards, sd_folder, lpips_folder, max_steps=3, save_every=3, gradient_checkpointing=gc),
                       tmp_path / name, device="cpu", progress=False)
    load = DDNet.from_pretrained if stage == "ddnet" else RVAE.from_pretrained
    a, b = load(tmp_path / "plain"), load(tmp_path / "ckpt")
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_keep_checkpoints_prunes_the_oldest(shards, tmp_path):
    from rddm.train.core import Run
    from rddm.train.ddnet import train_ddnet

    train_ddnet(_ddnet_cfg(shards, max_steps=3, save_every=1, keep_checkpoints=2), tmp_path, device="cpu",
                progress=False)
    assert [p.name for p in Run.checkpoints(tmp_path)] == ["step-000002", "step-000003"]
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_losses_fall_on_a_fixed_small_batch(shards, sd_folder, lpips_folder):
    from rawsynth.data import make_loader
    from rddm.train.core import resolve_shards
    from rddm.train.ddnet import build_ddnet, ddnet_loss
    from rddm.train.rvae import Stage1, build_rec_loss, build_rvae, generator_losses

    batch = next(iter(make_loader(resolve_shards(str(shards)), 4, 0, crop=32, seed=0, shuffle=0)))

    def fit(model, loss_fn, steps=25, lr=1e-3):
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
        losses = []
        for _ in range(steps):
            loss = loss_fn()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert all(math.isfinite(v) for v in losses)
        return losses

    for residual in (False, True):
        dcfg = config_from_dict(DDNetTrainConfig, {"model": {"block_out_channels": [8, 16], "layers_per_block": 1,
                                                             "residual_bilinear": residual}})
        net = build_ddnet(dcfg)
        dl = fit(net, lambda: ddnet_loss(net, batch, "cpu")[0])  # noqa: B023 - used inside the loop iteration
        if residual:  # starts at the bilinear demosaic, already close on 4 samples: it still improves
            assert dl[-1] < dl[0]
        else:
            assert sum(dl[-3:]) < 0.5 * sum(dl[:3])

    rcfg = config_from_dict(RVAETrainConfig, {"model": {"sd_model": str(sd_folder)}, "loss": {
        "lpips_net": "alex", "lpips_weights": str(lpips_folder)}})
    rvae = build_rvae(rcfg)
    rec = build_rec_loss(rcfg)
    stage1 = Stage1(rvae)
    gen = torch.Generator().manual_seed(0)
    rl = fit(rvae, lambda: generator_losses(stage1, rvae, None, rec, rcfg, batch, "cpu", gen)[0])
    assert sum(rl[-3:]) < 0.8 * sum(rl[:3])


def test_calibrate_latent_scale_is_eq4(shards, sd_folder, tmp_path, capsys):
    from rawsynth.data import make_loader
    from rddm.models.rvae import RVAE
    from rddm.train.core import resolve_shards

    RVAE.from_sd(sd_folder).save_pretrained(tmp_path / "rvae")
    cfg = write_yaml(tmp_path / "cal.yaml", {"batch_size": 2, "sample_posterior": False,
                                             "data": {"num_workers": 0}})
    assert main(["calibrate-latent-scale", "--rvae", str(tmp_path / "rvae"), "--config", str(cfg), "--shards",
                 str(shards), "--num-samples", "5", "--device", "cpu", "--no-progress"]) == 0
    assert "scaling_factor=" in capsys.readouterr().out
    report = json.loads((tmp_path / "rvae" / "latent_scale.json").read_text())
    # independently: the first 5 samples, whole, in file order; σ over every latent element (population std)
    model = RVAE.from_sd(sd_folder)
    zs = []
    with torch.no_grad():
        for b in make_loader(resolve_shards(str(shards)), 1, 0, crop=None, flips=False, shuffle=0):
            zs.append(model.encode_linear(b["hq"]).mode().double())
            if len(zs) == 5:
                break
    z = torch.cat(zs)
    sigma = z.std(unbiased=False).item()
    assert report["num_samples"] == 5 and report["num_elements"] == z.numel()
    # (float32 convolutions over batches of 2 there, of 1 here: equal to rounding)
    assert report["sigma"] == pytest.approx(sigma, rel=1e-6)
    assert report["mean"] == pytest.approx(z.mean().item(), rel=1e-5, abs=1e-7)
    updated = RVAE.from_pretrained(tmp_path / "rvae")
    assert updated.config.scaling_factor == 1 / report["sigma"]
    assert updated.config.scaling_factor == pytest.approx(1 / sigma, rel=1e-6)
    with torch.no_grad():  # only the config changed
        assert _same_weights(updated, model)
        assert model.scale_latents(z.float()).std(unbiased=False).item() != pytest.approx(1.0, abs=1e-3)
        assert updated.scale_latents(z.float()).std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------------------------------------- user errors


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_cli_missing_sd_folder(shards, lpips_folder, tmp_path, capsys):
    missing = tmp_path / "stable-diffusion-2-1-base"
    cfg = write_yaml(tmp_path / "c.yaml", tiny_train_config("rvae"))
    assert main(["train-rvae", "--config", str(cfg), "--out", str(tmp_path / "o"), "--shards", str(shards),
                 "--sd-model", str(missing), "--lpips-weights", str(lpips_folder), "--device", "cpu"]) == 2
    err = _err(capsys)
    assert str(missing) in err and "--sd-model" in err
    assert not (tmp_path / "o").exists()  # nothing written


def test_cli_rvae_needs_a_model_and_lpips_weights(shards, sd_folder, tmp_path, capsys):
    base = ["train-rvae", "--out", str(tmp_path / "o"), "--shards", str(shards), "--device", "cpu"]
    assert main(base) == 2
    assert "loss.lpips_weights" in _err(capsys)
    cfg = write_yaml(tmp_path / "c.yaml", {"loss": {"lpips": 0}})
    assert main([*base, "--config", str(cfg)]) == 2
    assert "--sd-model DIR" in _err(capsys)
    assert main([*base, "--sd-model", str(sd_folder), "--lpips-weights", str(tmp_path / "none")]) == 2
    assert "no such LPIPS weights folder" in _err(capsys)


def test_cli_shards_errors(shards, rddm_shards, tmp_path, capsys):
    cfg = write_yaml(tmp_path / "c.yaml", tiny_train_config("ddnet"))
    base = ["train-ddnet", "--config", str(cfg), "--device", "cpu", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 2
    assert "no training shards given" in _err(capsys)
    (tmp_path / "empty").mkdir()
    assert main([*base, "--out", str(tmp_path / "b"), "--shards", str(tmp_path / "empty")]) == 2
    assert "no shard-*.tar in this folder" in _err(capsys)
    assert main([*base, "--out", str(tmp_path / "c"), "--shards", str(rddm_shards)]) == 2
    assert "'rddm'-mode pair" in _err(capsys)
    big = write_yaml(tmp_path / "big.yaml", dict(tiny_train_config("ddnet"), batch_size=64))
    assert main(["train-ddnet", "--config", str(big), "--device", "cpu", "--no-progress", "--out",
                 str(tmp_path / "d"), "--shards", str(shards)]) == 2
    assert "no full batch of 64" in _err(capsys)


def test_cli_run_folder_errors(shards, tmp_path, capsys):
    cfg = write_yaml(tmp_path / "c.yaml", dict(tiny_train_config("ddnet"), max_steps=2, tensorboard=False))
    base = ["train-ddnet", "--config", str(cfg), "--out", str(tmp_path / "o"), "--shards", str(shards), "--device",
            "cpu", "--no-progress"]
    assert main([*base, "--resume"]) == 2
    assert "no checkpoint to resume" in _err(capsys)
    assert main(base) == 0
    capsys.readouterr()
    assert main(base) == 2
    assert "already holds a training run" in _err(capsys)
    assert main([*base, "--resume", str(tmp_path)]) == 2
    assert "not a complete checkpoint folder" in _err(capsys)
