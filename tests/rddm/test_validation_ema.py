"""Validation while training and the EMA of the trained weights (issue 16).

Independent references: ``skimage.metrics`` (PSNR, SSIM), ``torch.optim.swa_utils.AveragedModel`` with
``get_ema_multi_avg_fn`` (EMA), ``benchmarks``' own builder and its ``gt_srgb`` rendering and ``rddm restore``'s
PNG + JSON reader (benchmark validation data), ``tensorboard``'s event reader and OpenCV (the grid PNG).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rddm.cli import main
from rddm.config import DDNetTrainConfig, RDDMTrainConfig, RVAETrainConfig, config_from_dict
from rddm.errors import ConfigError
from rddm.train.ema import EMA
from rddm.train.val_config import EmaConfig, ValidationConfig
from rddm.train.validation import psnr, ssim

from .conftest import nested_equal, run_cli, tiny_train_config, write_yaml


def _metrics(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]


def _val_rows(out: Path, prefix: str = "val") -> list[dict]:
    return [r for r in _metrics(out) if f"{prefix}/samples" in r]



# ------------------------------------------------------------------------------------------------ metrics


@pytest.mark.parametrize("shape", [(2, 3, 32, 40), (1, 3, 11, 17), (2, 1, 24, 24)])
def test_psnr_and_ssim_equal_skimage(shape):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    g = torch.Generator().manual_seed(1)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    y[:, :, : shape[2] // 2] = x[:, :, : shape[2] // 2] * 0.9  # structured, not only noise
    got_p, got_s = psnr(y, x), ssim(y, x)
    for i in range(shape[0]):
        a, b = x[i].numpy(), y[i].numpy()
        ref_p = peak_signal_noise_ratio(a, b, data_range=1.0)
        ref_s = structural_similarity(a, b, channel_axis=0, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=1.0)
        assert abs(float(got_p[i]) - ref_p) < 1e-9
        assert abs(float(got_s[i]) - ref_s) < 1e-9
    assert torch.isinf(psnr(x, x)).all() and torch.allclose(ssim(x, x), torch.ones(shape[0], dtype=torch.float64))


# ---------------------------------------------------------------------------------------------------- EMA


@pytest.mark.parametrize("start", [0, 2])
def test_ema_equals_averaged_model_and_applies_reversibly(start):
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    ref = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    ema = EMA(net.named_parameters(), 0.9, start)
    opt = torch.optim.AdamW(net.parameters(), lr=0.05)
    for step in range(1, 7):
        loss = net(torch.randn(5, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(step)
        if step > start:
            ref.update_parameters(net)
            for s, r in zip(ema.shadow, ref.module.parameters()):
                assert torch.allclose(s, r, rtol=0, atol=1e-6)
        else:  # before averaging begins the EMA is the weights
            assert all(torch.equal(s, p) for s, p in zip(ema.shadow, net.parameters()))
    assert ema.n_averaged == 6 - start
    trained = [p.detach().clone() for p in net.parameters()]
    with ema.applied():
        assert all(torch.equal(p, s) for p, s in zip(net.parameters(), ema.shadow))
        assert not all(torch.equal(p, t) for p, t in zip(net.parameters(), trained))
    assert all(torch.equal(p, t) for p, t in zip(net.parameters(), trained))  # bitwise back
    # state round trip, bitwise
    other = EMA(net.named_parameters(), 0.9, start)
    other.load_state_dict(ema.state_dict())
    assert other.n_averaged == ema.n_averaged and all(torch.equal(a, b) for a, b in zip(other.shadow, ema.shadow))


def test_ema_state_of_other_parameters_is_refused():
    from rddm.errors import CheckpointError

    a = EMA(torch.nn.Linear(2, 2).named_parameters(), 0.9)
    b = EMA(torch.nn.Linear(2, 3).named_parameters(), 0.9)
    with pytest.raises(CheckpointError, match="EMA of weight has shape"):
        b.load_state_dict(a.state_dict())


# ------------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("stage", ["ddnet", "rvae", "rddm"])
def test_config_command_shows_the_keys_and_the_commented_defaults_parse(stage, capsys):
    assert main(["config", stage]) == 0
    text = capsys.readouterr().out
    assert "\nvalidation: null" in text and "\nema: null" in text
    lines = text.split("\nvalidation: null", 1)[1].splitlines()[1:]
    block = "\n".join(ln[1:] for ln in lines if ln.startswith("#  "))  # the commented keys, uncommented
    assert config_from_dict(ValidationConfig, yaml.safe_load(block)) == ValidationConfig()
    assert EmaConfig(**yaml.safe_load(text.split("e.g. ", 1)[1].split("\n")[0])) == EmaConfig()


@pytest.mark.parametrize("d,needle", [
    ({"validation": {"every": 0}}, "validation.every must be an int >= 1"),
    ({"validation": {"crop": 33}}, "validation.crop must be null or an even int"),
    ({"validation": {"lpips_net": "squeeze"}}, "validation.lpips_net must be one of ['alex', 'vgg']"),
    ({"validation": {"every_n": 3}}, "unknown key(s) ['every_n'] in section 'validation'"),
    ({"ema": {"decay": 1.0}}, "ema.decay must be a number in (0, 1)"),
    ({"ema": {"start": -1}}, "ema.start must be an int >= 0"),
    ({"ema": {"decay": "slow"}}, "ema.decay must be a number"),
])
def test_invalid_validation_and_ema_values_name_the_key(d, needle):
    for cls in (DDNetTrainConfig, RVAETrainConfig, RDDMTrainConfig):
        with pytest.raises(ConfigError) as e:
            config_from_dict(cls, d)
        assert needle in str(e.value)


def test_validation_without_data_fails_before_anything_is_written(shards, tmp_path, capsys):
    d = tiny_train_config("ddnet", validation={"every": 2})
    d["data"]["shards"] = [str(shards)]
    assert main(["train-ddnet", "--config", str(write_yaml(tmp_path / "c.yaml", d)), "--out", str(tmp_path / "o"),
                 "--device", "cpu", "--no-progress"]) == 2
    assert "validation.shards is empty" in capsys.readouterr().err and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------- stages


def _ddnet_dict(shards, **over) -> dict:
    d = tiny_train_config("ddnet", **{"max_steps": 5, "save_every": 2, **over})
    d["data"]["shards"] = [str(p) for p in sorted(Path(shards).glob("shard-*.tar"))[:3]]
    return d


def test_grid_and_metrics_are_identical_for_an_unchanged_model(shards, tmp_path):
    from rddm.models.ddnet import DDNet
    from rddm.train.distributed import DistEnv
    from rddm.train.validation import Validator

    cfg = ValidationConfig(every=1, shards=(str(shards),), max_samples=3, batch_size=2, grid_samples=3, crop=48,
                           lpips=False)
    env = DistEnv(0, 1, 0, torch.device("cpu"))
    torch.manual_seed(0)
    net = DDNet(block_out_channels=(8, 16), layers_per_block=1).train()
    v = Validator(cfg, "test", env, tmp_path)
    pred = lambda b: net(b["raw"], b["pattern"])  # noqa: E731
    a, b = v.run(1, pred, [net]), v.run(2, pred, [net])
    assert net.training  # the mode is restored
    assert a == {"val": dict(b["val"], **{"val/seconds": a["val"]["val/seconds"]})} and a["val"]["val/samples"] == 3
    one, two = (tmp_path / "validation/val-step-000001.png").read_bytes(), (
        tmp_path / "validation/val-step-000002.png").read_bytes()
    assert one == two
    import cv2

    assert cv2.imdecode(np.frombuffer(one, np.uint8), cv2.IMREAD_UNCHANGED).shape == (3 * 48, 3 * 48, 3)


def test_ema_is_not_updated_on_a_skipped_step(shards, tmp_path, monkeypatch):
    """The non-finite guard skipping step 2 of 4: the EMA takes 3 updates, and the final folder is the EMA."""
    import rddm.train.ddnet as stage
    from rddm.models.ddnet import DDNet
    from rddm.train.guard import guarded_step

    calls = []

    def flaky(opt, scaler, max_norm, loss, guard):
        calls.append(1)
        if len(calls) == 2:
            return guarded_step(opt, scaler, max_norm, torch.tensor(float("nan")), guard)
        return guarded_step(opt, scaler, max_norm, loss, guard)

    monkeypatch.setattr(stage, "guarded_step", flaky)
    cfg = config_from_dict(DDNetTrainConfig, _ddnet_dict(shards, max_steps=4, tensorboard=False, ema={"decay": 0.5}))
    stage.train_ddnet(cfg, tmp_path / "o", device="cpu", progress=False)
    state = torch.load(tmp_path / "o/checkpoints/step-000004/training_state.pt", weights_only=True)
    assert state["ema"]["n_averaged"] == 3
    assert [r["nonfinite"] for r in _metrics(tmp_path / "o")] == [0, 1, 0, 0]
    final = DDNet.from_pretrained(tmp_path / "o/ddnet").state_dict()
    assert all(torch.equal(final[k], v) for k, v in state["ema"]["shadow"].items())


def test_resume_restores_ema_and_validation_bit_exactly(shards, tmp_path):
    """5 steps straight == 2 steps, then a new process resumes from the step-2 checkpoint: the EMA (in
    training_state.pt and the final folder), the trained weights and the validation records are bitwise equal."""
    from rddm.models.ddnet import DDNet
    from rddm.train.ddnet import train_ddnet

    held_out = sorted(Path(shards).glob("shard-*.tar"))[3]
    d = _ddnet_dict(shards, tensorboard=False, save_every=2, ema={"decay": 0.7, "start": 1},
                    validation={"every": 3, "shards": [str(held_out)], "lpips": False})
    cfg = config_from_dict(DDNetTrainConfig, d)
    a, b = tmp_path / "straight", tmp_path / "resumed"
    train_ddnet(cfg, a, device="cpu", progress=False)
    shutil.copytree(a, b)
    for s in ("step-000004", "step-000005"):
        shutil.rmtree(b / "checkpoints" / s)
    shutil.rmtree(b / "ddnet")
    shutil.rmtree(b / "validation")
    train_ddnet(cfg, b, resume="latest", device="cpu", progress=False)
    sa = torch.load(a / "checkpoints/step-000005/training_state.pt", weights_only=True)
    sb = torch.load(b / "checkpoints/step-000005/training_state.pt", weights_only=True)
    assert sa["ema"]["n_averaged"] == 4 and nested_equal(sa, sb)
    for sub in ("ddnet", "checkpoints/step-000005"):
        wa, wb = DDNet.from_pretrained(a / sub).state_dict(), DDNet.from_pretrained(b / sub).state_dict()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    strip = [{k: v for k, v in r.items() if k not in ("val/seconds",)} for r in _val_rows(a)]
    assert [r["step"] for r in strip] == [3, 5]
    assert strip == [{k: v for k, v in r.items() if k != "val/seconds"} for r in _val_rows(b)]
    assert (a / "validation/val-step-000005.png").read_bytes() == (b / "validation/val-step-000005.png").read_bytes()
    # validation may be dropped (or changed) when resuming: it never changes the trained weights
    c = tmp_path / "no-validation"
    shutil.copytree(b, c)
    shutil.rmtree(c / "checkpoints/step-000005")
    train_ddnet(config_from_dict(DDNetTrainConfig, dict(d, validation=None)), c, resume="latest", device="cpu",
                progress=False)
    assert [r["step"] for r in _val_rows(c)] == [3]
    wa, wc = DDNet.from_pretrained(a / "ddnet").state_dict(), DDNet.from_pretrained(c / "ddnet").state_dict()
    assert all(torch.equal(wa[k], wc[k]) for k in wa)


def test_train_rvae_validates_reconstruction_with_ema(shards, sd_folder, lpips_folder, tmp_path):
    from rddm.train.rvae import train_rvae

    held_out = sorted(Path(shards).glob("shard-*.tar"))[3]
    d = tiny_train_config("rvae", max_steps=3, save_every=3, tensorboard=False, ema={"decay": 0.9},
                          validation={"every": 2, "shards": [str(held_out)], "grid_samples": 1, "crop": 32})
    d["data"]["shards"] = [str(shards)]
    d["model"] = {"sd_model": str(sd_folder)}
    d["loss"]["lpips_weights"] = str(lpips_folder)  # validation's LPIPS falls back to the stage's folder
    summary = train_rvae(config_from_dict(RVAETrainConfig, d), tmp_path / "o", device="cpu", progress=False)
    rows = _val_rows(tmp_path / "o")
    assert [r["step"] for r in rows] == [2, 3]
    assert all(math.isfinite(r[k]) for r in rows for k in r) and "val/srgb_lpips" in rows[0]
    import cv2

    grid = cv2.imread(str(tmp_path / "o/validation/val-step-000003.png"))
    assert grid.shape == (32, 2 * 32, 3)  # no RAW column: the RVAE reconstructs the linear image
    assert summary["final_weights"] == "ema"



def test_train_rddm_validates_the_restoration_with_ema(rddm_shards, sd21_folder, rvae_folder, lpips_folder,
                                                        tmp_path):
    """``rddm train``: validation at steps 1 and 2 (every 1), sRGB/linear metrics and LPIPS, the EMA of the CMB LoRA
    groups in the final ``rddm/`` folder (the trained groups in the last checkpoint)."""
    from safetensors.torch import load_file

    from rddm.train.rddm import train_rddm

    d = {"max_steps": 2, "batch_size": 1, "global_batch_size": None, "log_every": 1, "save_every": 2,
         "keep_checkpoints": 0, "tensorboard": False, "mixed_precision": "no",
         "data": {"crop": 32, "num_workers": 0, "shuffle": 0, "shards": [str(rddm_shards)]},
         "optim": {"lr": 1e-2, "max_grad_norm": None}, "reg_optim": {"lr": 1e-3},
         "model": {"sd_model": str(sd21_folder), "rvae": str(rvae_folder)},
         "loss": {"lpips_net": "alex", "lpips_weights": str(lpips_folder)},
         "validation": {"every": 1, "shards": [str(rddm_shards)], "max_samples": 1, "crop": 32},
         "ema": {"decay": 0.5}}
    out = tmp_path / "o"
    summary = train_rddm(config_from_dict(RDDMTrainConfig, d), out, device="cpu", progress=False)
    rows = _val_rows(out)
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r[k]) for r in rows for k in r)
    assert {"val/srgb_psnr", "val/srgb_ssim", "val/srgb_lpips", "val/linear_psnr"} <= set(rows[0])
    assert summary["final_weights"] == "ema"
    state = torch.load(out / "checkpoints/step-000002/training_state.pt", weights_only=True)
    shadow = state["ema"]["shadow"]
    assert state["ema"]["n_averaged"] == 2 and len(shadow) > 0
    moved = 0
    for path in sorted((out / "checkpoints/step-000002/rddm/unet_lora").glob("*/adapter_model.safetensors")):
        g = path.parent.name
        final, trained = load_file(str(out / "rddm/unet_lora" / g / path.name)), load_file(str(path))
        for k in final:
            ema_key = "unet." + k.replace(".lora_A.", f".lora_A.cmb_{g}.").replace(".lora_B.", f".lora_B.cmb_{g}.")
            assert torch.equal(final[k], shadow[ema_key]), k  # the final folder holds the EMA
            moved += not torch.equal(final[k], trained[k])
    assert moved > 0  # the group trained at step 2 (its B was 0 at step 1): EMA = half its trained value


def test_benchmark_folder_is_read_as_restore_and_benchmarks_read_it(tmp_path):
    """A benchmark built by ``benchmarks``' own builder: each validation sample's mosaic and pattern are what
    ``rddm restore``'s PNG + JSON reader gives, and its target developed by PTP is the builder's ``gt_srgb`` PNG
    (within one 8-bit level); a validation of it is logged as ``val_bench/...``."""
    import cv2

    from benchmarks.builders import build_benchmark, load_recipe
    from rddm.losses import isp_from_meta, to_srgb
    from rddm.models.ddnet import DDNet
    from rddm.restore.inputs import InputSource, read_source
    from rddm.train.distributed import DistEnv
    from rddm.train.validation import Validator, iter_samples, val_sources

    from ..benchmarks.conftest import make_div2k

    bench = tmp_path / "div2k-val"
    build_benchmark(load_recipe("div2k-val", crop={"policy": "center", "size": 64}),
                    make_div2k(tmp_path / "src", indices=range(801, 804), h=80, w=96), bench, allow_partial=True)
    cfg = ValidationConfig(benchmark=str(bench), max_samples=2, grid_samples=2, lpips=False)
    (source,) = val_sources(cfg)
    samples = list(iter_samples(source, cfg))
    assert [s["key"] for s in samples] == ["0801", "0802"]
    for s in samples:
        ref = next(read_source(InputSource(bench / "raw" / f"{s['key']}.png", "png16")))
        assert np.array_equal(s["raw"][0].numpy(), ref.raw) and s["pattern"] == ref.pattern
        mine = to_srgb(s["hq"][None], isp_from_meta([s["meta"]]))[0].clamp(0, 1)
        mine = torch.round(mine * 255).permute(1, 2, 0).numpy()
        theirs = cv2.imread(str(bench / "gt_srgb" / f"{s['key']}.png"))[..., ::-1].astype(np.float64)
        assert np.abs(mine - theirs).max() <= 1
    torch.manual_seed(0)
    net = DDNet(block_out_channels=(8, 16), layers_per_block=1)
    rec = Validator(cfg, "test", DistEnv(0, 1, 0, torch.device("cpu")), tmp_path / "run").run(
        7, lambda b: net(b["raw"], b["pattern"]), [net])
    assert rec["val_bench"]["val_bench/samples"] == 2 and math.isfinite(rec["val_bench"]["val_bench/srgb_psnr"])
    assert (tmp_path / "run/validation/val_bench-step-000007.png").is_file()


def test_train_ddnet_cli_two_processes_validate_every_n_and_at_the_end_with_ema(shards, lpips_folder, tmp_path):
    """``torchrun`` with 2 CPU processes (gloo), 3 steps, validation every 2 on held-out shards (never trained on)
    → records at steps 2 and 3 with finite values, grids, TensorBoard; the samples are split over the ranks and
    gathered on rank 0: the last validation (EMA weights) equals a one-process validation of the saved final model,
    grid bytes included; the final folder holds the EMA, the checkpoint the trained weights."""
    import cv2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rddm.models.ddnet import DDNet
    from rddm.train.distributed import DistEnv
    from rddm.train.validation import Validator

    held_out = [str(p) for p in sorted(Path(shards).glob("shard-*.tar"))[2:]]
    val = {"every": 2, "shards": held_out, "max_samples": 3, "batch_size": 2, "grid_samples": 3,
           "lpips_weights": str(lpips_folder)}
    d = _ddnet_dict(shards, max_steps=3, save_every=3, validation=val, ema={"decay": 0.5})
    d["data"]["shards"] = d["data"]["shards"][:2]
    r = run_cli("train-ddnet", "--config", str(write_yaml(tmp_path / "c.yaml", d)), "--out", "out", "--device",
                "cpu", "--no-progress", cwd=tmp_path,
                launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"), timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "out"
    rows = _val_rows(out)
    assert [v["step"] for v in rows] == [2, 3]
    keys = {"val/linear_psnr", "val/linear_ssim", "val/srgb_psnr", "val/srgb_ssim", "val/srgb_lpips"}
    assert all(keys <= set(v) and all(math.isfinite(v[k]) for k in keys) and v["val/samples"] == 3 for v in rows)
    assert all(0 < v["val/linear_ssim"] <= 1 and v["val/linear_psnr"] > 10 for v in rows)
    for s in (2, 3):  # 3 rows (samples) x 3 columns (RAW, prediction, target) of 64x64 samples, read by OpenCV
        grid = cv2.imread(str(out / "validation" / f"val-step-{s:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert grid.shape == (3 * 64, 3 * 64, 3) and grid.dtype == np.uint8
    ea = EventAccumulator(str(out / "logs"), size_guidance={"images": 0})
    ea.Reload()
    assert [e.step for e in ea.Scalars("val/linear_psnr")] == [2, 3]
    assert [e.step for e in ea.Images("val/grid")] == [2, 3]
    # one process, the saved final model (the EMA, which the last validation used): the same record and grid
    net = DDNet.from_pretrained(out / "ddnet")
    single = Validator(ValidationConfig(**{**val, "shards": tuple(held_out)}), "test",
                       DistEnv(0, 1, 0, torch.device("cpu")), tmp_path / "one").run(
        3, lambda b: net(b["raw"], b["pattern"]).float(), [net])["val"]
    assert {k: v for k, v in rows[-1].items() if k not in ("step", "val/seconds")} == pytest.approx(
        {k: v for k, v in single.items() if k != "val/seconds"}, rel=1e-6)
    assert (out / "validation/val-step-000003.png").read_bytes() == (
        tmp_path / "one/validation/val-step-000003.png").read_bytes()
    # EMA: in the checkpoint (training_state.pt) and the final folder; the checkpoint's model is the trained one
    state = torch.load(out / "checkpoints/step-000003/training_state.pt", weights_only=True)
    assert state["ema"]["n_averaged"] == 3 and state["ema"]["decay"] == 0.5
    fsd = net.state_dict()
    tsd = DDNet.from_pretrained(out / "checkpoints/step-000003").state_dict()
    assert all(torch.equal(fsd[k], v) for k, v in state["ema"]["shadow"].items())
    assert not all(torch.equal(fsd[k], tsd[k]) for k in fsd)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["final_weights"] == "ema" and summary["ranks_identical"]
    assert summary["last_validation"]["val"] == {k: v for k, v in rows[-1].items() if k != "step"}


def test_lpips_without_weights_is_skipped_with_one_note_and_found_with_them(shards, lpips_folder, tmp_path):
    from rddm.models.ddnet import DDNet
    from rddm.train.distributed import DistEnv
    from rddm.train.validation import Validator

    env = DistEnv(0, 1, 0, torch.device("cpu"))
    cfg = ValidationConfig(shards=(str(shards),), max_samples=1, grid_samples=0, lpips_weights=str(tmp_path / "none"))
    with pytest.warns(RuntimeWarning, match="LPIPS-alex skipped, no weights found"):
        v = Validator(cfg, "test", env, tmp_path / "a")
    net = DDNet(block_out_channels=(8, 16), layers_per_block=1)
    rec = v.run(1, lambda b: net(b["raw"], b["pattern"]), [net])["val"]
    assert "val/srgb_lpips" not in rec and math.isfinite(rec["val/srgb_psnr"])
    assert not (tmp_path / "a/validation").exists()  # grid_samples: 0
    # found in the folder the benchmarks use ($TORCH_HOME layout: hub/checkpoints, hub/pyiqa)
    cfg = ValidationConfig(shards=(str(shards),), max_samples=1, lpips_weights=None)
    rec = Validator(cfg, "test", env, tmp_path / "b", lpips_folder=str(lpips_folder)).run(
        1, lambda b: net(b["raw"], b["pattern"]), [net])["val"]
    assert rec["val/srgb_lpips"] > 0
