"""RDDM's networks (diffusers ``ModelMixin``/``ConfigMixin``); submodules load on first use.
See ``docs/architecture.md``."""

from __future__ import annotations

from rawsynth._lazy import lazy_exports

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (type checkers read it as True)
if TYPE_CHECKING:  # what the lazy names are, for IDEs and type checkers
    from . import ddnet, rvae, discriminator, rddm

__getattr__, __dir__, __all__ = lazy_exports(__name__, submodules=("ddnet", "rvae", "discriminator", "rddm"))
