"""The one door to basicsr 1.4.2: imported lazily, once, after a stand-in for the torchvision module it still
imports. See ``docs/degrade.md``."""

from __future__ import annotations

import functools
import importlib
import sys
import types

from ..errors import RawsynthError

__all__ = ["load_basicsr", "degradations", "filter2D", "DiffJPEG", "BasicsrUnavailableError"]

_SHIM = "torchvision.transforms.functional_tensor"


class BasicsrUnavailableError(RawsynthError, ImportError):
    """basicsr is missing or failed to import."""


def _install_functional_tensor_shim() -> None:
    if _SHIM in sys.modules:
        return
    try:
        importlib.import_module(_SHIM)
        return
    except ImportError:
        pass
    from torchvision.transforms import functional as tvf

    shim = types.ModuleType(_SHIM)
    shim.__doc__ = "rawsynth stand-in for the removed private torchvision module (basicsr 1.4.2 needs it)."
    shim.rgb_to_grayscale = tvf.rgb_to_grayscale
    sys.modules[_SHIM] = shim


@functools.cache
def load_basicsr() -> types.ModuleType:
    """Import basicsr (once) with the torchvision shim in place and return the package."""
    _install_functional_tensor_shim()
    try:
        return importlib.import_module("basicsr")
    except ImportError as e:
        raise BasicsrUnavailableError(
            f"basicsr could not be imported ({e}). Install it against the installed torch with "
            "`pip install --no-build-isolation basicsr==1.4.2` (see the README)") from e


def degradations() -> types.ModuleType:
    """``basicsr.data.degradations`` (``random_mixed_kernels``, ``circular_lowpass_kernel``, ...)."""
    load_basicsr()
    return importlib.import_module("basicsr.data.degradations")


def filter2D(img, kernel):  # noqa: N802 (basicsr's name)
    """basicsr's ``filter2D``: per-sample 2-D convolution with reflect padding."""
    load_basicsr()
    from basicsr.utils.img_process_util import filter2D as f

    return f(img, kernel)


def DiffJPEG(differentiable: bool = False):  # noqa: N802 (basicsr's name)
    """A ``basicsr.utils.DiffJPEG`` module."""
    load_basicsr()
    from basicsr.utils.diffjpeg import DiffJPEG as cls

    return cls(differentiable=differentiable)
