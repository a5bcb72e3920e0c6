"""On-the-fly synthesis for training: the loader streams 8-bit sRGB crops, the GPU makes the pairs with the
chain's own ops (the shards' recipe, ``rawsynth.data.collate``'s batch). See ``docs/gpu.md``."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .degrade import degrade
from .degrade.gpu import BLUR_METHODS, JPEG_CODECS
from .errors import ConfigError, RawsynthError, ShapeError
from .generate import _load_source, plan_shards
from .mns import normalize, srgb_to_raw
from .mns.physics import PhysicsProfile
from .pipeline import CropBox, Mode, SampleRecipe, SynthConfig, apply_crop, recipe_meta, sample_crop, sample_recipe
from .rng import derive_seed, numpy_rng
from .sources import Source

__all__ = ["SourceCrops", "collate_crops", "make_onthefly_loader", "OnTheFlySynth", "HANDLERS"]

#: ``handler=`` choices of :class:`SourceCrops`: what a sample whose source is unreadable or too small does.
HANDLERS = ("raise", "warn", "skip")


class SourceCrops(Dataset):
    """The HQ sRGB crops ``rawsynth generate`` would synthesise from ``sources``, one item per planned sample.

    Item ``k`` is sample ``k`` of the run's plan (key ``IIIIIII_CCCC``: crop ``k % crops_per_image`` of source
    ``k // crops_per_image``, sources sorted by name), a dict::

        {"key": str, "srgb": (3, crop, crop) uint8 tensor, "source": {"path": name, "sha256": hex},
         "crop": CropBox, "recipe": SampleRecipe}

    Decoded sources are kept in a small per-process cache, so reading in order (the default sampler) decodes
    each source once for all its crops.

    Args:
        sources: the sources (:func:`rawsynth.sources.collect_sources`); sorted here as ``generate`` does.
        config: the synthesis config (crop size, crops per image, small-image policy, every distribution).
        seed: the run seed.
        num_samples: keep the first ``num_samples`` planned samples (as ``generate --num-samples``).
        handler: a sample whose source is unreadable or too small: ``"raise"`` its
            :class:`~rawsynth.errors.InputError`, ``"warn"`` (``RuntimeWarning``) and give ``None``, or ``"skip"``
            silently (``None``); :func:`collate_crops` drops ``None`` items.
        cache: decoded sources kept per process.

    Raises:
        ConfigError: bad arguments, no sources, or ``num_samples`` beyond the plan.
    """

    def __init__(self, sources: Sequence[Source], config: SynthConfig, seed: int = 0, num_samples: int | None = None,
                 handler: str = "raise", cache: int = 2):
        if not isinstance(config, SynthConfig):
            raise ConfigError(f"config must be a SynthConfig, got {type(config).__name__}")
        if handler not in HANDLERS:
            raise ConfigError(f"handler must be one of {HANDLERS}, got {handler!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"seed must be an int, got {seed!r}")
        if isinstance(cache, bool) or not isinstance(cache, int) or cache < 1:
            raise ConfigError(f"cache must be a positive int, got {cache!r}")
        sources = sorted(sources)
        if not sources:
            raise ConfigError("no sources given; pass image files or folders (rawsynth.sources.collect_sources)")
        total = len(sources) * config.crops_per_image
        plan = plan_shards(sources, config.crops_per_image, max(total, 1), num_samples)
        self.refs = [r for t in plan for r in t.refs]
        self.config, self.seed, self.handler, self.cache = config, int(seed), handler, cache
        self._load = functools.lru_cache(maxsize=cache)(_load_source)

    def __getstate__(self) -> dict:  # spawned loader workers: the cache stays behind, each builds its own
        return {k: v for k, v in self.__dict__.items() if k != "_load"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._load = functools.lru_cache(maxsize=self.cache)(_load_source)

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> dict | None:
        ref = self.refs[index]
        cfg = self.config
        try:
            image, digest = self._load(ref.source)
            box = sample_crop(numpy_rng(self.seed, ref.key, "crop"), image.shape[:2], cfg.crop, cfg.small_policy,
                              ref.source.name)
            crop = apply_crop(image, box)
            recipe = sample_recipe(self.seed, ref.key, cfg, crop.shape[:2])
        except RawsynthError as e:
            if self.handler == "raise":
                raise
            if self.handler == "warn":
                warnings.warn(f"rawsynth.onthefly: skipping sample {ref.key}: {e}", RuntimeWarning, stacklevel=2)
            return None
        srgb = torch.from_numpy(crop).permute(2, 0, 1).contiguous()
        return {"key": ref.key, "srgb": srgb, "source": {"path": ref.source.name, "sha256": digest}, "crop": box,
                "recipe": recipe}


def collate_crops(items: Sequence[dict | None]) -> dict | None:
    """Batch :class:`SourceCrops` items, dropping ``None`` (failed) ones.

    Returns:
        ``{"srgb": (B, 3, H, W) uint8, "key": list[str], "source": list[dict], "crop": list[CropBox],
        "recipe": list[SampleRecipe]}``, or ``None`` if every item failed (skip that batch).
    """
    items = [it for it in items if it is not None]
    if not items:
        return None
    return {"srgb": torch.stack([it["srgb"] for it in items]), "key": [it["key"] for it in items],
            "source": [it["source"] for it in items], "crop": [it["crop"] for it in items],
            "recipe": [it["recipe"] for it in items]}


def make_onthefly_loader(sources: Sequence[Source], config: SynthConfig, batch_size: int, *, seed: int = 0,
                         num_workers: int = 0, shuffle: bool = False, num_samples: int | None = None,
                         handler: str = "raise", drop_last: bool = False,
                         sampler: torch.utils.data.Sampler | None = None,
                         pin_memory: bool = False) -> DataLoader:
    """A ``DataLoader`` of sRGB crop batches (:func:`collate_crops`) for :class:`OnTheFlySynth`.

    Args:
        sources: the sources, as for ``rawsynth generate``.
        config: the synthesis config.
        batch_size: samples per batch.
        seed: the run seed (the same as the synthesiser's).
        num_workers: loader processes (they decode, crop and draw the recipes).
        shuffle: a new order each epoch, drawn from a ``torch.Generator`` seeded from ``seed`` (ignored when
            ``sampler`` is given).
        num_samples: keep the first ``num_samples`` planned samples.
        handler: see :class:`SourceCrops`.
        drop_last: drop the last incomplete batch.
        sampler: e.g. ``torch.utils.data.DistributedSampler(loader_dataset)`` for DDP (each rank its share).
        pin_memory: pin the host batches (faster copies to the GPU).

    Returns:
        The loader; batches may be ``None`` when every sample of a batch failed (``handler != "raise"``).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    ds = SourceCrops(sources, config, seed=seed, num_samples=num_samples, handler=handler)
    gen = None
    if shuffle and sampler is None:
        gen = torch.Generator()
        gen.manual_seed(derive_seed(int(seed), "onthefly", "shuffle"))
    return DataLoader(ds, batch_size=batch_size, shuffle=bool(shuffle) and sampler is None, sampler=sampler,
                      num_workers=num_workers, collate_fn=collate_crops, drop_last=drop_last, generator=gen,
                      pin_memory=pin_memory)


class OnTheFlySynth:
    """Turn a batch of 8-bit sRGB crops into a training batch on ``device``, the shards' recipe.

    Args:
        config: the synthesis config (the same as the loader's and as ``rawsynth generate`` would use).
        seed: the run seed.
        device: where to synthesise (``"cuda"``, ``"cuda:1"``, ``"cpu"``).
        backend: :func:`rawsynth.mns.srgb_to_raw` backend: ``"auto"`` (Triton on CUDA), ``"torch"``, ``"triton"``.
        blur: :func:`rawsynth.degrade.degrade` blur method (``"auto"``, ``"conv"``, ``"fft"``).
        jpeg: JPEG codec on CUDA: ``"auto"`` (the batched tensor JPEG), ``"tensor"``, ``"nvjpeg"`` or
            ``"libjpeg"`` (the shards' codec, on the host).

    Example (on a GPU machine; ``sources`` from :func:`rawsynth.sources.collect_sources`, ``cfg`` a
    :class:`~rawsynth.pipeline.SynthConfig`)::

        loader = make_onthefly_loader(sources, cfg, batch_size=16, seed=0, num_workers=8, shuffle=True)
        synth = OnTheFlySynth(cfg, seed=0, device="cuda")
        for crops in loader:
            batch = synth(crops)   # {"raw", "hq", "pattern", "meta", "key"} as rawsynth.data.collate
    """

    def __init__(self, config: SynthConfig, seed: int = 0, device: str | torch.device = "cuda", *,
                 backend: str = "auto", blur: str = "auto", jpeg: str = "auto"):
        if not isinstance(config, SynthConfig):
            raise ConfigError(f"config must be a SynthConfig, got {type(config).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"seed must be an int, got {seed!r}")
        if blur not in BLUR_METHODS:
            raise ConfigError(f"blur must be one of {BLUR_METHODS}, got {blur!r}")
        if jpeg not in JPEG_CODECS:
            raise ConfigError(f"jpeg must be one of {JPEG_CODECS}, got {jpeg!r}")
        if config.cameras is not None or isinstance(config.profile(), PhysicsProfile):
            raise ConfigError("OnTheFlySynth runs paper Eq. 11 noise only (the fused kernel); physics noise and "
                              "camera profiles are made by `rawsynth generate` (docs/cameras.md)")
        self.config, self.seed, self.device = config, int(seed), torch.device(device)
        self.backend, self.blur, self.jpeg = backend, blur, jpeg

    def recipes(self, keys: Sequence[str], size: tuple[int, int]) -> list[SampleRecipe]:
        """The recipes of ``keys`` for crops of ``size`` (what the loader workers draw)."""
        return [sample_recipe(self.seed, k, self.config, size) for k in keys]

    def degrade(self, srgb: torch.Tensor, recipes: Sequence[SampleRecipe]) -> torch.Tensor:
        """The detail degradation of a uint8 batch: ``(B, 3, H, W)`` uint8 → uint8 LQ at ``(H, W)``
        (:func:`rawsynth.degrade.degrade`: batched on CUDA, the shards' CPU chain on the CPU)."""
        lq8 = degrade(srgb, [r.degradation for r in recipes], blur=self.blur, jpeg=self.jpeg)
        if lq8.shape[-2:] != srgb.shape[-2:]:
            raise ConfigError("rddm pairs need the LQ at the HQ size: set degradation.resize_back: true")
        return lq8

    def pairs(self, hq8: torch.Tensor, src8: torch.Tensor, recipes: Sequence[SampleRecipe], keys: Sequence[str],
              sources: Sequence[dict | None] | None = None, crops: Sequence[CropBox | None] | None = None) -> dict:
        """unprocess → mosaic → add_noise → quantize (:func:`rawsynth.mns.srgb_to_raw`, one fused kernel on CUDA):
        the training batch from the HQ crops and the images to mosaic (the LQ, or the HQ itself in ``ddnet``
        mode), both ``(B, 3, H, W)`` uint8 on the same device."""
        b, _, h, w = hq8.shape
        isp = [r.isp for r in recipes]
        patterns = [r.pattern for r in recipes]
        sensors = [r.sensor for r in recipes]
        noise = [r.noise for r in recipes]
        seeds = [r.noise_seed for r in recipes]
        # DN from src8, the clean linear target from hq8 (one launch on the Triton path; equal to two calls)
        dn, hq = srgb_to_raw(src8, isp, patterns, noise, sensors, seeds, hq=None if src8 is hq8 else hq8,
                             return_linear=True, backend=self.backend)
        raw = normalize(dn, sensors, clip=False, dtype=torch.float32)
        sources = [None] * b if sources is None else list(sources)
        crops = [None] * b if crops is None else list(crops)
        meta = [recipe_meta(r, k, self.seed, self.config, (h, w), s, c)
                for r, k, s, c in zip(recipes, keys, sources, crops)]
        if self.config.format_version >= 2:  # the shard's meta.json form (one type per field, sentinels)
            from .shards.schema import stable_meta

            meta = [stable_meta(m, (h, w)) for m in meta]
        return {"raw": raw, "hq": hq, "pattern": patterns, "meta": meta, "key": list(keys)}

    def __call__(self, batch: dict | None) -> dict | None:
        """Synthesise a training batch from a :func:`collate_crops` batch (``None`` passes through).

        Args:
            batch: ``{"srgb": (B, 3, H, W) uint8, "key": [...]}``, optionally with ``"recipe"`` (drawn here
                otherwise), ``"source"`` and ``"crop"`` (recorded in ``meta``).

        Returns:
            ``{"raw": (B, 1, H, W) float32, "hq": (B, 3, H, W) float32, "pattern": list[Pattern],
            "meta": list[dict], "key": list[str]}`` on the synthesiser's device (``rawsynth.data.collate``'s
            format).

        Raises:
            ShapeError: ``srgb`` is not a ``(B, 3, H, W)`` uint8 tensor with even ``H``, ``W``, or the keys do not
                match the batch.
        """
        if batch is None:
            return None
        if not isinstance(batch, dict) or "srgb" not in batch or "key" not in batch:
            raise ShapeError("expected a batch dict with 'srgb' and 'key' (from rawsynth.onthefly.collate_crops)")
        srgb, keys = batch["srgb"], list(batch["key"])
        if not isinstance(srgb, torch.Tensor) or srgb.dtype != torch.uint8 or srgb.ndim != 4 or srgb.shape[1] != 3:
            raise ShapeError(f"batch['srgb'] must be a (B, 3, H, W) uint8 tensor, got "
                             f"{getattr(srgb, 'dtype', type(srgb))} {tuple(getattr(srgb, 'shape', ()))}")
        b, _, h, w = srgb.shape
        if len(keys) != b:
            raise ShapeError(f"batch has {b} images but {len(keys)} keys")
        if h % 2 or w % 2:
            raise ShapeError(f"crops must have even height and width (whole Bayer blocks), got {h}x{w}")
        recipes = batch.get("recipe") or self.recipes(keys, (h, w))
        if len(recipes) != b or not all(isinstance(r, SampleRecipe) for r in recipes):
            raise ShapeError(f"batch['recipe'] must hold {b} SampleRecipe objects")
        for r, k in zip(recipes, keys):
            if r.noise_seed != derive_seed(self.seed, k, "noise-field"):
                raise ConfigError(f"sample {k}: its recipe was drawn with another seed than this synthesiser's "
                                  f"({self.seed}); give the loader and OnTheFlySynth the same seed")
        hq8 = srgb.to(self.device, non_blocking=True)
        if self.config.mode is Mode.RDDM:
            src8 = self.degrade(hq8, recipes)
        elif self.config.mode is Mode.DDNET:
            src8 = hq8
        else:  # pragma: no cover - SynthConfig validates the mode
            raise ConfigError(f"unknown mode {self.config.mode!r}")
        return self.pairs(hq8, src8, recipes, keys, batch.get("source"), batch.get("crop"))

