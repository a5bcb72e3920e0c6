"""Training infrastructure shared by every stage: processes, data stream, precision, checkpoints, logging.

* **Processes** (:func:`setup_distributed`): one process per device, started by ``torchrun`` or
  ``accelerate launch`` (both set ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``); NCCL on GPUs, gloo on
  the CPU. Models are wrapped in ``DistributedDataParallel``; the shard reader gives every rank (and every
  DataLoader worker) its own shards.
* **Data** (:func:`make_stream`): an endless stream of batches, epoch after epoch, from shards
  (:class:`BatchStream` over ``rawsynth.data.make_loader``) or synthesised on the fly (:class:`OnTheFlyStream`
  over :mod:`rawsynth.onthefly`). Its position is ``(epoch, batches read in the epoch)`` per rank; a batch's
  content is a function of (seed, epoch, rank, world size, workers) only, so the position gives the same batches
  again on resume.
* **Randomness**: model initialisation under a seeded, forked RNG (:func:`seeded`); per-step draws (posterior
  samples) from :func:`step_generator` ``(seed, rank, step, micro-batch)``; the global torch RNG states are
  saved in checkpoints too.
* **Precision**: ``torch.autocast`` in bf16/fp16 (:func:`autocast`), a ``GradScaler`` for fp16.
* **Checkpoints** (:class:`Run`): ``OUT/checkpoints/step-NNNNNN/`` holds each model as a diffusers folder
  (``config.json`` + ``diffusion_pytorch_model.safetensors``), ``training_state.pt`` (optimizers, schedulers,
  scaler), ``rng_states.pt``, ``config.yaml`` and, written last, ``trainer_state.json`` (step, data positions).
  A checkpoint is written under ``step-NNNNNN.tmp`` and renamed when complete. ``.pt`` files are read with
  ``torch.load(weights_only=True)``. A model loads back through :func:`load_model_weights` (its own
  ``load_checkpoint_weights(folder)`` when it has one, so models that save only their LoRA groups resume exactly).
* **Logging** (:class:`TrainLogger`): TensorBoard under ``OUT/logs``, ``OUT/metrics.jsonl`` (one JSON line per
  logged step, values averaged over ranks) and a tqdm bar, on rank 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from rawsynth._version import __version__
from rawsynth.data import bayer_crop_flip, collate, make_loader
from rawsynth.device import check_device, resolve_device
from rawsynth.errors import InputError, RawsynthError
from rawsynth.generate_config import GenerateConfig
from rawsynth.io.atomic import atomic_output
from rawsynth.onthefly import OnTheFlySynth, SourceCrops, collate_crops
from rawsynth.pipeline import SynthConfig
from rawsynth.rng import numpy_rng, torch_generator
from rawsynth.sources import collect_sources

from ..config import DataConfig, OptimConfig, TrainConfig, config_diff, config_from_dict, load_yaml, save_config
from ..errors import CheckpointError, ConfigError, DataError, WeightsError

__all__ = ["DistEnv", "setup_distributed", "cleanup_distributed", "resolve_shards", "BatchStream", "DataSource",
           "resolve_data", "OnTheFlyStream", "make_stream", "seeded",
           "step_generator", "autocast", "make_scaler", "build_optimizer", "build_scheduler", "optimizer_step",
           "wrap_ddp", "no_sync", "all_reduce_grads", "load_model_weights", "Run", "TrainLogger", "model_digest",
           "peak_memory", "MUTABLE_KEYS", "CHECKPOINT_FILES"]

#: Config keys that may change when a run is resumed (everything else must match the checkpoint's config).
MUTABLE_KEYS = ("max_steps", "log_every", "save_every", "keep_checkpoints", "tensorboard", "data.num_workers",
                "data.shards", "data.handler", "data.onthefly.sources")
#: The files of a checkpoint folder besides the model folders.
CHECKPOINT_FILES = ("config.yaml", "rng_states.pt", "trainer_state.json", "training_state.pt")


# ------------------------------------------------------------------------------------------- processes


@dataclasses.dataclass(frozen=True)
class DistEnv:
    """This process's place in the run: ``rank`` of ``world_size``, its ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialized_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    try:
        return int(v) if v not in (None, "") else default
    except ValueError:
        raise ConfigError(f"environment variable {name}={v!r} is not an int") from None


def setup_distributed(device: str = "auto") -> DistEnv:
    """Join the process group started by ``torchrun``/``accelerate launch`` (if any) and pick the device.

    Args:
        device: ``auto`` (``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``), ``cpu``, ``cuda`` or
            ``cuda:N`` (single process only).

    Raises:
        ConfigError: CUDA requested but not available, or ``cuda:N`` with several processes.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world > 1 and check_device(device).startswith("cuda:"):
        raise ConfigError(f"--device {device} with {world} processes: each process takes cuda:LOCAL_RANK",
                          fix="use --device cuda")
    dev = resolve_device(device, local_rank=local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    here = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        here = True
    if dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    return DistEnv(rank, world, local, dev, here)


def cleanup_distributed(env: DistEnv) -> None:
    """Leave the process group if :func:`setup_distributed` joined it."""
    if env.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def _all_gather(env: DistEnv, obj) -> list:
    if not env.distributed:
        return [obj]
    out = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def _broadcast(env: DistEnv, obj):
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ------------------------------------------------------------------------------------------------ data


def resolve_shards(specs: Sequence[str] | str, where: str = "data.shards") -> list[str]:
    """Expand shard specs into a list of shard paths/URLs.

    Each spec may be a folder (its ``shard-*.tar``, sorted), a shard file, a brace pattern
    (``shard-{000000..000099}.tar``, expanded by the reader) or a URL.

    Raises:
        DataError: no specs, a folder without shards, or a path that does not exist.
    """
    if isinstance(specs, (str, os.PathLike)):
        specs = [os.fspath(specs)]
    if not specs:
        raise DataError(f"no training shards given ({where} is empty)",
                        fix="pass --shards DIR (a `rawsynth generate` output folder) or set data.shards in the config")
    out: list[str] = []
    for s in specs:
        s = os.fspath(s)
        if "://" in s or "{" in s:
            out.append(s)
            continue
        p = Path(s)
        if p.is_dir():
            found = sorted(glob.glob(os.path.join(glob.escape(str(p)), "shard-*.tar")))
            if not found:
                raise DataError("no shard-*.tar in this folder", path=p,
                                fix="point at the --out folder of `rawsynth generate`")
            out += found
        elif p.is_file():
            out.append(str(p))
        else:
            raise DataError("no such shard file or folder", path=p, fix="check --shards / data.shards")
    return out


class BatchStream:
    """Endless batches over :func:`rawsynth.data.make_loader`, with a resumable position.

    Args:
        shards: shard paths (:func:`resolve_shards`).
        data: the :class:`~rddm.config.DataConfig` (crop, flips, shuffle, workers, handler, expected mode).
        batch_size: samples per batch (incomplete batches at the end of a worker's shards are dropped).
        seed: the run seed.
        position: ``(epoch, batches already read in that epoch)`` to continue from.
    """

    def __init__(self, shards: list[str], data: DataConfig, batch_size: int, seed: int,
                 position: tuple[int, int] | None = None):
        self.data = data
        self.batch_size = batch_size
        self.loader = make_loader(shards, batch_size, data.num_workers, drop_last=True, crop=data.crop,
                                  flips=data.flips, seed=seed, shuffle=data.shuffle, handler=data.handler)
        self.epoch, self.index = position if position is not None else (0, 0)
        self._it: Iterator | None = None

    @property
    def position(self) -> tuple[int, int]:
        """``(epoch, batches read in the epoch)``."""
        return (self.epoch, self.index)

    def _start_epoch(self) -> None:
        self.loader.dataset.set_epoch(self.epoch)
        self._it = iter(self.loader)
        for i in range(self.index):  # replay to the saved position: same batches as the interrupted run
            try:
                next(self._it)
            except StopIteration:
                raise CheckpointError(f"the data stream ended after {i} of the {self.index} batches read in epoch "
                                      f"{self.epoch} before the checkpoint: the shards changed",
                                      fix="resume with the shards the run was started with") from None

    def next(self) -> dict:
        """The next batch (``rawsynth.data.collate`` format)."""
        empty_epochs = 0
        while True:
            if self._it is None:
                self._start_epoch()
            try:
                batch = next(self._it)
            except StopIteration:
                if self.index == 0:
                    empty_epochs += 1
                    if empty_epochs > 1:
                        raise DataError(f"the shards of this process give no full batch of {self.batch_size} "
                                        f"samples (crop {self.data.crop}; see the warnings above for skipped ones)",
                                        fix="generate more samples (or larger ones), or lower batch_size / "
                                            "data.num_workers / the number of processes") from None
                self._it = None
                self.epoch, self.index = self.epoch + 1, 0
                continue
            self.index += 1
            self._check_mode(batch)
            return batch

    def _check_mode(self, batch: dict) -> None:
        want = self.data.mode
        if want == "any":
            return
        for m in batch["meta"]:
            if m.get("mode") != want:
                raise DataError(f"sample {m.get('key')} is a {m.get('mode')!r}-mode pair; this stage trains on "
                                f"{want!r}-mode pairs", fix=f"generate shards with `rawsynth generate --mode {want}`"
                                f", or set data.mode: any in the config")


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A :class:`~rddm.config.DataConfig` with its inputs resolved (:func:`resolve_data`).

    Attributes:
        data: the config.
        shards: the shard paths (shard training), else empty.
        sources: the source photos, sorted (on-the-fly training), else empty.
        synth: the synthesis config (on-the-fly training), else ``None``.
    """

    data: DataConfig
    shards: tuple[str, ...] = ()
    sources: tuple = ()
    synth: object = None

    @property
    def onthefly(self) -> bool:
        return self.synth is not None


def _synth_config(data: DataConfig):
    """The :class:`rawsynth.pipeline.SynthConfig` of ``data.onthefly``: defaults < its YAML < the stage's mode and
    ``data.crop`` where the YAML leaves them open."""

    path = data.onthefly.synth_config
    d: dict = {}
    if path is not None:
        # the run keys (seed, shard_size, ...) of a `rawsynth config` YAML are rawsynth generate's: ignored here
        d, _ = GenerateConfig.split(load_yaml(path, fix="check data.onthefly.synth_config (a `rawsynth config` YAML)"))
    stage = "rddm" if data.mode == "any" else data.mode
    if d.get("mode", stage) != stage and data.mode != "any":
        raise ConfigError(f"the synthesis config makes {d['mode']!r}-mode pairs; this stage trains on "
                          f"{data.mode!r}-mode pairs", path=path, fix=f"set mode: {data.mode} there (or remove it)")
    d.setdefault("mode", stage)
    if data.crop is not None:
        d.setdefault("crop", data.crop)
    try:
        synth = SynthConfig.from_dict(d)
    except RawsynthError as e:
        raise ConfigError(f"invalid synthesis config ({e})", path=path,
                          fix="fix data.onthefly.synth_config (see `rawsynth config`)") from None
    if data.crop is not None and data.crop > synth.crop:
        raise ConfigError(f"data.crop ({data.crop}) is larger than the synthesised samples ({synth.crop} px)",
                          path=path, fix="lower data.crop or raise crop in the synthesis config")
    return synth


def resolve_data(data: DataConfig) -> DataSource:
    """Check and resolve where the training pairs come from, before anything is written.

    Raises:
        DataError: neither ``data.shards`` nor ``data.onthefly`` is set, missing shards, or sources that do not
            exist or hold no image.
        ConfigError: an unreadable or invalid synthesis config, a mode other than the stage's, or ``data.crop``
            larger than the synthesised samples.
    """
    otf = data.onthefly
    if otf is None:
        if not data.shards:
            raise DataError("no training shards given (data.shards is empty) and no on-the-fly synthesis "
                            "(data.onthefly)", fix="pass --shards DIR (a `rawsynth generate` output folder), set "
                                                   "data.shards in the config, or set data.onthefly.sources")
        return DataSource(data, shards=tuple(resolve_shards(data.shards)))

    try:
        sources = tuple(collect_sources(list(otf.sources)))
    except InputError as e:
        raise DataError(f"{e.reason}{f' ({e.detail})' if e.detail else ''}", path=e.path,
                        fix="check data.onthefly.sources (folders, image files or .txt/.lst/.list files)") from None
    return DataSource(data, sources=sources, synth=_synth_config(data))


class OnTheFlyStream:
    """Endless batches synthesised while training (:mod:`rawsynth.onthefly`), with a resumable position.

    The same interface as :class:`BatchStream`. An epoch is the samples ``rawsynth generate`` would plan for the
    sources (keys, crops and recipes from the synthesis seed, as the shards would record them), in plan order or,
    with ``data.shuffle > 0``, in a permutation drawn from ``(seed, epoch)``; rank ``r`` of ``W`` takes every
    ``W``-th sample of it from ``r`` (the same count on every rank: up to ``W − 1`` samples are left out), in
    batches of ``batch_size`` (an incomplete last batch is dropped). DataLoader workers decode the sources and cut
    the uint8 crops; :class:`rawsynth.onthefly.OnTheFlySynth` makes the pairs on ``device``; then each sample gets
    the shard reader's crop and flips (:func:`rawsynth.data.bayer_crop_flip` from
    ``numpy_rng(seed, key, f"augment/{epoch}/0")``, Bayer pattern updated). A batch is thus a function of
    (seed, synthesis seed, epoch, rank, world size, position) alone: resuming starts the loader at the saved batch,
    without replaying the ones before it. Samples whose source fails (``data.handler`` ``warn``/``skip``) are left
    out of their batch (a batch where all fail is skipped).

    Args:
        data: the :class:`~rddm.config.DataConfig` with ``onthefly`` set, or its :func:`resolve_data`.
        batch_size: samples per batch.
        seed: the run seed (order, crops and flips; also the synthesis seed unless ``data.onthefly.seed``).
        position: ``(epoch, batches already read in that epoch)`` to continue from.
        rank: this process's rank.
        world_size: the number of processes.
        device: where to synthesise; the batches are on it.

    Raises:
        ConfigError, DataError: as :func:`resolve_data`; ``data.onthefly.samples`` beyond the planned samples;
            or a share of the epoch too small for one batch.
    """

    def __init__(self, data: DataConfig | DataSource, batch_size: int, seed: int,
                 position: tuple[int, int] | None = None, *, rank: int = 0, world_size: int = 1,
                 device: str | torch.device = "cpu"):
        src = data if isinstance(data, DataSource) else resolve_data(data)
        if not src.onthefly:
            raise ConfigError("OnTheFlyStream needs data.onthefly (use BatchStream for shards)")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in [0, {world_size}), got {rank}")
        self.data, self.source, self.synth_config = src.data, src, src.synth
        otf = src.data.onthefly
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, int(seed), rank, world_size
        self.synth_seed = int(seed) if otf.seed is None else otf.seed
        self.device = torch.device(device)
        try:
            self.dataset = SourceCrops(list(src.sources), src.synth, seed=self.synth_seed, num_samples=otf.samples,
                                       handler=src.data.handler)
            self.synth = OnTheFlySynth(src.synth, self.synth_seed, self.device, jpeg=otf.jpeg)
        except ConfigError as e:
            if e.fix:
                raise
            raise ConfigError(e.message, path=e.path, fix="lower data.onthefly.samples, add sources or raise "
                                                          "crops_per_image in the synthesis config") from None
        self.per_rank = len(self.dataset) // world_size
        if self.per_rank < batch_size:
            raise DataError(f"the on-the-fly epoch ({len(self.dataset)} samples) gives each of the {world_size} "
                            f"process(es) {self.per_rank} samples: not one full batch of {batch_size}",
                            fix="add sources, raise crops_per_image or data.onthefly.samples, or lower batch_size /"
                                " the number of processes")
        self.epoch, self.index = position if position is not None else (0, 0)
        self._it: Iterator | None = None

    @property
    def position(self) -> tuple[int, int]:
        """``(epoch, batches read in the epoch)``."""
        return (self.epoch, self.index)

    @property
    def batches_per_epoch(self) -> int:
        return self.per_rank // self.batch_size

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's samples of ``epoch`` (indices into :attr:`dataset`, in reading order)."""
        import numpy as np

        n = len(self.dataset)
        order = np.arange(n)
        if self.data.shuffle > 0:
            order = numpy_rng(self.seed, "onthefly", f"order/{epoch}").permutation(n)
        return [int(i) for i in order[self.rank::self.world_size][:self.per_rank]]

    def _start_epoch(self) -> None:
        from torch.utils.data import DataLoader

        mine, b = self.epoch_indices(self.epoch), self.batch_size
        batches = [mine[i * b:(i + 1) * b] for i in range(self.index, self.batches_per_epoch)]
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.data.num_workers,
                            collate_fn=collate_crops, pin_memory=self.device.type == "cuda")
        self._it = iter(loader)

    def next(self) -> dict:
        """The next batch (``rawsynth.data.collate`` format, on the synthesis device)."""
        failed = 0
        while True:
            if self._it is None:
                self._start_epoch()
            try:
                crops = next(self._it)
            except StopIteration:
                self._it = None
                self.epoch, self.index = self.epoch + 1, 0
                continue
            self.index += 1
            if crops is None:  # every sample of the batch failed (warned about by the handler)
                failed += 1
                if failed > self.batches_per_epoch:
                    raise DataError("no sample of a whole epoch could be synthesised (see the warnings above)",
                                    fix="check data.onthefly.sources")
                continue
            return self._augment(self.synth(crops))

    def _augment(self, batch: dict) -> dict:
        flips = self.data.flips
        out = []
        for i, key in enumerate(batch["key"]):
            sample = {"key": key, "raw": batch["raw"][i], "hq": batch["hq"][i], "pattern": batch["pattern"][i],
                      "meta": batch["meta"][i]}
            rng = numpy_rng(self.seed, key, f"augment/{self.epoch}/0")  # the shard reader's draw for this key
            out.append(bayer_crop_flip(sample, self.data.crop, rng, hflip=flips, vflip=flips))
        return collate(out)


def make_stream(data: DataConfig | DataSource, batch_size: int, seed: int, position: tuple[int, int] | None = None,
                env: DistEnv | None = None) -> BatchStream | OnTheFlyStream:
    """The training stream of ``data``: :class:`BatchStream` over its shards, or :class:`OnTheFlyStream`.

    Args:
        data: the :class:`~rddm.config.DataConfig` or its :func:`resolve_data` (resolve early to fail before
            anything is written).
        batch_size: samples per batch per process.
        seed: the run seed.
        position: ``(epoch, batches read)`` to continue from (:meth:`Run.load_checkpoint`).
        env: this process (rank, world size, device; ``None``: one CPU process). On-the-fly pairs are
            synthesised on ``data.onthefly.device``, else on ``env.device``.
    """
    src = data if isinstance(data, DataSource) else resolve_data(data)
    if not src.onthefly:
        return BatchStream(list(src.shards), src.data, batch_size, seed, position)
    env = env if env is not None else DistEnv(0, 1, 0, torch.device("cpu"))
    device = src.data.onthefly.device
    if device is None:
        device = env.device
    elif device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"data.onthefly.device {device}: CUDA is not available on this machine",
                              fix="set data.onthefly.device: null (the training device) or cpu")
        if device == "cuda":
            device = env.device if env.device.type == "cuda" else torch.device("cuda", env.local_rank %
                                                                                 torch.cuda.device_count())
    return OnTheFlyStream(src, batch_size, seed, position, rank=env.rank, world_size=env.world_size, device=device)


# ------------------------------------------------------------------------------------------ randomness


@contextlib.contextmanager
def seeded(seed: int):
    """Run the block with the global torch RNG seeded from ``seed`` (e.g. model initialisation), restoring the
    previous RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def step_generator(seed: int, rank: int, step: int, micro: int, device: torch.device,
                   stream: str = "micro") -> torch.Generator:
    """The generator of one micro-batch's random draws: a function of ``(seed, rank, step, micro, stream)`` only.

    ``stream`` names independent draws of the same micro-batch (e.g. ``"reg"`` for a second network's step); the
    default ``"micro"`` is the stream every stage uses for its model's own draws.
    """
    return torch_generator(seed, f"rank{rank}", f"step{step}/{stream}{micro}", device=device)


# ----------------------------------------------------------------------------------- precision, optimizer


def autocast(env: DistEnv, mixed_precision: str):
    """``torch.autocast`` for ``bf16``/``fp16`` on the run's device; a no-op context for ``no``."""
    if mixed_precision == "no":
        return contextlib.nullcontext()
    if mixed_precision == "bf16":
        if env.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("mixed_precision bf16: this GPU does not support bfloat16", fix="use fp16 or no")
        return torch.autocast(env.device.type, dtype=torch.bfloat16)
    if mixed_precision == "fp16":
        return torch.autocast(env.device.type, dtype=torch.float16)
    raise ConfigError(f"mixed_precision must be no, bf16 or fp16, got {mixed_precision!r}")


def make_scaler(env: DistEnv, mixed_precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for ``fp16`` only."""
    return torch.amp.GradScaler(env.device.type, enabled=mixed_precision == "fp16")


def build_optimizer(params, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the parameters that require grad."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: no parameter requires grad")
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, max_steps: int):
    """The learning-rate schedule (``diffusers.optimization.get_scheduler``), stepped once per optimizer step."""
    from diffusers.optimization import get_scheduler

    kwargs = {}
    if cfg.lr_scheduler != "constant":
        kwargs["num_warmup_steps"] = cfg.warmup_steps
    if cfg.lr_scheduler in ("linear", "cosine"):
        kwargs["num_training_steps"] = max(max_steps, 1)
    return get_scheduler(cfg.lr_scheduler, optimizer, **kwargs)


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, max_grad_norm: float | None):
    """Unscale, clip (if configured) and step; returns the gradient norm before clipping (or ``None``).
    Call ``scaler.update()`` once after every optimizer of the step."""
    norm = None
    if max_grad_norm is not None:
        scaler.unscale_(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    scaler.step(optimizer)
    return norm


def wrap_ddp(model: nn.Module, env: DistEnv) -> nn.Module:
    """``DistributedDataParallel(model)`` when several processes run, else ``model``."""
    if not env.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def no_sync(model: nn.Module, skip: bool):
    """``model.no_sync()`` (no gradient all-reduce) when ``skip`` and ``model`` is DDP-wrapped."""
    if skip and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def all_reduce_grads(params: Sequence[nn.Parameter], env: DistEnv) -> None:
    """Average the gradients of ``params`` over the ranks (what DDP does), for models that DDP cannot wrap.

    Used where each step runs a different subset of the parameters (a CMB LoRA group per Bayer pattern, two
    networks stepping in turn): a parameter that got no gradient on any rank keeps ``grad = None`` everywhere
    (its optimizer skips it, as in a single process); one that got a gradient on some ranks gets the sum over
    the ranks divided by the world size on every rank (zeros for the others), exactly DDP's average. One
    flattened all-reduce per call; a no-op in a single process.
    """
    if not env.distributed:
        return
    params = list(params)
    if not params:
        return
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=env.device)
    dist.all_reduce(has)
    live = [p for p, h in zip(params, has.tolist()) if h]
    if not live:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in live]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat)
    flat /= env.world_size
    offset = 0
    for p in live:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).to(p.dtype).clone()
        offset += n


# ------------------------------------------------------------------------------------------- checksums


def model_digest(model: nn.Module) -> str:
    """SHA-256 of every tensor of the state dict (sorted keys): equal digests mean bitwise-equal weights."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def peak_memory(env: DistEnv) -> dict:
    """Peak memory of this process: CUDA ``max_memory_allocated``/``max_memory_reserved`` or the CPU peak RSS
    (MiB)."""
    out = {}
    if env.device.type == "cuda":
        out["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(env.device) / 2**20, 1)
        out["cuda_max_reserved_mib"] = round(torch.cuda.max_memory_reserved(env.device) / 2**20, 1)
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["cpu_peak_rss_mib"] = round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)
    except ImportError:  # pragma: no cover - Windows
        pass
    return out


# ------------------------------------------------------------------------------------------------- run


def load_model_weights(model: nn.Module, folder: Path) -> None:
    """Load the weights a checkpoint saved for ``model`` (with its ``save_pretrained``) back into it, in place.

    * A model with a ``load_checkpoint_weights(folder)`` method loads itself (e.g. :class:`rddm.models.rddm.RDDM`,
      whose folder holds only its LoRA groups and a reference to the frozen base model).
    * A model with CMB LoRA groups (e.g. an :class:`~rddm.models.rvae.RVAE` after ``add_cmb_lora``): its own
      weights from ``diffusion_pytorch_model.safetensors`` (plain names) and each group's from
      ``cmb_lora/<PATTERN>/`` into the adapters it already has.
    * Any other diffusers model: ``diffusion_pytorch_model.safetensors``, strictly.

    Raises:
        CheckpointError: missing files or weights that do not fit (with the folder named).
    """
    hook = getattr(model, "load_checkpoint_weights", None)
    if callable(hook):
        hook(folder)
        return
    from safetensors.torch import load_file

    sd = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    from .. import lora as _lora

    if not _lora.cmb_groups(model):
        model.load_state_dict(sd, strict=True)
        return
    own = {k: k.replace(".base_layer.", ".") for k in model.state_dict() if "lora_" not in k}
    missing = sorted(set(own.values()) - set(sd))
    if missing or len(sd) != len(own):
        raise CheckpointError(f"the saved weights do not fit the model (missing {missing[:3]}, "
                              f"{len(sd)} saved vs {len(own)} expected)", path=folder)
    model.load_state_dict({k: sd[v] for k, v in own.items()}, strict=False)
    try:
        _lora.load_cmb_weights(model, folder / _lora.CMB_DIR)  # in place: the optimizer keeps its parameters
    except WeightsError as e:
        raise CheckpointError(e.message, path=folder / _lora.CMB_DIR, fix=e.fix) from None


def _step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


class Run:
    """A training output folder: config, checkpoints, final models and summary (see the module docstring).

    Build it with :meth:`start`; it decides whether this is a new run or a resumed one.
    """

    def __init__(self, out: Path, cfg: TrainConfig, env: DistEnv, resume_from: Path | None):
        self.out, self.cfg, self.env, self.resume_from = out, cfg, env, resume_from
        self.ckpt_root = out / "checkpoints"
        self.t0 = time.time()

    @staticmethod
    def checkpoints(out: str | os.PathLike) -> list[Path]:
        """The complete checkpoints of an output folder, oldest first."""
        root = Path(out) / "checkpoints"
        if not root.is_dir():
            return []
        found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")
                 and p.name[5:].isdigit() and (p / "trainer_state.json").is_file()]
        return sorted(found, key=lambda p: int(p.name[5:]))

    @classmethod
    def start(cls, out: str | os.PathLike, cfg: TrainConfig, env: DistEnv, resume: str | None) -> Run:
        """Prepare ``out`` for a new run, or find the checkpoint to resume.

        Args:
            out: the output folder (created with its parents).
            cfg: the resolved config.
            env: this process.
            resume: ``None`` (new run), ``"latest"`` (the newest checkpoint in ``out``) or a checkpoint folder.

        Raises:
            CheckpointError: a new run into a folder that holds one, or nothing to resume.
            ConfigError: resuming with a config that differs from the checkpoint's in keys other than
                :data:`MUTABLE_KEYS`.
        """
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise CheckpointError("--out exists and is not a folder", path=out)
        ckpts = cls.checkpoints(out)
        resume_from = None
        if resume is None:
            if ckpts:  # a config.yaml alone is a start that failed before its first checkpoint: start again
                raise CheckpointError(f"this folder already holds a training run ({ckpts[-1].name})", path=out,
                                      fix="pass --resume to continue it, or choose a new --out")
        else:
            if resume == "latest":
                if not ckpts:
                    raise CheckpointError("no checkpoint to resume in checkpoints/", path=out,
                                          fix="run without --resume to start training")
                resume_from = ckpts[-1]
            else:
                resume_from = Path(resume)
                if not (resume_from / "trainer_state.json").is_file():
                    raise CheckpointError("not a complete checkpoint folder (no trainer_state.json)", path=resume_from,
                                          fix="pass --resume alone (the newest checkpoint of --out) or a "
                                              "checkpoints/step-NNNNNN folder")
            saved_file = resume_from / "config.yaml"
            saved = config_from_dict(type(cfg), load_yaml(saved_file), source=saved_file)
            changed = [k for k in config_diff(saved, cfg) if k not in MUTABLE_KEYS]
            if changed:
                raise ConfigError(f"the config differs from the checkpoint's in {changed} (only {list(MUTABLE_KEYS)} "
                                  "may change on resume)", path=resume_from / "config.yaml",
                                  fix="resume with the same config (omit --config to reuse OUT/config.yaml), or "
                                      "start a new run in a new --out")
        if env.is_main:
            out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, out / "config.yaml")
            if resume_from is not None:
                shutil.rmtree(out / "checkpoints" / f"{resume_from.name}.tmp", ignore_errors=True)
        env.barrier()
        return cls(out, cfg, env, resume_from)

    # ------------------------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, step: int, models: dict[str, nn.Module], states: dict[str, object],
                        position: tuple[int, int], extra: dict | None = None) -> Path:
        """Write ``checkpoints/step-NNNNNN`` (collective: every rank must call it at the same step).

        Args:
            step: optimizer steps done.
            models: name → model (saved with ``save_pretrained`` into ``name/``).
            states: name → object with ``state_dict()`` (optimizers, schedulers, scaler), into
                ``training_state.pt``.
            position: this rank's data-stream position.
            extra: more JSON-ready values for ``trainer_state.json``.
        """
        env = self.env
        positions = _all_gather(env, list(position))
        rng = {"cpu": torch.get_rng_state()}
        if env.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(env.device)
        rngs = _all_gather(env, rng)
        final = self.ckpt_root / _step_dir_name(step)
        if env.is_main:
            tmp = self.ckpt_root / f"{final.name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for name, model in models.items():
                model.save_pretrained(tmp / name)
            torch.save({k: v.state_dict() for k, v in states.items()}, tmp / "training_state.pt")
            torch.save({f"rank{r}": s for r, s in enumerate(rngs)}, tmp / "rng_states.pt")
            save_config(self.cfg, tmp / "config.yaml")
            state = {"step": step, "positions": positions, "world_size": env.world_size,
                     "num_workers": self.cfg.data.num_workers, "seed": self.cfg.seed, "version": __version__,
                     "models": sorted(models), "time": round(time.time() - self.t0, 2), **(extra or {})}
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1, sort_keys=True))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            keep = self.cfg.keep_checkpoints
            if keep > 0:
                for old in self.checkpoints(self.out)[:-keep]:
                    shutil.rmtree(old, ignore_errors=True)
        env.barrier()
        return final

    def load_checkpoint(self, models: dict[str, nn.Module], states: dict[str, object]) -> tuple[int, tuple | None]:
        """Restore models, optimizer/scheduler/scaler states and RNG states from :attr:`resume_from`.

        Returns:
            ``(step, position)``: the step to continue from and this rank's data position (``None`` when the
            world size or worker count changed: the data stream then restarts at the next epoch, with a warning).
        """
        ckpt = self.resume_from
        try:
            state = json.loads((ckpt / "trainer_state.json").read_text())
            for name, model in models.items():
                load_model_weights(model, ckpt / name)
            blobs = torch.load(ckpt / "training_state.pt", map_location="cpu", weights_only=True)
            for name, obj in states.items():
                obj.load_state_dict(blobs[name])
            rngs = torch.load(ckpt / "rng_states.pt", map_location="cpu", weights_only=True)
        except (OSError, KeyError, RuntimeError, ValueError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot restore the checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})",
                                  path=ckpt, fix="resume from an older checkpoint (--resume checkpoints/step-NNNNNN)"
                                  ) from None
        env = self.env
        same = state.get("world_size") == env.world_size and state.get("num_workers") == self.cfg.data.num_workers
        mine = rngs.get(f"rank{env.rank}") if same else None
        if mine is not None:
            torch.set_rng_state(mine["cpu"])
            if env.device.type == "cuda" and "cuda" in mine:
                torch.cuda.set_rng_state(mine["cuda"], env.device)
        position = None
        if same:
            position = tuple(state["positions"][env.rank])
        else:
            epoch = max(p[0] for p in state["positions"]) + 1
            position = (epoch, 0)
            if env.is_main:
                warnings.warn(f"resuming with {env.world_size} process(es) x {self.cfg.data.num_workers} worker(s) "
                              f"instead of {state.get('world_size')} x {state.get('num_workers')}: the data stream "
                              f"restarts at epoch {epoch}; training continues, but not as an exact continuation",
                              RuntimeWarning, stacklevel=2)
        return int(state["step"]), position

    # ----------------------------------------------------------------------------------------- finish

    def finish(self, step: int, models: dict[str, nn.Module], summary: dict) -> dict:
        """Save the final models to ``OUT/<name>/`` and write ``train_summary.json`` (collective).

        The summary gets each rank's :func:`model_digest` of every model (``rank_digests``): identical digests
        show that all ranks ended with bitwise-identical weights.
        """
        env = self.env
        digests = _all_gather(env, {name: model_digest(m) for name, m in models.items()})
        memory = _all_gather(env, peak_memory(env))
        out = dict(summary)
        if env.is_main:
            for name, model in models.items():
                model.save_pretrained(self.out / name)
            out.update(step=step, world_size=env.world_size, device=str(env.device),
                       seconds=round(time.time() - self.t0, 2), rank_digests=digests, peak_memory=memory,
                       ranks_identical=all(d == digests[0] for d in digests), version=__version__)
            with atomic_output(self.out / "train_summary.json") as tmp:
                Path(tmp).write_text(json.dumps(out, indent=1, sort_keys=True))
        env.barrier()
        return out


# --------------------------------------------------------------------------------------------- logging


class TrainLogger:
    """TensorBoard + ``metrics.jsonl`` + tqdm on rank 0; values are averaged over the ranks when logged.

    Every rank must call :meth:`log` at every step (the averaging is collective on logging steps).
    """

    def __init__(self, run: Run, start_step: int, progress: bool = True, desc: str = "train"):
        self.run, self.env, self.cfg = run, run.env, run.cfg
        self.bar = self.tb = None
        self.metrics = run.out / "metrics.jsonl"
        self.t_last, self.s_last = time.time(), start_step
        if not self.env.is_main:
            return
        if self.metrics.exists():  # drop lines after the resumed step (they are redone)
            keep = [ln for ln in self.metrics.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= start_step]
            self.metrics.write_text("".join(ln + "\n" for ln in keep))
        if self.cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("tensorboard: true needs the tensorboard package",
                                  fix="pip install tensorboard, or set tensorboard: false") from None
            self.tb = SummaryWriter(str(run.out / "logs"), purge_step=start_step + 1 if start_step else None)
        from tqdm import tqdm

        self.bar = tqdm(total=self.cfg.max_steps, initial=start_step, desc=desc, disable=not progress,
                        dynamic_ncols=True, unit="step")

    def log(self, step: int, values: dict[str, float | torch.Tensor]) -> dict | None:
        """Record ``values`` for ``step`` if it is a logging step (every ``log_every`` and the last)."""
        if self.bar is not None:
            self.bar.update(1)
        if step % self.cfg.log_every and step != self.cfg.max_steps:
            return None
        names = sorted(values)
        vec = torch.tensor([float(values[k]) for k in names], dtype=torch.float64, device=self.env.device)
        if self.env.distributed:
            dist.all_reduce(vec)
            vec /= self.env.world_size
        row = {k: float(v) for k, v in zip(names, vec.tolist())}
        if not self.env.is_main:
            return row
        now = time.time()
        row["steps_per_s"] = (step - self.s_last) / max(now - self.t_last, 1e-9)
        self.t_last, self.s_last = now, step
        with open(self.metrics, "a") as f:
            f.write(json.dumps({"step": step, **row}, sort_keys=True) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if math.isfinite(v):
                    self.tb.add_scalar(f"train/{k}", v, step)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{row[k]:.4g}" for k in names[:4]}, refresh=False)
        return row

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
        if self.bar is not None:
            self.bar.close()
