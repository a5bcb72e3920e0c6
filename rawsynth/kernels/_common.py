"""Shared plumbing of the kernels: the backend choice, Triton's availability and its interpreter.

Triton is imported lazily (only when a Triton backend is actually run), so ``rawsynth`` works where Triton is not
installed. On a CPU tensor the Triton kernels run in Triton's interpreter (numpy, slow: for tests at small sizes);
on a CUDA tensor they are compiled.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import threading
from collections.abc import Iterator
from types import ModuleType
from enum import Enum

import torch

from ..errors import ConfigError

__all__ = ["Backend", "triton_available", "kernels_enabled", "resolve_backend", "kernel_module", "launch"]

#: Environment variable that turns the automatic use of the kernels off (``RAWSYNTH_KERNELS=0``).
ENV_SWITCH = "RAWSYNTH_KERNELS"


class Backend(str, Enum):
    """Which implementation runs a fused op.

    * ``AUTO``: Triton on CUDA tensors (when Triton is importable and ``RAWSYNTH_KERNELS`` is not ``0``), the
      torch reference otherwise.
    * ``TORCH``: the torch reference (any device).
    * ``TRITON``: the Triton kernel: compiled on CUDA tensors, Triton's interpreter on CPU tensors (slow; for
      tests at small sizes).
    """

    AUTO = "auto"
    TORCH = "torch"
    TRITON = "triton"


@functools.cache
def triton_available() -> bool:
    """Whether ``triton`` can be imported (checked once, without importing it)."""
    return importlib.util.find_spec("triton") is not None


def kernels_enabled() -> bool:
    """``False`` when the environment variable ``RAWSYNTH_KERNELS`` is ``0``/``false``/``no``/``off``."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def resolve_backend(backend: Backend | str, device: torch.device) -> Backend:
    """``TORCH`` or ``TRITON`` for ``backend`` on ``device``; raises if Triton is asked for and missing."""
    try:
        backend = Backend(backend)
    except ValueError:
        raise ConfigError(f"unknown kernel backend {backend!r}; use one of {[b.value for b in Backend]}") from None
    if backend is Backend.AUTO:
        use = device.type == "cuda" and triton_available() and kernels_enabled()
        return Backend.TRITON if use else Backend.TORCH
    if backend is Backend.TRITON:
        if not triton_available():
            raise ConfigError("backend='triton' needs the triton package (pip install triton); "
                              "use backend='torch' or 'auto'")
        if device.type not in ("cuda", "cpu"):
            raise ConfigError(f"the Triton kernels run on CUDA (or, interpreted, on CPU) tensors, got {device}; "
                              "use backend='torch'")
        return Backend.TRITON
    if backend is Backend.TORCH:
        return Backend.TORCH
    raise ConfigError(f"unhandled kernel backend {backend!r}")


_INTERP_LOCK = threading.RLock()


@contextlib.contextmanager
def _interpreter_env(on: bool) -> Iterator[None]:
    """Set ``TRITON_INTERPRET`` to ``on`` for the block and restore it after. Triton 3.9 reads the variable when
    ``triton.jit`` wraps a function and while an interpreted kernel runs, not at import."""
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1" if on else "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old


@functools.cache
def _load(module: str, interpret: bool) -> ModuleType:
    import triton  # noqa: F401  (first, outside the switch: triton's own jit functions stay compiled ones)
    import triton.language  # noqa: F401

    name = f"{__package__}.{module}"
    with _INTERP_LOCK, _interpreter_env(interpret):
        if not interpret:
            return importlib.import_module(name)
        # a second copy of the module whose @triton.jit functions were wrapped for the interpreter
        spec = importlib.util.find_spec(name)
        copy = importlib.util.spec_from_file_location(name + "__interpreted", spec.origin)
        mod = importlib.util.module_from_spec(copy)
        copy.loader.exec_module(mod)
        return mod


def kernel_module(module: str, device: torch.device) -> ModuleType:
    """The Triton kernel module ``rawsynth.kernels.<module>`` for ``device``: compiled for CUDA, a separate copy
    wrapped for Triton's interpreter for any other device (each loaded once)."""
    return _load(module, device.type != "cuda")


def launch(kernel, grid, device: torch.device, *args, **kwargs):
    """Run ``kernel[grid](*args, **kwargs)``: interpreted launches (CPU tensors) hold a lock and
    ``TRITON_INTERPRET=1`` while they run; compiled launches disable FP contraction so ``a * b + c`` is rounded
    twice, as torch's separate operations round it."""
    if device.type != "cuda":
        with _INTERP_LOCK, _interpreter_env(True):
            return kernel[grid](*args, **kwargs)
    return kernel[grid](*args, enable_fp_fusion=False, **kwargs)
