"""The config sections of validation while training and of the EMA of the trained weights (no torch: importing
this module is cheap; :mod:`rddm.config` adds them to every training stage as ``validation`` and ``ema``).

Both are ``null`` (off) by default. The work is done by :mod:`rddm.train.validation` and :mod:`rddm.train.ema`;
``docs/training.md`` ("Validation and EMA") explains what is logged and which file holds which weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rawsynth.errors import ConfigError

__all__ = ["ValidationConfig", "EmaConfig"]


def _check(ok: bool, name: str, expected: str, value) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {expected}, got {value!r}")


@dataclass(frozen=True)
class ValidationConfig:
    """Validation every ``every`` optimizer steps (and at the last step) on held-out data.

    Samples are read in file order, whole (or centre-cropped to ``crop``), never flipped or shuffled, so every
    validation sees the same pixels; PSNR/SSIM (and LPIPS when its weights are found) of the stage's prediction
    go to ``metrics.jsonl`` (keys ``val/...``, ``val_bench/...`` for ``benchmark``) and TensorBoard, and a fixed
    image grid of the first ``grid_samples`` samples to ``OUT/validation/`` (and TensorBoard).

    Attributes:
        every: validate every N optimizer steps; the last step is always validated.
        shards: held-out shards (folders, files or brace patterns, as ``data.shards``), read with the training
            reader (:func:`rawsynth.data.make_dataset`) without random crop, flips or shuffle.
        benchmark: a folder built by ``python -m benchmarks build`` (``raw/KEY.png`` + ``KEY.json``,
            ``gt_linear/KEY.png``), validated on its own (keys ``val_bench/...``).
        max_samples: validate on the first N samples of ``shards`` (and of ``benchmark``).
        batch_size: samples per forward pass (per process).
        crop: centre crop (even, the Bayer pattern follows) of each sample; ``null``: whole samples.
        grid_samples: rows of the image grid (the first N samples); 0: no grid.
        lpips: compute LPIPS (sRGB) when its weights are found; else a note is logged once and it is skipped.
        lpips_net: LPIPS backbone, ``alex`` (pyiqa's ``lpips``, as ``benchmarks`` scores) or ``vgg``.
        lpips_weights: folder with the LPIPS weight files (:mod:`rddm.lpips`); ``null``: the stage's
            ``loss.lpips_weights``, else ``$RAWSYNTH_WEIGHTS_DIR``, ``$TORCH_HOME``, ``~/.cache/torch``.

    A section with neither ``shards`` nor ``benchmark`` is refused when training starts.
    """

    every: int = 1000
    shards: tuple[str, ...] = ()
    benchmark: str | None = None
    max_samples: int = 64
    batch_size: int = 4
    crop: int | None = None
    grid_samples: int = 4
    lpips: bool = True
    lpips_net: Literal["alex", "vgg"] = "alex"
    lpips_weights: str | None = None

    def __post_init__(self):
        _check(self.every >= 1, "validation.every", "an int >= 1", self.every)
        _check(self.max_samples >= 1, "validation.max_samples", "an int >= 1", self.max_samples)
        _check(self.batch_size >= 1, "validation.batch_size", "an int >= 1", self.batch_size)
        _check(self.crop is None or (self.crop >= 2 and self.crop % 2 == 0), "validation.crop",
               "null or an even int >= 2", self.crop)
        _check(self.grid_samples >= 0, "validation.grid_samples", "an int >= 0", self.grid_samples)


@dataclass(frozen=True)
class EmaConfig:
    """An exponential moving average of the trained weights (:class:`rddm.train.ema.EMA`).

    After optimizer step ``s`` (not after a step the non-finite guard skipped): for ``s <= start`` the average
    is the weights themselves; at ``s = start + 1`` it is reset to the weights; after that
    ``ema ← decay·ema + (1 − decay)·w`` (``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``).
    Validation and the final model folder use the average; checkpoints hold both.

    Attributes:
        decay: the EMA decay, in ``(0, 1)`` (0.999: an average over roughly the last 1000 steps).
        start: optimizer steps before averaging begins.
    """

    decay: float = 0.999
    start: int = 0

    def __post_init__(self):
        _check(0 < self.decay < 1, "ema.decay", "a number in (0, 1)", self.decay)
        _check(self.start >= 0, "ema.start", "an int >= 0", self.start)
