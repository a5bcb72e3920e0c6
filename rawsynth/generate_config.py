"""What ``rawsynth generate`` is told: a :class:`GenerateConfig` (synthesis config + run options), read from the
flat YAML that ``rawsynth config`` prints. See ``docs/generate.md``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar

from ._config import ConfigMixin, load_yaml, with_path
from .errors import ConfigError
from .pipeline import SynthConfig

__all__ = ["GenerateConfig"]


@dataclass(frozen=True)
class GenerateConfig(ConfigMixin):
    """A synthesis config plus the options of one run; its dict form is flat (the synthesis keys and the run keys
    side by side, as in ``rawsynth config``).

    Attributes:
        synth: what each sample is (:class:`~rawsynth.pipeline.SynthConfig`).
        seed: the run seed.
        shard_size: samples per shard.
        num_samples: keep the first N planned samples (``None``: all).
        workers: worker processes (``None`` or 0: the CPU count).
    """

    synth: SynthConfig = field(default_factory=SynthConfig)
    seed: int = 0
    shard_size: int = 1000
    num_samples: int | None = None
    workers: int | None = None

    #: The run keys of the flat mapping (the other keys are :class:`SynthConfig`'s).
    RUN_KEYS: ClassVar[tuple[str, ...]] = ("seed", "shard_size", "num_samples", "workers")

    def __post_init__(self):
        s = object.__setattr__
        if isinstance(self.synth, dict):
            s(self, "synth", SynthConfig.from_dict(self.synth))
        try:
            s(self, "seed", int(self.seed))
            s(self, "shard_size", int(self.shard_size))
        except (TypeError, ValueError):
            raise ConfigError(f"seed and shard_size must be integers, got {self.seed!r}, {self.shard_size!r}") from None

    @classmethod
    def split(cls, d: dict) -> tuple[dict, dict]:
        """A flat mapping as ``(synthesis keys, run keys)`` (copies)."""
        synth = {k: v for k, v in d.items() if k not in cls.RUN_KEYS}
        return synth, {k: d[k] for k in cls.RUN_KEYS if k in d}

    @classmethod
    def from_dict(cls, d, where: str | None = None) -> GenerateConfig:
        """From the flat mapping; unknown keys raise :class:`ConfigError` naming them."""
        if not isinstance(d, dict):
            raise ConfigError(f"a generate config must be a mapping, got {type(d).__name__}")
        synth, run = cls.split(d)
        return cls(SynthConfig.from_dict(synth), **run)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> GenerateConfig:
        d = load_yaml(path)
        try:
            return cls.from_dict(d)
        except ConfigError as e:
            raise with_path(e, path) from None

    def to_dict(self) -> dict:
        """The flat mapping: the synthesis keys, then ``seed``, ``shard_size``, ``workers``, ``num_samples``."""
        return {**self.synth.to_dict(), "seed": self.seed, "shard_size": self.shard_size, "workers": self.workers,
                "num_samples": self.num_samples}
