"""Shared fixtures: shards from the photos bundled with scikit-image, a tiny SD folder, random LPIPS weights.

Everything is tiny (8×16-channel models, 32–64 px crops) so that the whole ``tests/rddm`` run stays short on a
2-core CPU. Models are built with the same classes as the real ones (diffusers ``AutoencoderKL`` with the SD
block types, only fewer and narrower blocks: the real SD-2.1 VAE has four blocks, 8× down; these have two, 2×
down).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from rddm.models.architectures import TINY_UNET, TINY_VAE  # the tiny models: SD's block types, 2 narrow levels

ROOT = Path(__file__).resolve().parents[2]

TINY_DDNET = {"block_out_channels": [8, 16], "layers_per_block": 1}


def tiny_train_config(stage: str, **over) -> dict:
    """A tiny config of ``stage`` (``ddnet``/``rvae``) as a dict; ``over`` replaces top-level keys."""
    d = {"max_steps": 4, "batch_size": 2, "log_every": 1, "save_every": 2, "keep_checkpoints": 0,
         "tensorboard": True, "data": {"crop": 32, "num_workers": 0, "shuffle": 0},
         "optim": {"lr": 1e-3, "lr_scheduler": "constant", "warmup_steps": 0}}
    if stage == "ddnet":
        d["model"] = dict(TINY_DDNET)
    else:
        d["disc_optim"] = {"lr": 1e-3}
        d["loss"] = {"lpips": 1.0, "lpips_net": "alex", "disc_start": 2, "disc_channels": 8, "disc_layers": 2}
    d.update(over)
    return d


def write_yaml(path: Path, d: dict) -> Path:
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def run_cli(*args: str, cwd: Path, env_extra: dict | None = None, timeout: int = 120,
            launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python [launcher] -m rddm ARGS`` in a subprocess (the real entry point)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run([sys.executable, *launcher, "-m", "rddm", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> Path:
    """``ddnet``-mode shards: the 8 bundled photos, one 64×64 crop each, 2 samples per shard (4 shards)."""
    from rawsynth.generate import generate
    from rawsynth.pipeline import SynthConfig
    from rawsynth.sources import bundled_sources

    out = tmp_path_factory.mktemp("shards") / "ddnet"
    generate(bundled_sources(), out, SynthConfig(mode="ddnet", crop=64, crops_per_image=1, save_srgb=False),
             seed=0, shard_size=2, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def rddm_shards(tmp_path_factory) -> Path:
    """Two ``rddm``-mode samples (degraded RAW ↔ linear HQ) in one shard."""
    from rawsynth.generate import generate
    from rawsynth.pipeline import SynthConfig
    from rawsynth.sources import bundled_sources

    out = tmp_path_factory.mktemp("shards") / "rddm"
    generate(bundled_sources()[:2], out, SynthConfig(mode="rddm", crop=64, crops_per_image=1, save_srgb=False),
             seed=0, shard_size=2, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def sd_folder(tmp_path_factory) -> Path:
    """A tiny Stable-Diffusion-like diffusers folder: ``model_index.json`` + ``vae/`` (random weights)."""
    from diffusers import AutoencoderKL

    root = tmp_path_factory.mktemp("sd") / "tiny-sd-2-1"
    torch.manual_seed(0)
    AutoencoderKL(**TINY_VAE).save_pretrained(root / "vae")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                       "vae": ["diffusers", "AutoencoderKL"]}))
    return root


def write_tiny_sd21(root: Path, seed: int = 0) -> Path:
    """Write a tiny SD-2.1-like diffusers pipeline folder at ``root`` (random weights, real classes and layout):
    ``model_index.json``, ``vae/`` (:data:`TINY_VAE`), ``unet/`` (:data:`TINY_UNET`), ``text_encoder/`` (a 2-layer
    CLIP text model, width 32), ``tokenizer/`` (a character-level CLIP BPE vocabulary) and ``scheduler/`` (SD-2.1's
    DDPM ``scaled_linear`` schedule)."""
    import string

    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root.mkdir(parents=True, exist_ok=True)
    tok_dir = root / "tokenizer"
    tok_dir.mkdir(exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits + ",.!'-":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77,
                  pad_token="<|endoftext|>").save_pretrained(tok_dir)
    torch.manual_seed(seed)
    AutoencoderKL(**TINY_VAE).save_pretrained(root / "vae")
    UNet2DConditionModel(**TINY_UNET).save_pretrained(root / "unet")
    CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                 num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
                                 hidden_act="gelu", bos_token_id=0, eos_token_id=1, pad_token_id=1)
                  ).save_pretrained(root / "text_encoder")
    DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000,
                  prediction_type="epsilon").save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "vae": ["diffusers", "AutoencoderKL"],
        "unet": ["diffusers", "UNet2DConditionModel"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "DDPMScheduler"]}))
    return root



def nested_equal(x, y) -> bool:
    """Bitwise equality of nested dicts/lists/tuples of tensors and plain values (state dicts, optimizer states)."""
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(nested_equal(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(nested_equal(u, v) for u, v in zip(x, y))
    return x == y

@pytest.fixture(scope="session")
def sd21_folder(tmp_path_factory) -> Path:
    """A tiny but complete SD-2.1-like pipeline folder (see :func:`write_tiny_sd21`)."""
    return write_tiny_sd21(tmp_path_factory.mktemp("sd21") / "tiny-sd-2-1")


@pytest.fixture(scope="module")
def rvae_folder(sd21_folder, tmp_path_factory) -> Path:
    """The stage-1 RVAE as `rddm train --rvae` gets it: RVAE.from_sd of the tiny SD folder, saved, with its latent
    scale recorded as `rddm calibrate-latent-scale` leaves it (training refuses an uncalibrated RVAE folder)."""
    from rddm.models.rvae import RVAE

    out = tmp_path_factory.mktemp("rvae") / "rvae"
    rvae = RVAE.from_sd(sd21_folder)
    rvae.save_pretrained(out)
    (out / "latent_scale.json").write_text(json.dumps({"scaling_factor": rvae.config.scaling_factor}))
    return out


@pytest.fixture(scope="session")
def lpips_folder(tmp_path_factory) -> Path:
    """Randomly initialised LPIPS-alex weights under the file names a real weights folder uses."""
    from rddm.lpips import BACKBONE_FILES, LIN_FILES, LPIPS

    root = tmp_path_factory.mktemp("lpips")
    (root / "hub" / "checkpoints").mkdir(parents=True)
    (root / "hub" / "pyiqa").mkdir(parents=True)
    torch.manual_seed(0)
    net = LPIPS("alex")
    for lin in net.lins:
        torch.nn.init.uniform_(lin.weight, 0.0, 0.1)
    torch.save({f"features.{k}": v for k, v in net.features.state_dict().items()},
               root / "hub" / "checkpoints" / BACKBONE_FILES["alex"])
    torch.save({f"lin{i}.model.1.weight": lin.weight for i, lin in enumerate(net.lins)},
               root / "hub" / "pyiqa" / LIN_FILES["alex"][0])
    return root
