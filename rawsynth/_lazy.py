"""The one lazy-export helper (PEP 562) of every package ``__init__``, beside a ``TYPE_CHECKING`` import block.
See ``docs/architecture.md``."""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: keep `import rawsynth` to the bare minimum
    from collections.abc import Callable, Iterable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str] | None = None, submodules: Iterable[str] = (),
                 eager: Iterable[str] = ()) -> tuple[Callable, Callable, list[str]]:
    """``(__getattr__, __dir__, __all__)`` of a package whose names load on first use.

    Args:
        package: the package's ``__name__``.
        exports: name → submodule (relative, without the dot) that defines it.
        submodules: submodules exported as attributes (``rawsynth.io``), imported on first use.
        eager: names the package defines itself (listed in ``__all__``).
    """
    exports = dict(exports or {})
    subs = tuple(submodules)
    all_ = [*eager, *sorted(set(exports) - set(eager)), *[s for s in subs if s not in exports]]

    def __getattr__(name: str):  # noqa: N807  (the PEP 562 hook)
        if name in exports:
            value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        elif name in subs:
            value = importlib.import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)  # later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(vars(sys.modules[package])) | set(all_))

    return __getattr__, __dir__, all_
