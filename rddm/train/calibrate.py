"""``rddm calibrate-latent-scale``: the RVAE's latent scale factor from paper Eq. 4. See ``docs/training.md``."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist

from rawsynth._version import __version__
from rawsynth.data import make_loader
from rawsynth.io.atomic import atomic_output

from ..config import CalibrateConfig, config_to_dict
from ..errors import DataError
from . import core

__all__ = ["calibrate_latent_scale", "REPORT"]

REPORT = "latent_scale.json"


def calibrate_latent_scale(rvae_dir: str | os.PathLike, cfg: CalibrateConfig, out: str | os.PathLike | None = None,
                           *, device: str = "auto", progress: bool = True) -> dict:
    """Compute Eq. 4's scale over training samples and store it in the RVAE's config.

    Args:
        rvae_dir: an RVAE folder (``OUT/rvae`` of ``rddm train-rvae``, or ``OUT`` itself).
        cfg: the calibration config (``data.shards`` must be set).
        out: write the updated RVAE to this folder (a copy); ``None`` updates ``rvae_dir`` in place (only its
            ``config.json`` changes, and ``latent_scale.json`` is added).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        progress: show a progress bar (rank 0).

    Returns:
        The report (``scaling_factor``, ``sigma``, ``mean``, ``num_samples``, ``num_elements``, ...).

    Raises:
        WeightsError: not an RVAE folder. DataError: no shards, or no sample at all.
    """
    from tqdm import tqdm

    from ..models.rvae import RVAE

    env = core.setup_distributed(device)
    try:
        shards = core.resolve_shards(cfg.data.shards)
        model = RVAE.from_pretrained(rvae_dir)
        model.to(env.device).eval()
        mine = cfg.num_samples // env.world_size + (env.rank < cfg.num_samples % env.world_size)
        d = cfg.data
        loader = make_loader(shards, cfg.batch_size, d.num_workers, crop=d.crop, flips=d.flips, seed=cfg.seed,
                             shuffle=d.shuffle, handler=d.handler)
        acc = torch.zeros(3, dtype=torch.float64, device=env.device)  # samples, sum, sum of squares
        count_el = torch.zeros((), dtype=torch.float64, device=env.device)
        bar = tqdm(total=cfg.num_samples, desc="calibrate-latent-scale", disable=not (progress and env.is_main),
                   unit="sample")
        done, step = 0, 0
        with torch.no_grad():
            for batch in loader:
                if done >= mine:
                    break
                n = min(len(batch["key"]), mine - done)
                with core.autocast(env, cfg.mixed_precision):
                    if cfg.input == "linear":
                        post = model.encode_linear(batch["hq"][:n].to(env.device))
                    else:
                        post = model.encode_raw(batch["raw"][:n].to(env.device), batch["pattern"][:n])
                gen = core.step_generator(cfg.seed, env.rank, step, 0, env.device)
                z = (post.sample(generator=gen) if cfg.sample_posterior else post.mode()).double()
                acc += torch.stack([torch.tensor(float(n), dtype=torch.float64, device=env.device), z.sum(),
                                    (z * z).sum()])
                count_el += z.numel()
                done += n
                step += 1
                bar.update(n * env.world_size)
        bar.close()
        stats = torch.cat([acc, count_el[None]])
        if env.distributed:
            dist.all_reduce(stats)
        samples, s1, s2, n_el = stats.tolist()
        if samples == 0:
            raise DataError("no sample could be read from the shards", fix="check --shards")
        mean = s1 / n_el
        var = max(s2 / n_el - mean * mean, 0.0)
        sigma = math.sqrt(var)
        if not sigma > 0:
            raise DataError(f"the latents have zero variance over {int(samples)} samples; cannot scale")
        report = {"scaling_factor": 1.0 / sigma, "sigma": sigma, "mean": mean, "num_samples": int(samples),
                  "num_samples_requested": cfg.num_samples, "num_elements": int(n_el), "input": cfg.input,
                  "sample_posterior": cfg.sample_posterior, "previous_scaling_factor": model.config.scaling_factor,
                  "config": config_to_dict(cfg), "shards": len(shards), "world_size": env.world_size,
                  "version": __version__}
        if env.is_main:
            src = Path(rvae_dir)
            if not (src / "config.json").is_file() and (src / "rvae" / "config.json").is_file():
                src = src / "rvae"
            dst = Path(out) if out is not None else src
            if dst.resolve() != src.resolve():
                if dst.exists():
                    shutil.rmtree(dst)
                shutil.copytree(src, dst)
            model.register_to_config(scaling_factor=report["scaling_factor"])
            with atomic_output(dst / "config.json") as tmp:
                Path(tmp).write_text(model.to_json_string())
            with atomic_output(dst / REPORT) as tmp:
                Path(tmp).write_text(json.dumps(report, indent=1, sort_keys=True))
            report["rvae"] = str(dst)
        env.barrier()
        if samples < cfg.num_samples and env.is_main:
            import warnings

            warnings.warn(f"calibrate-latent-scale: the shards gave only {int(samples)} of the {cfg.num_samples} "
                          "samples asked for", RuntimeWarning, stacklevel=2)
        return report
    finally:
        core.cleanup_distributed(env)
