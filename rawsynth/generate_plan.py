"""The shard plan of ``rawsynth generate``: which sample (key, source, crop) lands in which shard.

A pure function of (sorted sources, crops per image, shard size, sample count); see :func:`plan_shards`.
Split out of :mod:`rawsynth.generate`, which re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ConfigError
from .sources import Source

__all__ = ["SampleRef", "ShardTask", "shard_name", "plan_shards"]


@dataclass(frozen=True)
class SampleRef:
    """One planned sample: its key, its source and which of the source's crops it is."""

    key: str
    source: Source
    crop_index: int


@dataclass(frozen=True)
class ShardTask:
    """One unit of work: a shard's index, name and samples (in key order)."""

    index: int
    name: str
    refs: tuple[SampleRef, ...]


def shard_name(index: int) -> str:
    return f"shard-{index:06d}"


def plan_shards(sources: Sequence[Source], crops_per_image: int, shard_size: int,
                num_samples: int | None = None) -> list[ShardTask]:
    """The shard plan: a pure function of the sorted sources, crops per image, shard size and sample count.

    Sample ``k`` is crop ``k % crops_per_image`` of ``sources[k // crops_per_image]``, key
    ``f"{k // crops_per_image:07d}_{k % crops_per_image:04d}"`` (wider crop field when ``crops_per_image``
    exceeds 10⁴, so keys always sort in plan order); shard ``j`` holds samples
    ``[j·shard_size, (j+1)·shard_size)``. ``num_samples`` keeps the first ``num_samples``.
    """
    if shard_size < 1 or crops_per_image < 1:
        raise ConfigError(f"shard_size and crops_per_image must be >= 1, got {shard_size}, {crops_per_image}")
    total = len(sources) * crops_per_image
    if num_samples is not None:
        if num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
        if num_samples > total:
            raise ConfigError(f"num_samples={num_samples} exceeds {len(sources)} sources x {crops_per_image} "
                              f"crops = {total}; raise --crops-per-image or add sources")
        total = num_samples
    width = max(4, len(str(crops_per_image - 1)))  # zero-padded so keys sort in plan order
    refs = [SampleRef(f"{k // crops_per_image:07d}_{k % crops_per_image:0{width}d}", sources[k // crops_per_image],
                      k % crops_per_image) for k in range(total)]
    return [ShardTask(j, shard_name(j), tuple(refs[i:i + shard_size]))
            for j, i in enumerate(range(0, total, shard_size))]
