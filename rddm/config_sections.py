"""The config sections every training stage shares: data, on-the-fly synthesis, optimizer (see ``docs/training.md``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rawsynth.errors import ConfigError

__all__ = ["OnTheFlyConfig", "DataConfig", "OptimConfig", "MixedPrecision", "Scheduler"]

MixedPrecision = Literal["no", "bf16", "fp16"]
Scheduler = Literal["constant", "constant_with_warmup", "linear", "cosine"]


def _check(ok: bool, name: str, expected: str, value) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {expected}, got {value!r}")


@dataclass(frozen=True)
class OnTheFlyConfig:
    """Synthesise the training pairs while training (:mod:`rawsynth.onthefly`) instead of reading shards.

    The loader workers decode the sources and cut the 8-bit sRGB crops ``rawsynth generate`` would cut; the
    training device (or ``device``) degrades them and runs IPTP + MNS. Each epoch holds the samples that
    ``rawsynth generate SOURCES --seed SEED`` would write with the same synthesis config, with the same recipes
    and ``meta.json`` (see ``docs/training.md``).

    Attributes:
        sources: source photos as ``rawsynth generate`` takes them: folders (searched recursively), image files
            or list files (``.txt``/``.lst``/``.list``); empty: the photos bundled with scikit-image (a demo).
        synth_config: a ``rawsynth config`` YAML (synthesis keys of :class:`rawsynth.pipeline.SynthConfig`;
            its run keys ``seed``/``shard_size``/``num_samples``/``workers`` are ignored), or ``null`` for the
            defaults. The mode is the stage's (``data.mode``; ``rddm`` when that is ``any``) unless the file sets
            it, and the crop is ``data.crop`` unless the file sets it.
        samples: samples per epoch: the first ``samples`` planned samples (as ``rawsynth generate
            --num-samples``); ``null``: every source × ``crops_per_image``.
        seed: the synthesis seed (as ``rawsynth generate --seed``); ``null``: the run's ``seed``.
        device: where to synthesise (``cuda``, ``cuda:1``, ``cpu``); ``null``: the training device.
        jpeg: the JPEG codec of the degradation on CUDA (``rawsynth.degrade.degrade``'s ``jpeg``): ``auto`` (the
            batched tensor JPEG on the GPU, a model of libjpeg), ``tensor``, ``diffjpeg`` (basicsr's, as
            Real-ESRGAN trains), ``nvjpeg`` or ``libjpeg`` (the shards' codec, on the host).
    """

    sources: tuple[str, ...] = ()
    synth_config: str | None = None
    samples: int | None = None
    seed: int | None = None
    device: str | None = None
    jpeg: Literal["auto", "tensor", "diffjpeg", "nvjpeg", "libjpeg"] = "auto"

    def __post_init__(self):
        _check(self.samples is None or self.samples >= 1, "data.onthefly.samples", "null or an int >= 1",
               self.samples)
        _check(self.seed is None or self.seed >= 0, "data.onthefly.seed", "null or an int >= 0", self.seed)
        _check(self.device is None or self.device == "cpu" or self.device == "cuda"
               or (self.device.startswith("cuda:") and self.device[5:].isdigit()), "data.onthefly.device",
               "null, cpu, cuda or cuda:N", self.device)


@dataclass(frozen=True)
class DataConfig:
    """Where the training pairs come from and how they are read (:func:`rawsynth.data.make_loader`).

    Attributes:
        shards: shard files, folders of ``shard-*.tar`` (as written by ``rawsynth generate``) or brace patterns
            (``/data/pairs/shard-{000000..000099}.tar``). ``--shards`` on the command line replaces it.
        mode: the pair type the stage expects in ``meta.json`` (``ddnet``, ``rddm``) or ``any``.
        crop: random square crop (any offset; the Bayer pattern follows), even; ``null`` keeps whole samples
            (they must all have one size, as ``rawsynth generate`` writes them).
        flips: random horizontal/vertical flips (the Bayer pattern follows).
        shuffle: shard order permuted every epoch and a sample shuffle buffer of this many samples (0: file order).
        num_workers: DataLoader worker processes per rank; each reads its own shards (world size × workers shards
            at least).
        handler: what to do with a corrupt sample: ``raise``, ``warn`` (skip it with a warning) or ``skip``.
        verify: check every sample against the member checksums its shard's stats record (``rawsynth.data``,
            ``verify=``); a mismatch is a corrupt sample for ``handler``. Costs hashing each sample once.
        onthefly: :class:`OnTheFlyConfig`: synthesise the pairs while training instead of reading ``shards``.
            Set exactly one of ``shards`` and ``onthefly``. With it, ``shuffle > 0`` draws a new order of the
            samples every epoch (0: plan order), ``num_workers`` loader processes decode the sources, and
            ``handler`` applies to unreadable or too small sources.
    """

    shards: tuple[str, ...] = ()
    mode: Literal["ddnet", "rddm", "any"] = "any"
    crop: int | None = 256
    flips: bool = True
    shuffle: int = 1000
    num_workers: int = 4
    handler: Literal["raise", "warn", "skip"] = "warn"
    verify: bool = True
    onthefly: OnTheFlyConfig | None = None

    def __post_init__(self):
        if self.shards and self.onthefly is not None:
            raise ConfigError("data.shards and data.onthefly are both set; training reads either shards or "
                              "on-the-fly pairs", fix="remove one of them (--shards replaces data.shards)")
        _check(self.crop is None or (self.crop >= 2 and self.crop % 2 == 0), "data.crop", "null or an even int >= 2",
               self.crop)
        _check(self.shuffle >= 0, "data.shuffle", "an int >= 0", self.shuffle)
        _check(self.num_workers >= 0, "data.num_workers", "an int >= 0", self.num_workers)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and its learning-rate schedule (``diffusers.optimization.get_scheduler``).

    Attributes:
        lr: peak learning rate.
        betas: AdamW ``(β1, β2)``.
        weight_decay: AdamW decoupled weight decay.
        eps: AdamW ε.
        max_grad_norm: clip the global gradient norm to this value (``null``: no clipping).
        lr_scheduler: ``constant``, ``constant_with_warmup``, ``linear`` (decay to 0) or ``cosine``.
        warmup_steps: linear warm-up steps (``constant_with_warmup``, ``linear``, ``cosine``).
    """

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    eps: float = 1e-8
    max_grad_norm: float | None = None
    lr_scheduler: Scheduler = "constant"
    warmup_steps: int = 0

    def __post_init__(self):
        _check(self.lr > 0, "optim.lr", "a number > 0", self.lr)
        _check(all(0 <= b < 1 for b in self.betas), "optim.betas", "two numbers in [0, 1)", self.betas)
        _check(self.weight_decay >= 0, "optim.weight_decay", "a number >= 0", self.weight_decay)
        _check(self.eps > 0, "optim.eps", "a number > 0", self.eps)
        _check(self.max_grad_norm is None or self.max_grad_norm > 0, "optim.max_grad_norm", "null or a number > 0",
               self.max_grad_norm)
        _check(self.warmup_steps >= 0, "optim.warmup_steps", "an int >= 0", self.warmup_steps)
